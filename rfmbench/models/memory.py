"""The memory plan: what a kernel fit's path needs against what its device has, before allocating.

Available memory: on CUDA the free memory ``torch.cuda.mem_get_info`` plus what torch holds cached;
on the CPU ``MemAvailable`` of ``/proc/meminfo`` (what can be allocated without swapping; the
physical memory where that file is missing), in a worker of a parallel run at most its share (the
memory available when the run started, divided by the workers). A fit plans against
`USABLE_FRACTION` of it, or against an explicit budget (``memory_gb`` of the models; tests pass a
tiny one to force every path on small data).

Bytes needed, for ``n`` training rows of ``d`` features, ``c`` outputs, ``s`` bytes per item and a
block budget ``B`` (``block_memory_mb``):

- exact (Cholesky): ``n^2 s`` (the factor overwrites the kernel matrix in place) ``+ B`` (blocked
  temporaries, kept AGOP kernel rows, the float64 residual blocks) ``+ 8 n (d + 4 c)``;
- iterative (Nystrom-PCG, ``m`` landmarks): ``s n m`` (the Nystrom factor) ``+ B + 8 n (d + 8 c)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

USABLE_FRACTION = 0.8  # headroom for the process's other memory and the allocator's slack
GIB = 2**30


# Set by the local executor in each worker of a parallel run on the CPU: the worker's share, in
# bytes, of the memory available when the run started. Jobs running at once must not plan on the
# same memory, and Linux counts a matrix against MemAvailable only once its pages are written: a
# worker planning while another builds its matrix would see that memory free.
CPU_SHARE_ENV = "RFMBENCH_CPU_MEMORY_SHARE"


def available_bytes(device: torch.device | str) -> int:
    """Memory that can still be allocated on ``device``, in bytes (on the CPU, at most this
    process's `CPU_SHARE_ENV` share where it has one)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        # Blocks torch has cached but not handed out count as used to the driver; they are ours.
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + cached)
    available = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    share = os.environ.get(CPU_SHARE_ENV)
    return min(available, int(share)) if share else available


def exact_bytes(n: int, d: int, c: int, itemsize: int, block_bytes: float) -> float:
    """Peak bytes of an exact (Cholesky) kernel fit on ``n`` rows; see the module docstring."""
    return float(n) * n * itemsize + block_bytes + 8.0 * n * (d + 4 * c)


def iterative_bytes(n: int, d: int, c: int, itemsize: int, block_bytes: float, rank: int) -> float:
    """Peak bytes of a Nystrom-PCG kernel fit on ``n`` rows with ``rank`` landmarks."""
    return float(n) * min(rank, n) * itemsize + block_bytes + 8.0 * n * (d + 8 * c)


def max_exact_rows(budget: float, d: int, c: int, itemsize: int, block_bytes: float) -> int:
    """The most rows whose exact fit needs at most ``budget`` bytes (at least 1)."""
    lo, hi = 1, 1
    while exact_bytes(hi, d, c, itemsize, block_bytes) <= budget:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if exact_bytes(mid, d, c, itemsize, block_bytes) <= budget else (lo, mid)
    return lo


@dataclass(frozen=True)
class MemoryPlan:
    """The memory a fit may use and how it decides."""

    budget: float  # bytes the fit may use
    explicit: bool  # the user's ``memory_gb``, not the device's free memory

    @classmethod
    def for_device(cls, device: torch.device | str, memory_gb: float | None) -> MemoryPlan:
        if memory_gb is not None:
            return cls(float(memory_gb) * GIB, True)
        return cls(USABLE_FRACTION * available_bytes(device), False)

    def fits(self, nbytes: float) -> bool:
        return nbytes <= self.budget

    def describe(self) -> str:
        what = "the memory_gb budget" if self.explicit else "available on the device"
        return f"{self.budget / GIB:.2f} GiB {what}"
