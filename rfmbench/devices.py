"""Turn a user's device string (``auto``, ``cpu``, ``cuda``, ``cuda:N``) into a torch device."""

from __future__ import annotations

import re

import torch

from rfmbench.errors import DeviceError

_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def resolve_device(device: str | torch.device) -> torch.device:
    """Return the torch device for ``device``; raise DeviceError if it is malformed or absent.

    ``auto`` picks ``cuda`` when a GPU is visible, else ``cpu``.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str) or not _PATTERN.match(device):
        raise DeviceError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"device '{device}' requested but no CUDA GPU is visible",
            hint="use --device cpu, or install a CUDA build of torch on a machine with a GPU",
        )
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise DeviceError(
            f"device '{device}' requested but only {torch.cuda.device_count()} GPU(s) are visible"
        )
    return torch.device(device)
