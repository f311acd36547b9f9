"""gemma_native: a native C++ engine for Google's RecurrentGemma (Griffin) and Gemma models.

    import gemma_native as gn
    model = gn.load("path/to/recurrentgemma-folder")
    print(model.generate("The capital of France is", max_tokens=16).text)

No PyTorch or JAX at run time; the compute runs in the compiled ``gemma_native._core``.
"""

from __future__ import annotations

import warnings

import numpy as np

from . import _core
from .errors import (
    DeviceError,
    DTypeError,
    GemmaNativeError,
    InvalidArgumentError,
    ModelFormatError,
    ModelNotFoundError,
    ShapeError,
    TokenizerError,
    UnsupportedModelError,
)
from .loader import load
from .model import GenerationResult, Model, SamplingParams, State
from .random_model import random_model
from .tokenizer import Tokenizer

from .device import cuda_info

from ._version import __version__


def backend_info() -> dict:
    """Which CPU kernel set runs (and which exist), the CPU's features, the thread count and
    whether a CUDA backend is available (``info["cuda"]``, with the reason when it is not)."""
    info = dict(_core.backend_info())
    info["cuda"] = cuda_info()
    return info


MAX_THREADS = 1024


def set_num_threads(n: int | None) -> None:
    """Threads used by the kernels (process-wide, 1..1024); None or 0 restores the default:
    the CPUs this process may use (physical cores in its affinity mask, capped by its cgroup
    CPU quota; ``backend_info()["cpus"]``).  More threads than that are allowed but warned
    about: oversubscribed threads wait for each other at every op."""
    _set_threads(n, "number of threads")


def _set_threads(n, what: str) -> None:
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer))
                          or not 0 <= n <= MAX_THREADS):
        raise InvalidArgumentError(f"{what} must be an integer in [0, {MAX_THREADS}] "
                                   f"(0: the default), got {n!r}")
    n = 0 if n is None else int(n)
    usable = _core.backend_info()["cpus"]["usable"]
    if n > usable:
        warnings.warn(f"gemma_native: {n} threads on {usable} usable CPU(s) oversubscribes them "
                      f"(slower, not faster); set_num_threads(None) picks {usable}",
                      RuntimeWarning, stacklevel=3)
    _core.set_num_threads(n)


def set_cpu_isa(name: str) -> None:
    """Forces a CPU kernel set ('scalar', 'avx2', 'avx512' or 'auto'); DeviceError if this
    binary or CPU lacks it.  The environment variable GEMMA_NATIVE_CPU_ISA does the same at
    import."""
    _core.set_cpu_isa(str(name))


# GEMMA_NATIVE_CPU_ISA is read by the core at first use (backend_info() or any computation);
# an unknown or unsupported value raises DeviceError there, not at import, so that tools built
# on the package (the gemma-native command) can report it cleanly.

__all__ = [
    "load", "random_model", "Model", "SamplingParams", "GenerationResult", "State", "Tokenizer",
    "backend_info", "set_num_threads", "set_cpu_isa", "GemmaNativeError", "ModelFormatError",
    "ModelNotFoundError", "UnsupportedModelError", "ShapeError", "DTypeError",
    "InvalidArgumentError", "DeviceError", "TokenizerError", "__version__",
]
