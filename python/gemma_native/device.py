"""Device selection.  This build runs on the CPU only: the CUDA backend (issue 5) is not
compiled in yet, so asking for ``device="cuda"`` raises :class:`DeviceError` with the reason,
while everything on the CPU keeps working."""

from __future__ import annotations

import functools

from .errors import DeviceError

CUDA_REASON = "this gemma_native build has no CUDA backend compiled in (CPU only)"


def cuda_info() -> dict:
    return {"available": False, "compiled": False, "reason": CUDA_REASON}


def check_device(device) -> str:
    """Returns "cpu" for a usable device; raises DeviceError for anything else."""
    if device is None:
        return "cpu"
    if not isinstance(device, str):
        raise DeviceError(f"device must be a string such as 'cpu' or 'cuda', got {device!r}")
    name = device.strip().lower()
    if name == "cpu":
        return "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        raise DeviceError(f"device {device!r} is not available: {CUDA_REASON}")
    raise DeviceError(f"unknown device {device!r}; expected 'cpu' or 'cuda'")


def with_device(fn):
    """Adds a keyword-only ``device`` argument (default "cpu") to an op."""

    @functools.wraps(fn)
    def wrapper(*args, device="cpu", **kwargs):
        check_device(device)
        return fn(*args, **kwargs)

    return wrapper
