"""The native compute ops over numpy arrays, for microbenchmarks and tests.

Each function has a numpy twin of the same name and signature in :mod:`gemma_native.reference`.
Activations are float32 (other float inputs are converted); weights may be float32, float16 or
``(uint16_bits, "bfloat16")`` (see :mod:`gemma_native._dtypes`).  Outputs are new float32 arrays;
the functions with state (``conv1d``, ``rglru_scan``, ``attention`` with a cache) update the given
state arrays in place, which must then be float32 and C-contiguous.
The kernels run on the CPU ISA chosen at import (``gemma_native.backend_info()``).

Every op takes a keyword ``device``: ``"cpu"`` (the default), ``"cuda"`` (see docs/cuda.md), or
``"cuda-emu"``: the op's CUDA kernel compiled for the CPU and run on the project's SIMT emulator
(every CUDA thread a fiber on the calling thread; slow, meant for verification: see
docs/cuda.md).  An op that has no CUDA kernel yet raises :class:`gemma_native.DeviceError` on
the CUDA devices; ``with use_device(...)`` sets the device for ops called without one.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools

import numpy as np

from . import _core
from ._dtypes import DTYPE_CODES, PACKED_CODES, Q8_0R16, QUANT_CODES, pack_q8_0r16, split_weight
from .errors import DeviceError, InvalidArgumentError, ShapeError
from .device import EMULATOR, check_device

_BACKEND = contextvars.ContextVar("gemma_native_ops_backend", default=_core)
_DEFAULT_DEVICE = contextvars.ContextVar("gemma_native_ops_device", default="cpu")


def _be():
    """The compiled module the running op calls: _core (CPU) or _core.cuda_emu."""
    return _BACKEND.get()


def emulated_ops():
    """Names of the ops that have a CUDA kernel (and so run with device="cuda-emu")."""
    return list(_core.cuda_emu.ops_supported())


@contextlib.contextmanager
def use_device(device):
    """Within the block, ops called without ``device=`` run on ``device``."""
    token = _DEFAULT_DEVICE.set(check_device(device))
    try:
        yield
    finally:
        _DEFAULT_DEVICE.reset(token)


def with_device(fn):
    """Adds the keyword-only ``device`` argument to an op (default: "cpu", or the device of
    the enclosing :func:`use_device`)."""

    @functools.wraps(fn)
    def wrapper(*args, device=None, **kwargs):
        name = check_device(_DEFAULT_DEVICE.get() if device is None else device)
        if name == "cpu":
            return fn(*args, **kwargs)
        if name == EMULATOR:
            module, where = _core.cuda_emu, EMULATOR
        else:
            if name != "cuda:0":
                raise DeviceError(f"ops run on the first GPU only for now, not {name!r}")
            module, where = _core.cuda, name
        if fn.__name__ not in module.ops_supported():
            raise DeviceError(f"op {fn.__name__!r} has no CUDA kernel yet, so it cannot run on "
                              f"{where!r}; ops with kernels: {list(module.ops_supported())}")
        token = _BACKEND.set(module)
        try:
            return fn(*args, **kwargs)
        finally:
            _BACKEND.reset(token)

    return wrapper

__all__ = [
    "embedding", "rmsnorm", "linear", "block_diag_linear", "conv1d", "rglru_scan", "rope",
    "attention", "geglu", "softcap", "add", "sample", "sample_uniform", "emulated_ops",
    "use_device", "quantize_int8",
]


def _f32(x):
    return np.ascontiguousarray(x, dtype=np.float32)


def _i32(x):
    return np.ascontiguousarray(x, dtype=np.int32)


def _w(w):
    arr, name = split_weight(w)
    return np.ascontiguousarray(arr), {**DTYPE_CODES, **QUANT_CODES, **PACKED_CODES}[name]


def _opt(x):
    return None if x is None else _f32(x)


@with_device
def embedding(table, ids, scale=1.0):
    arr, code = _w(table)
    ids = np.asarray(ids)
    if ids.size and (not np.issubdtype(ids.dtype, np.integer)
                     or ids.min() < 0 or ids.max() >= arr.shape[0]):
        bad = ids.reshape(-1)[0] if not np.issubdtype(ids.dtype, np.integer) else (
            ids.min() if ids.min() < 0 else ids.max())
        raise InvalidArgumentError(f"token id {bad!r} is outside the vocabulary "
                                   f"[0, {arr.shape[0]})")
    return _be().embedding(arr, code, _i32(ids), float(scale))


@with_device
def rmsnorm(x, w, eps=1e-6, offset=1.0):
    x = _f32(x)
    shape = x.shape
    if x.ndim == 0 or shape[-1] == 0:
        raise ShapeError(f"rmsnorm needs a non-empty last axis, got shape {shape}")
    out = _be().rmsnorm(x.reshape(-1, shape[-1]), _f32(w), float(eps), float(offset))
    return out.reshape(shape)


def quantize_int8(w, layout: str = Q8_0R16):
    """float32 W [rows, cols] (cols % 32 == 0) quantized as ``dtype="int8"`` does (GGML's Q8_0
    rule: per 32 values a half scale amax / 127 and rounded int8 values), as the weight argument
    of :func:`linear`: ``(uint8 blocks, "Q8_0")``, multiplied with llama.cpp's arithmetic, or
    with ``layout="Q8_0R16"`` (the default; rows % 16 == 0) the same values 16 rows interleaved,
    multiplied with whole-block integer sums (docs/model-math.md)."""
    if layout not in ("Q8_0", Q8_0R16):
        raise InvalidArgumentError(f"layout must be 'Q8_0' or '{Q8_0R16}', got {layout!r}")
    blocks = _core.quantize_q8_0(_f32(w))
    return (pack_q8_0r16(blocks) if layout == Q8_0R16 else blocks), layout


@with_device
def linear(x, w, bias=None, float_activations=False, bf16_activations=False):
    """y = x @ W.T + bias.  For GGML-quantized W, x is quantized to 8 bits per block for exact
    integer dot products (as llama.cpp does) unless ``float_activations`` is true, which widens W
    and keeps x in float32 instead (the dequantized model's math).  For float W,
    ``bf16_activations`` is the bf16 compute mode: from 16 rows of x on, x and W are rounded to
    bfloat16 and multiplied on the CPU's matrix unit with float32 sums (see set_bf16_gemm);
    fewer rows, or no such unit, run exactly."""
    arr, code = _w(w)
    return _be().linear(_f32(x), arr, code, _opt(bias), bool(float_activations),
                        bool(bf16_activations))


@with_device
def block_diag_linear(x, w, b=None, bf16_activations=False):
    """y[n, h*bs + j] = sum_i x[n, h*bs + i] * w[h, i, j] + b[h, j].  ``bf16_activations``: as
    for :func:`linear` (float w, from 16 rows of x and a block size that is a multiple of 32,
    on the AMX tiles when the bf16 GEMM in use is an AMX one; exact otherwise)."""
    arr, code = _w(w)
    return _be().block_diag_linear(_f32(x), arr, code, _opt(b), bool(bf16_activations))


@with_device
def conv1d(x, pos, w, bias=None, state=None):
    return _be().conv1d(_f32(x), _i32(pos), _f32(w), _opt(bias), state)


@with_device
def rglru_scan(x, gate_x, gate_a, a_param, pos, h):
    return _be().rglru_scan(_f32(x), _f32(gate_x), _f32(gate_a), _f32(a_param), _i32(pos), h)


@with_device
def rope(x, pos, rot_dims, base=10000.0, linear_factor=1.0):
    return _be().rope(_f32(x), _i32(pos), int(rot_dims), float(base), float(linear_factor))


@with_device
def attention(q, k, v, pos, window, scale, softcap=0.0, k_cache=None, v_cache=None, count=None):
    if count is not None:
        count = np.ascontiguousarray(count, dtype=np.int64)
    return _be().attention(_f32(q), _f32(k), _f32(v), _i32(pos), int(window), float(scale),
                           float(softcap), k_cache, v_cache, count)


@with_device
def geglu(gate, up):
    return _be().geglu(_f32(gate), _f32(up))


@with_device
def softcap(x, cap):
    return _be().softcap(_f32(x), float(cap))


@with_device
def add(x, y):
    return _be().add(_f32(x), _f32(y))


@with_device
def sample(logits, temperature, top_k, top_p, seed, counter):
    logits = _f32(logits)
    n = logits.shape[0] if logits.ndim == 2 else -1

    def col(v, dt):
        a = np.asarray(v, dtype=dt)  # (ascontiguousarray would turn a scalar into shape (1,))
        return np.full(n, a, dtype=dt) if a.ndim == 0 and n >= 0 else np.ascontiguousarray(a)

    return _be().sample(logits, col(temperature, np.float32), col(top_k, np.int32),
                        col(top_p, np.float32), col(seed, np.uint64), col(counter, np.uint64))


@with_device
def sample_uniform(seed, counter):
    return _be().sample_uniform(int(seed), int(counter))
