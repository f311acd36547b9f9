"""Device names: "cpu", "cuda" / "cuda:N" (a GPU, in builds with the CUDA backend) and
"cuda-emu" (the CUDA kernels on the CPU's SIMT emulator: slow, for verification).  Asking for a
device that this build or machine cannot use raises :class:`DeviceError` with the reason, while
everything on the CPU keeps working."""

from __future__ import annotations

from . import _core
from .errors import DeviceError

EMULATOR = "cuda-emu"


def cuda_info() -> dict:
    """The CUDA part of ``backend_info()``: compiled, available, device_count, devices (name,
    compute capability, memory, theoretical bandwidth), architectures, reason."""
    return dict(_core.backend_info()["cuda"])


def check_device(device) -> str:
    """The canonical name of a usable device ("cpu", "cuda:N" or "cuda-emu"); raises
    DeviceError for anything else, with the reason."""
    if device is None:
        return "cpu"
    if not isinstance(device, str):
        raise DeviceError(f"device must be a string such as 'cpu' or 'cuda', got {device!r}")
    name = device.strip().lower()
    if name == "cpu":
        return "cpu"
    if name == EMULATOR:
        return EMULATOR
    if name == "cuda" or name.startswith("cuda:"):
        index = name[5:] if name.startswith("cuda:") else "0"
        if not index.isdigit():
            raise DeviceError(f"bad CUDA device {device!r}; expected 'cuda' or 'cuda:N'")
        info = cuda_info()
        if not info["available"]:
            raise DeviceError(f"device {device!r} is not available: {info['reason']}")
        if int(index) >= info["device_count"]:
            raise DeviceError(f"device {device!r} is not available: {info['device_count']} "
                              f"CUDA device(s) present")
        return f"cuda:{int(index)}"
    raise DeviceError(f"unknown device {device!r}; expected 'cpu', 'cuda' or '{EMULATOR}'")
