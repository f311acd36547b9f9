"""Helpers of the op tests (tests/ops/): the kernel sets and devices an op runs on, weights in
each float dtype, and a tolerance check relative to a magnitude bound of the result."""

from __future__ import annotations

import numpy as np
import pytest

import gemma_native as gn
from gemma_native import ops
from gemma_native._dtypes import f32_to_bf16_bits, weight_to_f32

# Every CPU kernel set (avx512emu / avx512vnniemu: the AVX-512 code, without and with VNNI, over
# SIMDe, built when its headers are found; neon / neondot on aarch64), the SIMT emulator of the
# CUDA kernels and a real GPU (marked gpu).
ALL_ISAS = ["scalar", "avx2", "avx512", "avx512vnni", "avx512emu", "avx512vnniemu", "neon",
            "neondot", ops.EMULATOR, pytest.param("cuda", marks=pytest.mark.gpu)]
AVAILABLE_ISAS = list(gn.backend_info()["available_isas"])


def make_weight(values: np.ndarray, dtype: str):
    """(weight argument for ops/ref, the float32 values it really holds)."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    if dtype == "float32":
        w = values
    elif dtype == "float16":
        w = values.astype(np.float16)
    elif dtype == "bfloat16":
        w = (f32_to_bf16_bits(values), "bfloat16")
    else:  # pragma: no cover
        raise AssertionError(dtype)
    return w, weight_to_f32(w)


def assert_close(got, want, scale, rtol=1e-5, what=""):
    """|got - want| <= rtol * scale elementwise (NaN anywhere fails).  `scale` is a magnitude
    bound of the result (broadcastable); a floor of 1e-3 * max(scale) keeps exact zeros sane."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = np.broadcast_to(np.asarray(scale, np.float64), want.shape)
    floor = 1e-3 * float(scale.max()) if scale.size else 0.0
    tol = rtol * (scale + floor)
    err = np.abs(got - want)
    bad = ~(err <= tol)
    if bad.any():
        i = np.unravel_index(int(np.argmax(np.where(bad, err - tol, -np.inf))), want.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {want.size} elements differ; worst at {i}: "
            f"got {got[i]!r}, want {want[i]!r}, |err| {err[i]:.3g} > tol {tol[i]:.3g}")
