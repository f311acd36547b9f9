"""The bf16 compute mode's GEMMs (csrc/ops/cpu/bf16_gemm.cc on AMX tiles, bf16_dot.cc with
AVX512-BF16 dot products): linear with bf16_activations.

Run on every machine through emulation ("amx-emulated": the same kernel source with the tile
instructions done in C++; "avx512bf16-emulated": the dot-product kernel over SIMDe, built
where the SIMDe headers are, which CI requires) and on the real units where this CPU has them.  The truth is
numpy in float64 on the same bfloat16-rounded x and W; the kernel sums in float32 in an order of
its own (and the hardware rounds its bf16 pairs its own way), so each output is checked against
the worst-case bound of a float32 sum of K products, K * 2^-24 * sum_k |x_k * w_k| (plus the
bias and output roundings), which holds for any summation order -- a verdict that cannot
depend on rounding luck.  Inputs are normal numbers: AMX and VDPBF16PS flush subnormals to
zero.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import gemma_native as gn
from gemma_native import _core, ops, reference
from gemma_native._dtypes import bf16_round, f32_to_bf16_bits

from tests.helpers.arrays import weight_arg

KERNELS = ["amx-emulated", "amx", "avx512bf16-emulated", "avx512bf16"]


@pytest.fixture(params=KERNELS)
def kernel(request):
    name = request.param
    if name not in gn.backend_info()["available_bf16_gemms"]:
        if name == "avx512bf16-emulated" and os.environ.get("GEMMA_NATIVE_EXPECT_AVX512EMU") == "1":
            pytest.fail("GEMMA_NATIVE_EXPECT_AVX512EMU=1 but the build has no SIMDe kernels")
        pytest.skip(f"bf16 GEMM {name!r} cannot run here (not built, no such unit on this CPU, "
                    "or AMX not granted by the OS)")
    gn.set_bf16_gemm(name)
    assert _core.bf16_gemm() == name
    yield name
    gn.set_bf16_gemm("auto")



def _check(x, w, bias, y):
    """y against the float64 product of the bf16-rounded operands, within the fp32-sum bound."""
    ref = reference.linear(x, w, bias, bf16_activations=True).astype(np.float64)
    xb = bf16_round(x).astype(np.float64)
    wb = bf16_round(reference.weight_to_f32(w)).astype(np.float64)
    k = x.shape[1]
    mag = np.abs(xb) @ np.abs(wb).T
    bound = (k + 2) * 2.0 ** -24 * mag + 2.0 ** -23 * np.abs(ref)
    if bias is not None:
        bound += 2.0 ** -24 * np.abs(bias)
    err = np.abs(y.astype(np.float64) - ref)
    assert np.all(err <= bound), (f"worst excess {np.max(err - bound):.3g} at "
                                  f"{np.unravel_index(np.argmax(err - bound), err.shape)}")


# N from the switch (16) on, with partial 32-row tiles; M with partial 16/32-row tile groups and
# more than one 128-row task; K with partial 32-value tiles, and long enough rows that a task
# holds fewer W rows (K = 5200: 64 rows of W per task).
SHAPES = [(16, 1, 1), (16, 33, 7), (17, 31, 32), (33, 75, 33), (40, 130, 611),
          (64, 300, 64), (19, 70, 5200)]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
@pytest.mark.parametrize("n,m,k", SHAPES)
def test_linear_bf16_within_fp32_sum_bound(kernel, dtype, n, m, k):
    rng = np.random.default_rng(n * 1000 + m + k)
    x = rng.standard_normal((n, k), dtype=np.float32)
    w = weight_arg(rng.standard_normal((m, k), dtype=np.float32) * 0.1, dtype)
    bias = rng.standard_normal(m, dtype=np.float32)
    y = ops.linear(x, w, bias, bf16_activations=True)
    assert y.shape == (n, m) and y.dtype == np.float32
    _check(x, w, bias, y)
    _check(x, w, None, ops.linear(x, w, bf16_activations=True))


def test_the_mode_rounds_the_activations(kernel):
    """It really is the bf16 mode: the result differs from the exact one by far more than fp32
    rounding (x has bits below bf16's 8), and equals it below the 16-row switch."""
    rng = np.random.default_rng(3)
    k = 256
    x = rng.standard_normal((20, k), dtype=np.float32)
    w = weight_arg(rng.standard_normal((48, k), dtype=np.float32), "bfloat16")
    exact = ops.linear(x, w)
    y = ops.linear(x, w, bf16_activations=True)
    assert np.abs(y - exact).max() > 1e-3 * np.abs(exact).max()
    np.testing.assert_array_equal(ops.linear(x[:15], w, bf16_activations=True), exact[:15])


@pytest.mark.parametrize("k", [96, 97])
def test_activations_round_to_nearest_even(kernel, k):
    """Against an identity W each output is one product, bf16(x) * 1: the kernels' own rounding
    of x (vectorised on AVX512-BF16) must be nearest-even, ties included, as the scalar rule."""
    rng = np.random.default_rng(7 + k)
    n = 40
    base = bf16_round(rng.standard_normal((n, k), dtype=np.float32) * 3.0)
    sp = np.spacing(base)            # one float32 step at each value (bf16 keeps 16 fewer bits)
    tie = base + sp * np.float32(2.0 ** 15)  # halfway to the next bf16 value, exact in float32
    kind = rng.integers(0, 4, (n, k))
    x = np.select([kind == 0, kind == 1, kind == 2], [tie, tie + sp, tie - sp], base)
    assert x.dtype == np.float32
    eye = weight_arg(np.eye(k, dtype=np.float32), "bfloat16")
    y = ops.linear(x, eye, bf16_activations=True)
    want = bf16_round(x)
    np.testing.assert_array_equal(y, want)
    # every kind happened: ties went to the even neighbour, one step past them away from base
    odd = (f32_to_bf16_bits(base) & 1) == 1
    np.testing.assert_array_equal(want[kind == 0], np.where(odd, bf16_round(tie + sp), base)[kind == 0])
    np.testing.assert_array_equal(want[kind == 1], bf16_round(tie + sp)[kind == 1])
    assert not np.array_equal(want[kind == 1], base[kind == 1])
    np.testing.assert_array_equal(want[kind == 2], base[kind == 2])


def test_non_finite_rows_stay_in_their_rows(kernel):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((32, 64), dtype=np.float32)
    x[5, 3] = np.inf
    x[9, 0] = np.nan
    w = rng.standard_normal((40, 64), dtype=np.float32)
    y = ops.linear(x, w, bf16_activations=True)
    assert not np.isfinite(y[5]).any() and np.isnan(y[9]).all()
    good = np.ones(32, bool)
    good[[5, 9]] = False
    _check(x[good], w, None, y[good])


def test_none_runs_exactly():
    gn.set_bf16_gemm("none")
    try:
        rng = np.random.default_rng(5)
        x = rng.standard_normal((40, 70), dtype=np.float32)
        w = rng.standard_normal((33, 70), dtype=np.float32)
        np.testing.assert_array_equal(ops.linear(x, w, bf16_activations=True), ops.linear(x, w))
        assert gn.backend_info()["bf16_gemm"] == "none"
    finally:
        gn.set_bf16_gemm("auto")


def test_auto_picks_amx_then_avx512bf16_where_usable():
    gn.set_bf16_gemm("auto")
    avail = gn.backend_info()["available_bf16_gemms"]
    assert {"none", "amx-emulated"} <= set(avail)
    want = "amx" if "amx" in avail else ("avx512bf16" if "avx512bf16" in avail else "none")
    assert gn.backend_info()["bf16_gemm"] == want


def test_bad_names_and_quantized_weights_are_refused():
    with pytest.raises(gn.DeviceError, match="unknown or not built bf16 GEMM 'tpu'"):
        gn.set_bf16_gemm("tpu")
    if "amx" not in gn.backend_info()["available_bf16_gemms"]:
        with pytest.raises(gn.DeviceError):
            gn.set_bf16_gemm("amx")
    gn.set_bf16_gemm("auto")
    w = np.random.default_rng(6).standard_normal((8, 64), dtype=np.float32)
    with pytest.raises(gn.InvalidArgumentError, match="bf16 activations are for float weights"):
        ops.linear(np.ones((20, 64), np.float32), (_core.quantize_q8_0(w), "Q8_0"),
                   bf16_activations=True)


def _bd_reference(x, w, b, bf16):
    """float64 y[n, h*bs + j] = sum_i x[n, h*bs + i] * w[h, i, j] + b[h, j], with x and w
    rounded to bfloat16 first when bf16; and the fp32-sum bound of each output."""
    blocks, bs, _ = w.shape
    xr = bf16_round(x).astype(np.float64) if bf16 else x.astype(np.float64)
    wr = bf16_round(w).astype(np.float64) if bf16 else w.astype(np.float64)
    xh = xr.reshape(x.shape[0], blocks, bs)
    ref = np.einsum("nhi,hij->nhj", xh, wr).reshape(x.shape[0], -1)
    mag = np.einsum("nhi,hij->nhj", np.abs(xh), np.abs(wr)).reshape(x.shape[0], -1)
    bias = b.reshape(-1).astype(np.float64)
    ref = ref + bias
    bound = (bs + 2) * 2.0 ** -24 * mag + 2.0 ** -23 * np.abs(ref) + 2.0 ** -24 * np.abs(bias)
    return ref, bound


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("n,blocks,bs", [(16, 1, 32), (17, 3, 64), (40, 2, 96), (33, 5, 256)])
def test_block_diag_bf16(kernel, dtype, n, blocks, bs):
    """The RG-LRU gates' block-diagonal product in the bf16 mode, on every bf16 unit (AMX tiles
    and AVX512-BF16, real or emulated): within the fp32-sum bound of the bf16-rounded operands."""
    rng = np.random.default_rng(n + blocks * 7 + bs)
    x = rng.standard_normal((n, blocks * bs), dtype=np.float32)
    w32 = rng.standard_normal((blocks, bs, bs), dtype=np.float32) * 0.1
    w = weight_arg(w32, dtype)
    b = rng.standard_normal((blocks, bs), dtype=np.float32)
    y = ops.block_diag_linear(x, w, b, bf16_activations=True)
    exact = ops.block_diag_linear(x, w, b)
    ref, bound = _bd_reference(x, reference.weight_to_f32(w).reshape(w32.shape), b, True)
    err = np.abs(y.astype(np.float64) - ref)
    assert np.all(err <= bound), f"worst excess {np.max(err - bound):.3g}"
    assert not np.array_equal(y, exact)  # the bf16 rounding did happen


def test_block_diag_bf16_falls_back_to_exact(kernel):
    """Fewer than 16 rows, or a block size that is not a multiple of 32: the exact op."""
    rng = np.random.default_rng(3)
    for n, bs in [(15, 64), (20, 48)]:
        x = rng.standard_normal((n, 2 * bs), dtype=np.float32)
        w = rng.standard_normal((2, bs, bs), dtype=np.float32)
        y = ops.block_diag_linear(x, w, bf16_activations=True)
        np.testing.assert_array_equal(y.view(np.uint32),
                                      ops.block_diag_linear(x, w).view(np.uint32))
