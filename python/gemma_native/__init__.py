"""gemma_native: a native C++ engine for Google's RecurrentGemma (Griffin) and Gemma models.

    import gemma_native as gn
    model = gn.load("path/to/recurrentgemma-folder")
    print(model.generate("The capital of France is", max_tokens=16).text)

No PyTorch or JAX at run time; the compute runs in the compiled ``gemma_native._core``.
"""

from __future__ import annotations

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
from ._threads import MAX_THREADS as MAX_THREADS, set_threads
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


def set_num_threads(n: int | None) -> None:
    """Threads used by the kernels (process-wide, 1..1024); None or 0 restores the default:
    the CPUs this process may use (physical cores in its affinity mask, capped by its cgroup
    CPU quota; ``backend_info()["cpus"]``).  More threads than that are allowed but warned
    about: oversubscribed threads wait for each other at every op."""
    set_threads(n, "number of threads")


def set_max_pass_tokens(n: int | None) -> None:
    """The most token rows (sequences x tokens) one pass through a model's layers takes on the
    CPU (process-wide); None restores the default (512), 0 removes the limit.  A longer
    forward (a long prompt, or many sequences at once) runs in passes of at most that many
    rows, each continuing the states the one before left: the results are the same bits for
    any value, while the activations of a pass stay in the CPU's caches and the memory a call
    needs stays that of one pass (see docs/architecture.md).  A pass never has fewer than 16
    rows when the call has that many (the bf16 compute mode's products depend on it), so a
    limit below ~48 is raised in effect.  Device backends take every call in one pass.
    ``backend_info()["max_pass_tokens"]`` reports the setting; the environment variable
    GEMMA_NATIVE_MAX_PASS_TOKENS sets it at first use (e.g. for ``gemma-native bench``, whose
    engines run in child processes)."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer))
                          or not 0 <= n <= _core.MAX_PASS_TOKENS_LIMIT):
        raise InvalidArgumentError(
            f"max_pass_tokens must be an integer >= 0 (0: no limit) or None, got {n!r}")
    _core.set_max_pass_tokens(_core.DEFAULT_MAX_PASS_TOKENS if n is None else int(n))


def _count(name: str, v, hi: int) -> int:
    """v as an int in 1..hi, else InvalidArgumentError."""
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
        raise InvalidArgumentError(f"{name} must be an int in 1..{hi}, got {v!r}")
    return v


def core_peaks(threads: int | None = None) -> dict:
    """The cores' arithmetic ceiling, measured (~0.1 s): FLOP/s of register-only loops of
    independent multiply-adds on ``threads`` threads at once (default: the kernels' thread
    count), per instruction family the CPU has -- 'fp32_fma_256' (AVX2), 'fp32_fma_512'
    (AVX-512), 'bf16_dot_512' (VDPBF16PS), 'int8_dot_512' (VPDPBUSD; operations).  Empty off
    x86-64.  ``gemma-native bench`` reports prefill against the family its mode multiplies on."""
    n = _core.num_threads() if threads is None else threads
    return dict(_core.core_peaks(_count("threads", n, MAX_THREADS)))


def read_bandwidth(buffer, threads: int | None = None, reps: int = 5) -> float:
    """The memory's streaming read rate, measured: bytes/s of ``threads`` threads (default: the
    kernels' thread count) each summing its own slice of ``buffer`` (a C-contiguous array or
    other buffer; make it much larger than the caches to measure DRAM) with wide vector loads
    (8-byte loads where the kernel set in use is the scalar one) and nothing else, best of
    ``reps`` runs of a plain loop and ``reps`` of one that also prefetches 4 KiB ahead, as the
    decode kernels do.  Decode streams its weights, so this is its ceiling; ``gemma-native
    bench`` reports the faster of this and numpy's sum."""
    n = _count("threads", _core.num_threads() if threads is None else threads, MAX_THREADS)
    reps = _count("reps", reps, 1000)
    try:
        return float(_core.read_bandwidth(buffer, n, reps))
    except (ValueError, TypeError) as e:
        raise InvalidArgumentError(f"read_bandwidth: {e}") from None


def set_cpu_isa(name: str) -> None:
    """Forces a CPU kernel set ('scalar', 'avx2', 'avx512' or 'auto'); DeviceError if this
    binary or CPU lacks it.  The environment variable GEMMA_NATIVE_CPU_ISA does the same at
    import."""
    _core.set_cpu_isa(str(name))


def set_bf16_gemm(name: str) -> None:
    """Forces the GEMM of the bf16 compute mode (activations="bfloat16"): 'amx' (Intel AMX
    tiles; needs AMX-BF16 and Linux >= 5.16), 'amx-emulated' (the same kernel over emulated tiles
    on any CPU; slow, for tests), 'none' (the mode then runs exactly) or 'auto' (amx where
    usable).  ``backend_info()["bf16_gemm"]`` names the one in use; GEMMA_NATIVE_BF16_GEMM
    sets it at import."""
    _core.set_bf16_gemm(str(name))


def set_int8_gemm(name: str) -> None:
    """Forces the GEMM that multiplies int8 (Q8_0R16, ``dtype="int8"``) weights by 16 or more
    activation rows (prefill): 'amx' (Intel AMX-INT8 tiles; needs Linux >= 5.16), 'amx-emulated'
    (the same kernel over emulated tiles on any CPU; slow, for tests), 'none' (the kernel set's
    own VNNI / AVX2 / NEON products) or 'auto' (amx where usable).  Every choice gives the same
    results bit for bit; ``backend_info()["int8_gemm"]`` names the one in use and
    GEMMA_NATIVE_INT8_GEMM sets it at import."""
    _core.set_int8_gemm(str(name))


# GEMMA_NATIVE_CPU_ISA is read by the core at first use (backend_info() or any computation);
# an unknown or unsupported value raises DeviceError there, not at import, so that tools built
# on the package (the gemma-native command) can report it cleanly.

__all__ = [
    "load", "random_model", "Model", "SamplingParams", "GenerationResult", "State", "Tokenizer",
    "backend_info", "core_peaks", "read_bandwidth", "set_num_threads", "set_max_pass_tokens",
    "set_cpu_isa", "set_bf16_gemm", "set_int8_gemm",
    "GemmaNativeError", "ModelFormatError",
    "ModelNotFoundError", "UnsupportedModelError", "ShapeError", "DTypeError",
    "InvalidArgumentError", "DeviceError", "TokenizerError", "__version__",
]
