"""ggml's own CPU functions through ctypes (from the libggml-cpu that llama-cpp-python ships):
the activation quantizer (``from_float`` of the weight type's ``vec_dot_type``) and the block dot
product (``vec_dot``) for a weight type.  Used by tests/tools/make_ggml_dot_fixtures.py and,
when llama-cpp-python is installed, directly by tests/ops/test_quantized_ops.py."""

from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

GGML_TYPE_IDS = {"Q4_0": 2, "Q5_0": 6, "Q8_0": 8, "Q4_K": 12, "Q6_K": 14}
_ACT_BYTES = {8: 34, 15: 4 + 256 + 32}  # bytes per block of q8_0 (32 values) / q8_K (256)
_ACT_VALUES = {8: 32, 15: 256}


class _Traits(ctypes.Structure):
    _fields_ = [("from_float", ctypes.c_void_p), ("vec_dot", ctypes.c_void_p),
                ("vec_dot_type", ctypes.c_int), ("nrows", ctypes.c_int64)]


_FROM_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
_VEC_DOT = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t,
                            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                            ctypes.c_int)


def load_ggml_cpu():
    """The ggml CPU library of the installed llama-cpp-python (ImportError if absent)."""
    import llama_cpp

    libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    paths = sorted(glob.glob(os.path.join(libdir, "libggml-cpu*.so*")))
    if not paths:
        raise ImportError(f"no libggml-cpu in {libdir}")
    lib = ctypes.CDLL(paths[0])
    lib.ggml_cpu_init()
    lib.ggml_get_type_traits_cpu.restype = ctypes.POINTER(_Traits)
    return lib


def ggml_dots(lib, raw: np.ndarray, kind: str, x: np.ndarray):
    """ggml's y[n, m] = vec_dot(W[m], quantize(x[n])), plus the quantized activation bytes."""
    tr = lib.ggml_get_type_traits_cpu(GGML_TYPE_IDS[kind]).contents
    act_type = tr.vec_dot_type
    quant = _FROM_FLOAT(lib.ggml_get_type_traits_cpu(act_type).contents.from_float)
    dot = _VEC_DOT(tr.vec_dot)
    x = np.ascontiguousarray(x, np.float32)
    raw = np.ascontiguousarray(raw, np.uint8)
    n, k = x.shape
    act = np.zeros((n, k // _ACT_VALUES[act_type] * _ACT_BYTES[act_type]), np.uint8)
    y = np.zeros((n, raw.shape[0]), np.float32)
    for i in range(n):
        quant(x[i].ctypes.data, act[i].ctypes.data, k)
        for m in range(raw.shape[0]):
            s = ctypes.c_float()
            dot(k, ctypes.byref(s), 0, raw[m].ctypes.data, 0, act[i].ctypes.data, 0, 1)
            y[i, m] = s.value
    return y, act
