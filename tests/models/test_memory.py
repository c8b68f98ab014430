"""What the memory plan counts as available: a worker's share on the CPU, torch's cache on CUDA."""

from __future__ import annotations

import torch

from rfmbench.models import memory
from rfmbench.models.memory import CPU_SHARE_ENV, USABLE_FRACTION, MemoryPlan, available_bytes


def test_a_worker_plans_on_its_share_of_the_cpu_memory(monkeypatch):
    monkeypatch.delenv(CPU_SHARE_ENV, raising=False)
    machine = available_bytes("cpu")
    monkeypatch.setenv(CPU_SHARE_ENV, str(machine // 4))
    assert available_bytes("cpu") == machine // 4
    assert MemoryPlan.for_device("cpu", None).budget == USABLE_FRACTION * (machine // 4)
    monkeypatch.setenv(CPU_SHARE_ENV, str(10 * machine))  # a share never adds memory
    assert available_bytes("cpu") < 10 * machine


def test_cuda_memory_torch_holds_cached_counts_as_available(monkeypatch):
    """``mem_get_info`` counts torch's cached blocks as used; a later fit may reuse them."""
    gib = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (10 * gib, 80 * gib))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 30 * gib)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 12 * gib)
    assert memory.available_bytes("cuda:0") == 28 * gib
