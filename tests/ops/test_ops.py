"""Every native op (gemma_native.ops) against its numpy twin (gemma_native.reference), on every
CPU kernel set this machine can run, plus the argument checks of the bindings.

Conventions:
* ``isa`` parametrizes over scalar / avx2 / avx512 and skips the ones this CPU lacks; the active
  kernel set is restored to 'auto' after every test.  Its value ``cuda-emu`` runs the op's
  CUDA kernel on the SIMT emulator instead (ops.use_device), and ``cuda`` (marked gpu; skipped
  without a GPU) on a real GPU: the same shapes and the same tolerances as the CPU kernels.  Tests of an op without a CUDA kernel skip there (the op is
  the test name's prefix, test_<op>_...).
* Tolerances are relative to a magnitude bound of each output (the same op run on absolute
  values), so they stay meaningful for outputs near zero: fp32 math is held to ~1e-5 of that
  bound, while the twins compute in float64 where it matters.
* Shapes are small and deliberately not multiples of the vector widths (8 / 16 lanes) so that
  every vector body and every scalar tail runs.
"""

from __future__ import annotations

import numpy as np
import pytest

import gemma_native as gn
from gemma_native import ops
from gemma_native import reference as ref
from gemma_native._dtypes import f32_to_bf16_bits, weight_to_f32
from gemma_native.errors import (
    DeviceError,
    DTypeError,
    GemmaNativeError,
    InvalidArgumentError,
    ShapeError,
)

ALL_ISAS = ["scalar", "avx2", "avx512", ops.EMULATOR, pytest.param("cuda", marks=pytest.mark.gpu)]
CUDA_AVAILABLE = bool(gn.backend_info()["cuda"]["available"])
AVAILABLE_ISAS = list(gn.backend_info()["available_isas"])
WEIGHT_DTYPES = ["float32", "float16", "bfloat16"]

# Sizes that exercise vector bodies and tails (lane counts are 1, 8 and 16).
KS = [1, 7, 16, 33, 100]
NS = [1, 3, 4, 5, 37]


# ---------------------------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _restore_auto_isa():
    yield
    gn.set_cpu_isa("auto")


@pytest.fixture(params=ALL_ISAS)
def isa(request):
    name = request.param
    if name in (ops.EMULATOR, "cuda"):
        if name == "cuda" and not CUDA_AVAILABLE:
            pytest.skip("no CUDA GPU: " + str(gn.backend_info()["cuda"]["reason"]))
        test = request.node.originalname
        if not any(test.startswith(f"test_{op}_") for op in ops.emulated_ops()):
            pytest.skip(f"{test}: its op has no CUDA kernel yet")
        with ops.use_device(name):
            yield name
        return
    if name not in AVAILABLE_ISAS:
        pytest.skip(f"CPU kernel set {name!r} is compiled in but this CPU cannot run it "
                    f"(available here: {AVAILABLE_ISAS})")
    gn.set_cpu_isa(name)
    assert gn.backend_info()["cpu_isa"] == name
    yield name
    gn.set_cpu_isa("auto")


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


def rnd(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# embedding
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
def test_embedding_matches_reference(isa, dtype):
    rng = np.random.default_rng(1)
    for vocab in (1, 5, 37):
        for d in KS:
            w, wf = make_weight(rnd(rng, vocab, d), dtype)
            for n in (1, 5, 37):
                ids = rng.integers(0, vocab, size=n).astype(np.int32)
                ids[0] = vocab - 1  # the last row is reachable
                for scale in (1.0, float(np.sqrt(d)) + 0.25):
                    got = ops.embedding(w, ids, scale)
                    want = ref.embedding(w, ids, scale)
                    assert got.dtype == np.float32 and got.shape == (n, d)
                    assert_close(got, want, np.abs(wf[ids]) * scale, rtol=1e-6,
                                 what=f"embedding V={vocab} D={d} N={n} {dtype}")


def test_embedding_float16_as_uint16_bits_equals_float16(isa):
    rng = np.random.default_rng(2)
    table = rnd(rng, 9, 33).astype(np.float16)
    ids = np.array([0, 8, 3, 3], np.int32)
    a = ops.embedding(table, ids)
    b = ops.embedding((table.view(np.uint16), "float16"), ids)
    np.testing.assert_array_equal(a, b)


def test_embedding_empty_ids(isa):
    table = np.ones((4, 7), np.float32)
    out = ops.embedding(table, np.zeros(0, np.int32))
    assert out.shape == (0, 7)


# ---------------------------------------------------------------------------------------------
# rmsnorm
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [1.0, 0.0])
def test_rmsnorm_matches_reference(isa, offset):
    rng = np.random.default_rng(3)
    for n in NS:
        for d in KS:
            x = rnd(rng, n, d, scale=3.0)
            w = rnd(rng, d, scale=0.5)
            for eps in (1e-6, 1e-2):
                got = ops.rmsnorm(x, w, eps, offset)
                want = ref.rmsnorm(x, w, eps, offset)
                assert got.dtype == np.float32 and got.shape == x.shape
                assert_close(got, want, np.abs(want), what=f"rmsnorm N={n} D={d} eps={eps}")


def test_rmsnorm_leading_dims_and_zero_rows(isa):
    rng = np.random.default_rng(4)
    x = rnd(rng, 2, 3, 33)
    x[1, 2] = 0.0  # an all-zero row: out = 0 (eps keeps it finite)
    w = rnd(rng, 33)
    got = ops.rmsnorm(x, w)
    want = ref.rmsnorm(x, w)
    assert got.shape == x.shape
    assert np.all(np.isfinite(got))
    assert_close(got, want, np.abs(want), what="rmsnorm 3-D")
    assert np.all(got[1, 2] == 0.0)


# ---------------------------------------------------------------------------------------------
# linear
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
def test_linear_matches_reference(isa, dtype, with_bias):
    rng = np.random.default_rng(5)
    for k in KS:
        for n in NS:
            for m in (1, 3, 17, 40):
                x = rnd(rng, n, k)
                w, wf = make_weight(rnd(rng, m, k), dtype)
                bias = rnd(rng, m) if with_bias else None
                got = ops.linear(x, w, bias)
                want = ref.linear(x, w, bias)
                assert got.dtype == np.float32 and got.shape == (n, m)
                mag = ref.linear(np.abs(x), np.abs(wf), None if bias is None else np.abs(bias))
                assert_close(got, want, mag, what=f"linear N={n} K={k} M={m} {dtype}")


# N from 16 on goes through the packed GEMM (csrc/ops/cpu/gemm.h), below it through the GEMV
# rows; K values cover empty/partial vectors, an odd vector count, the 256-element K block edge
# and a scalar tail; M values cover partial 4-row slivers and 16-row tasks.
GEMM_KS = (1, 7, 8, 17, 24, 255, 256, 257, 520, 1031)
GEMM_NS = (1, 2, 4, 5, 15, 16, 17, 30, 64)


def _assert_batch_equals_singles(isa, got, singles, mag, msg):
    """On the CPU a row's result is bit-identical whether it came alone (GEMV) or in a batch
    (GEMM): both sum in linear's one order (dot_linear).  The CUDA GEMV (warp lanes + shuffles) and GEMM (tiles)
    sum in different orders, so there the rows agree to fp32 rounding, not bit for bit."""
    if isa in (ops.EMULATOR, "cuda"):
        assert_close(got, singles, mag, what=msg)
    else:
        np.testing.assert_array_equal(got, singles, err_msg=msg)


@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
def test_linear_gemm_rows_equal_single_rows_and_reference(isa, dtype):
    """A row's result is the same whether it came alone (GEMV) or in a batch (GEMM)."""
    rng = np.random.default_rng(11)
    for k in GEMM_KS:
        for m in (1, 5, 18):
            w, wf = make_weight(rnd(rng, m, k), dtype)
            bias = rnd(rng, m)
            x = rnd(rng, max(GEMM_NS), k)
            singles = np.concatenate([ops.linear(x[i:i + 1], w, bias) for i in range(len(x))])
            want = ref.linear(x, w, bias)
            mag = ref.linear(np.abs(x), np.abs(wf), np.abs(bias))
            assert_close(singles, want, mag, what=f"linear singles K={k} M={m} {dtype}")
            for n in GEMM_NS:
                got = ops.linear(x[:n], w, bias)
                _assert_batch_equals_singles(isa, got, singles[:n], mag[:n],
                                             f"linear N={n} K={k} M={m} {dtype} != singles")


def test_linear_gemm_large_shape_matches_reference(isa):
    """Several x blocks, W super blocks and K blocks at once (and both threads)."""
    rng = np.random.default_rng(12)
    x = rnd(rng, 77, 1100)
    w, wf = make_weight(rnd(rng, 70, 1100), "bfloat16")
    got = ops.linear(x, w)
    assert_close(got, ref.linear(x, w), ref.linear(np.abs(x), np.abs(wf)), what="big linear")
    _assert_batch_equals_singles(isa, got[40:41], ops.linear(x[40:41], w),
                                 ref.linear(np.abs(x[40:41]), np.abs(wf)), "row 40 != single")


def test_linear_float16_as_uint16_bits_and_fortran_order(isa):
    rng = np.random.default_rng(6)
    x = rnd(rng, 5, 33)
    w16 = rnd(rng, 7, 33).astype(np.float16)
    a = ops.linear(x, w16)
    b = ops.linear(x, (w16.view(np.uint16), "float16"))
    np.testing.assert_array_equal(a, b)
    wf = np.asfortranarray(rnd(rng, 7, 33))  # the wrapper makes weights contiguous
    assert_close(ops.linear(np.asfortranarray(x), wf), ref.linear(x, wf),
                 ref.linear(np.abs(x), np.abs(wf)), what="fortran-order")


# ---------------------------------------------------------------------------------------------
# block_diag_linear
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
def test_block_diag_linear_matches_reference(isa, dtype, with_bias):
    rng = np.random.default_rng(7)
    for blocks in (1, 3):
        for bs in (1, 7, 16, 33):
            for n in (1, 4, 5):
                x = rnd(rng, n, blocks * bs)
                w, wf = make_weight(rnd(rng, blocks, bs, bs), dtype)
                b = rnd(rng, blocks, bs) if with_bias else None
                got = ops.block_diag_linear(x, w, b)
                want = ref.block_diag_linear(x, w, b)
                assert got.dtype == np.float32 and got.shape == x.shape
                mag = ref.block_diag_linear(np.abs(x), np.abs(wf),
                                            None if b is None else np.abs(b))
                assert_close(got, want, mag, what=f"bdl H={blocks} bs={bs} N={n} {dtype}")


# ---------------------------------------------------------------------------------------------
# conv1d
# ---------------------------------------------------------------------------------------------


def _conv_positions(kind, batch, t_len):
    if kind == "single":
        return np.tile(np.arange(t_len, dtype=np.int32), (batch, 1))
    if kind == "doc_mid":  # a document starts in the middle (pos resets to 0)
        mid = t_len // 2
        row = np.concatenate([np.arange(mid), np.arange(t_len - mid)]).astype(np.int32)
        rows = [row]
        if batch > 1:  # the other row: two resets close together, then continuing positions
            alt = np.arange(t_len, dtype=np.int32) + 7
            alt[min(1, t_len - 1)] = 0
            if t_len > 3:
                alt[3:] = np.arange(t_len - 3)
            rows.append(alt)
        return np.stack([rows[b % len(rows)] for b in range(batch)])
    if kind == "left_pad":  # -1 padding then a document starting at 0
        pad = min(2, t_len - 1)
        row = np.concatenate([-np.ones(pad), np.arange(t_len - pad)]).astype(np.int32)
        return np.tile(row, (batch, 1))
    raise AssertionError(kind)


def _conv_mag(x, pos, w, bias, state):
    return ref.conv1d(np.abs(x), pos, np.abs(w), None if bias is None else np.abs(bias),
                      None if state is None else np.abs(state).copy())


@pytest.mark.parametrize("pos_kind", ["single", "doc_mid", "left_pad"])
def test_conv1d_matches_reference(isa, pos_kind):
    rng = np.random.default_rng(8)
    for width in (1, 2, 4, 5):
        for batch in (1, 2):
            for t_len in (1, 5, 11):
                for ch in (1, 7, 16, 33):
                    x = rnd(rng, batch, t_len, ch)
                    pos = _conv_positions(pos_kind, batch, t_len)
                    w = rnd(rng, width, ch)
                    bias = rnd(rng, ch) if ch % 2 else None
                    got = ops.conv1d(x, pos, w, bias)
                    want = ref.conv1d(x, pos, w, bias)
                    assert got.dtype == np.float32 and got.shape == x.shape
                    assert_close(got, want, _conv_mag(x, pos, w, bias, None),
                                 what=f"conv1d K={width} B={batch} T={t_len} L={ch}")


@pytest.mark.parametrize("pos_kind", ["single", "doc_mid"])
def test_conv1d_with_state_matches_reference(isa, pos_kind):
    rng = np.random.default_rng(9)
    for width in (1, 2, 4, 5):
        for batch in (1, 2):
            for t_len in (1, 2, 6):
                ch = 33
                x = rnd(rng, batch, t_len, ch)
                pos = _conv_positions(pos_kind, batch, t_len) + (0 if pos_kind == "doc_mid" else 3)
                w = rnd(rng, width, ch)
                bias = rnd(rng, ch)
                state0 = rnd(rng, batch, width - 1, ch)
                s_nat, s_ref = state0.copy(), state0.copy()
                got = ops.conv1d(x, pos, w, bias, s_nat)
                want = ref.conv1d(x, pos, w, bias, s_ref)
                assert_close(got, want, _conv_mag(x, pos, w, bias, state0),
                             what=f"conv1d+state K={width} B={batch} T={t_len}")
                # the state is the last K-1 raw inputs of (old state ++ x), exactly
                full = np.concatenate([state0, x], axis=1)
                np.testing.assert_array_equal(s_nat, full[:, full.shape[1] - (width - 1):])
                np.testing.assert_array_equal(s_nat, s_ref)


def test_conv1d_zero_state_equals_no_state(isa):
    rng = np.random.default_rng(10)
    x = rnd(rng, 2, 7, 19)
    pos = np.tile(np.arange(7, dtype=np.int32), (2, 1))
    w = rnd(rng, 4, 19)
    state = np.zeros((2, 3, 19), np.float32)
    np.testing.assert_array_equal(ops.conv1d(x, pos, w, None, state), ops.conv1d(x, pos, w))


@pytest.mark.parametrize("width", [1, 2, 4, 5])
def test_conv1d_chunked_equals_whole(isa, width):
    """Running a single document chunk by chunk with the carried state == running it whole."""
    rng = np.random.default_rng(11)
    batch, t_len, ch = 2, 17, 37
    x = rnd(rng, batch, t_len, ch)
    pos = np.tile(np.arange(t_len, dtype=np.int32), (batch, 1))
    w = rnd(rng, width, ch)
    bias = rnd(rng, ch)
    whole_state = np.zeros((batch, width - 1, ch), np.float32)
    whole = ops.conv1d(x, pos, w, bias, whole_state)
    assert_close(whole, ref.conv1d(x, pos, w, bias), _conv_mag(x, pos, w, bias, None),
                 what="whole")
    for schedule in ([1] * t_len, [2, 1, 3, 5, 6], [width - 1 or 1] * t_len, [4, 13], [t_len]):
        state = np.zeros((batch, width - 1, ch), np.float32)
        outs, t0 = [], 0
        for c in schedule:
            c = min(c, t_len - t0)
            if c <= 0:
                break
            outs.append(ops.conv1d(x[:, t0:t0 + c], pos[:, t0:t0 + c], w, bias, state))
            t0 += c
        assert t0 == t_len
        chunked = np.concatenate(outs, axis=1)
        assert_close(chunked, whole, _conv_mag(x, pos, w, bias, None), rtol=1e-6,
                     what=f"chunked {schedule}")
        np.testing.assert_array_equal(state, whole_state)


def test_conv1d_chunked_with_document_start_matches_reference(isa):
    """A document start inside a later chunk drops the carried state for the positions after
    it; native and twin agree chunk by chunk."""
    rng = np.random.default_rng(12)
    batch, ch, width = 2, 21, 4
    pos = np.array([[0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 0, 1],
                    [5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 0, 1, 2]], np.int32)
    t_len = pos.shape[1]
    x = rnd(rng, batch, t_len, ch)
    w = rnd(rng, width, ch)
    bias = rnd(rng, ch)
    s_nat = rnd(rng, batch, width - 1, ch)
    s_ref = s_nat.copy()
    t0 = 0
    for c in (2, 5, 1, 3, 2):
        xs, ps = x[:, t0:t0 + c], pos[:, t0:t0 + c]
        mag = _conv_mag(xs, ps, w, bias, s_ref)
        got = ops.conv1d(xs, ps, w, bias, s_nat)
        want = ref.conv1d(xs, ps, w, bias, s_ref)
        assert_close(got, want, mag, what=f"chunk at {t0}")
        np.testing.assert_array_equal(s_nat, s_ref)
        t0 += c
    assert t0 == t_len


# ---------------------------------------------------------------------------------------------
# rglru_scan
# ---------------------------------------------------------------------------------------------


def _rglru_tol_bounds(x, gate_x, gate_a, a_param, pos, h0):
    """(magnitude bound, fp32-cancellation bound) of the scan outputs.

    The native op computes sqrt(1 - exp(2 log_a)) in fp32 (as the JAX reference does), so
    1 - a^2 carries an absolute error of ~1 ulp(1); the resulting error of sqrt is at most
    2^-24 / mult.  The second bound propagates |x gx| * 2^-21 / mult (8x margin) through the
    recurrence; the twin computes in float64."""
    ga = 1.0 / (1.0 + np.exp(-gate_a.astype(np.float64)))
    sp = np.logaddexp(0.0, a_param.astype(np.float64))
    one_minus_a2 = -np.expm1(2.0 * (-8.0 * ga * sp))
    extra = np.abs(x).astype(np.float64) * (2.0 ** -21) / np.maximum(one_minus_a2, 1e-300)
    extra = np.minimum(extra, 1e30)
    mag = ref.rglru_scan(np.abs(x), gate_x, gate_a, a_param, pos, np.abs(h0).copy())
    canc = ref.rglru_scan(extra, gate_x, gate_a, a_param, pos, np.zeros_like(h0))
    return mag.astype(np.float64), canc.astype(np.float64)


def _check_rglru(x, gate_x, gate_a, a_param, pos, h0, what):
    h_nat, h_ref = h0.copy(), h0.copy()
    got = ops.rglru_scan(x, gate_x, gate_a, a_param, pos, h_nat)
    want = ref.rglru_scan(x, gate_x, gate_a, a_param, pos, h_ref)
    mag, canc = _rglru_tol_bounds(x, gate_x, gate_a, a_param, pos, h0)
    assert got.dtype == np.float32 and got.shape == x.shape
    assert np.all(np.isfinite(got)), what
    # scale such that rtol * scale == 1e-5 * mag + canc
    assert_close(got, want, mag + canc * 1e5, what=what)
    assert_close(h_nat, h_ref, (mag + canc * 1e5)[:, -1], what=what + " (h)")
    # h is updated in place and equals the last output
    np.testing.assert_array_equal(h_nat, got[:, -1])
    return got, h_nat


def _rglru_inputs(rng, batch, t_len, ch):
    x = rnd(rng, batch, t_len, ch)
    gate_x = rnd(rng, batch, t_len, ch, scale=2.0)
    gate_a = rnd(rng, batch, t_len, ch, scale=2.0)
    # Griffin's a_param = ln(1/r - 1) for radius r in [0.9, 0.999], widened a little both ways
    r = rng.uniform(0.5, 0.9995, size=ch)
    a_param = np.log(1.0 / r - 1.0).astype(np.float32)
    h0 = rnd(rng, batch, ch)
    return x, gate_x, gate_a, a_param, h0


@pytest.mark.parametrize("pos_kind", ["single", "doc_mid", "left_pad", "continuing"])
def test_rglru_scan_matches_reference(isa, pos_kind):
    rng = np.random.default_rng(13)
    for batch in (1, 2):
        for t_len in (1, 6, 13):
            for ch in (1, 7, 16, 33, 70):  # 70 > one 64-channel work block
                x, gate_x, gate_a, a_param, h0 = _rglru_inputs(rng, batch, t_len, ch)
                if pos_kind == "continuing":  # a later chunk of a document: no reset at all
                    pos = np.tile(np.arange(t_len, dtype=np.int32) + 40, (batch, 1))
                else:
                    pos = _conv_positions(pos_kind, batch, t_len)
                _check_rglru(x, gate_x, gate_a, a_param, pos, h0,
                             f"rglru {pos_kind} B={batch} T={t_len} L={ch}")


def test_rglru_scan_reset_mid_sequence_discards_history(isa):
    rng = np.random.default_rng(14)
    batch, t_len, ch = 2, 9, 19
    x, gate_x, gate_a, a_param, h0 = _rglru_inputs(rng, batch, t_len, ch)
    pos = np.array([[3, 4, 5, 0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5, 0, 1, 2]], np.int32)
    y, _ = _check_rglru(x, gate_x, gate_a, a_param, pos, h0, "reset mid")
    # from a reset on, the output does not depend on the history before it
    h_other = rnd(rng, batch, ch, scale=10.0)
    x2 = x.copy()
    x2[0, :3] = rnd(rng, 3, ch, scale=5.0)
    x2[1, :6] = rnd(rng, 6, ch, scale=5.0)
    y2 = ops.rglru_scan(x2, gate_x, gate_a, a_param, pos, h_other)
    np.testing.assert_array_equal(y2[0, 3:], y[0, 3:])
    np.testing.assert_array_equal(y2[1, 6:], y[1, 6:])
    # at the reset the output is exactly x * sigmoid(gate_x)
    gx = 1.0 / (1.0 + np.exp(-gate_x.astype(np.float64)))
    assert_close(y[0, 3], x[0, 3] * gx[0, 3], np.abs(x[0, 3]), what="reset value")


def test_rglru_scan_chunked_equals_whole(isa):
    rng = np.random.default_rng(15)
    batch, t_len, ch = 2, 16, 70
    x, gate_x, gate_a, a_param, h0 = _rglru_inputs(rng, batch, t_len, ch)
    pos = np.tile(np.arange(t_len, dtype=np.int32), (batch, 1))
    pos[1, 9] = 0  # a reset inside one of the chunks
    pos[1, 10:] = np.arange(1, t_len - 9)
    h_whole = h0.copy()
    whole = ops.rglru_scan(x, gate_x, gate_a, a_param, pos, h_whole)
    for schedule in ([1] * t_len, [3, 5, 1, 7], [8, 8], [15, 1]):
        h = h0.copy()
        outs, t0 = [], 0
        for c in schedule:
            sl = slice(t0, t0 + c)
            outs.append(ops.rglru_scan(x[:, sl], gate_x[:, sl], gate_a[:, sl], a_param,
                                       pos[:, sl], h))
            t0 += c
        assert t0 == t_len
        np.testing.assert_array_equal(np.concatenate(outs, axis=1), whole)
        np.testing.assert_array_equal(h, h_whole)


def test_rglru_scan_extreme_a_param_stays_finite(isa):
    rng = np.random.default_rng(16)
    a_param = np.array([-1e30, -1e4, -100.0, -30.0, -20.0, 0.0, 20.0, 30.0, 100.0, 1e4, 1e30,
                        3e38, -3e38], np.float32)
    ch = a_param.size
    batch, t_len = 2, 7
    x = rnd(rng, batch, t_len, ch, scale=3.0)
    for gate_scale in (1.0, 100.0):  # extreme gates too: sigmoid saturating to 0 and 1
        gate_x = rnd(rng, batch, t_len, ch, scale=gate_scale)
        gate_a = rnd(rng, batch, t_len, ch, scale=gate_scale)
        h0 = rnd(rng, batch, ch)
        pos = np.tile(np.arange(t_len, dtype=np.int32) + 1, (batch, 1))
        pos[1, 3] = 0
        y, h = _check_rglru(x, gate_x, gate_a, a_param, pos, h0, f"extreme gates*{gate_scale}")
        assert np.all(np.isfinite(y)) and np.all(np.isfinite(h))


# ---------------------------------------------------------------------------------------------
# rope
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rot", ["full", "half", "zero"])
def test_rope_matches_reference(isa, rot):
    rng = np.random.default_rng(17)
    for head_dim in (4, 12, 36):
        rot_dims = {"full": head_dim, "half": head_dim // 2, "zero": 0}[rot]
        for heads in (1, 3):
            for n in (1, 5, 9):
                x = rnd(rng, n, heads, head_dim)
                x_before = x.copy()
                pos = rng.integers(-1, 3000, size=n).astype(np.int32)
                pos[0] = 0
                if n > 2:
                    pos[1], pos[2] = 100000, 65537
                if n > 4:
                    pos[3], pos[4] = 2**20 + 3, 2**31 - 1
                for base, factor in ((10000.0, 1.0), (500.0, 1.0), (1e6, 1.0), (1e6, 8.0)):
                    got = ops.rope(x, pos, rot_dims, base, factor)
                    want = ref.rope(x, pos, rot_dims, base, factor)
                    np.testing.assert_array_equal(x, x_before)  # the input is not modified
                    assert got.dtype == np.float32 and got.shape == x.shape
                    # |rotated pair| <= |x1| + |x2|; the twin mirrors the fp32 angle math
                    half = rot_dims // 2
                    mag = np.abs(x).copy()
                    if half:
                        s = np.abs(x[..., :half]) + np.abs(x[..., half:rot_dims])
                        mag[..., :half] = s
                        mag[..., half:rot_dims] = s
                    assert_close(got, want, mag,
                                 what=f"rope hd={head_dim} rot={rot_dims} H={heads} "
                                      f"N={n} base={base}")
                    # dims past rot_dims pass through untouched
                    np.testing.assert_array_equal(got[..., rot_dims:], x[..., rot_dims:])
                    if rot_dims == 0:
                        np.testing.assert_array_equal(got, x)


def test_rope_linear_factor_divides_positions(isa):
    rng = np.random.default_rng(19)
    x = rnd(rng, 3, 2, 16)
    np.testing.assert_allclose(ops.rope(x, np.array([0, 8, 800], np.int32), 16, 1e4, 8.0),
                               ops.rope(x, np.array([0, 1, 100], np.int32), 16, 1e4),
                               atol=1e-5)
    with pytest.raises(gn.InvalidArgumentError):
        ops.rope(x, np.zeros(3, np.int32), 16, 1e4, 0.0)


def test_rope_position_zero_is_identity_and_norm_preserved(isa):
    rng = np.random.default_rng(18)
    x = rnd(rng, 3, 2, 12)
    got = ops.rope(x, np.zeros(3, np.int32), 12)
    np.testing.assert_array_equal(got, x)
    got = ops.rope(x, np.array([1, 77, 100000], np.int32), 6)
    n_in = np.linalg.norm(x[..., :6].astype(np.float64), axis=-1)
    n_out = np.linalg.norm(got[..., :6].astype(np.float64), axis=-1)
    np.testing.assert_allclose(n_out, n_in, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# attention
# ---------------------------------------------------------------------------------------------

HEAD_CONFIGS = [(1, 1), (4, 1), (4, 2)]


def _attn_inputs(rng, batch, t_len, heads, kv_heads, hd):
    q = rnd(rng, batch, t_len, heads, hd)
    k = rnd(rng, batch, t_len, kv_heads, hd)
    v = rnd(rng, batch, t_len, kv_heads, hd)
    return q, k, v


def _attn_mag(*vs):
    """Outputs are convex combinations of value rows: bounded by max |v|."""
    return max(float(np.abs(a).max()) for a in vs if a is not None and a.size)


@pytest.mark.parametrize("softcap", [0.0, 2.5], ids=["nocap", "softcap"])
def test_attention_prefill_matches_reference(isa, softcap):
    rng = np.random.default_rng(19)
    for heads, kv_heads in HEAD_CONFIGS:
        for hd in (7, 16, 33):
            for batch, t_len in ((1, 1), (1, 13), (2, 9)):
                q, k, v = _attn_inputs(rng, batch, t_len, heads, kv_heads, hd)
                pos = np.tile(np.arange(t_len, dtype=np.int32), (batch, 1))
                for window in (0, 1, 3, 8, 100):
                    for scale in (hd ** -0.5, 1.0):
                        got = ops.attention(q, k, v, pos, window, scale, softcap)
                        want = ref.attention(q, k, v, pos, window, scale, softcap)
                        assert got.dtype == np.float32 and got.shape == q.shape
                        assert_close(got, want, _attn_mag(v),
                                     what=f"attn H={heads}/{kv_heads} hd={hd} B={batch} "
                                          f"T={t_len} W={window} scale={scale:.3g}")


def test_attention_window_zero_returns_own_value(isa):
    rng = np.random.default_rng(20)
    q, k, v = _attn_inputs(rng, 2, 6, 4, 2, 9)
    pos = np.tile(np.arange(6, dtype=np.int32), (2, 1))
    out = ops.attention(q, k, v, pos, 0, 0.3)
    want = np.repeat(v, 2, axis=2)  # query head h uses kv head h // 2
    assert_close(out, want, _attn_mag(v), what="window 0")


@pytest.mark.parametrize("softcap", [0.0, 3.0], ids=["nocap", "softcap"])
def test_attention_segments_mid_chunk(isa, softcap):
    rng = np.random.default_rng(21)
    pos = np.array([[0, 1, 2, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4],
                    [-1, -1, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6]], np.int32)
    batch, t_len = pos.shape
    for heads, kv_heads in HEAD_CONFIGS:
        q, k, v = _attn_inputs(rng, batch, t_len, heads, kv_heads, 11)
        for window in (0, 1, 3, 8, 100):
            got = ops.attention(q, k, v, pos, window, 11 ** -0.5, softcap)
            want = ref.attention(q, k, v, pos, window, 11 ** -0.5, softcap)
            assert_close(got, want, _attn_mag(v), what=f"segments H={heads}/{kv_heads} W={window}")
    # a query right at a document start sees only itself
    out = ops.attention(q, k, v, pos, 100, 1.0)
    assert_close(out[0, 3], np.repeat(v[0, 3], heads // kv_heads, axis=0), _attn_mag(v),
                 what="document start")


def _run_chunked(q, k, v, pos, window, scale, softcap, slots, schedule):
    """Runs the sequences chunk by chunk through a ring cache of `slots`; returns the outputs
    per chunk as (t0, t1, out) and checks the ring contents after every chunk."""
    batch, t_len, kv_heads, hd = k.shape
    k_cache = np.zeros((batch, slots, kv_heads, hd), np.float32)
    v_cache = np.zeros((batch, slots, kv_heads, hd), np.float32)
    results, t0, i = [], 0, 0
    while t0 < t_len:
        c = min(schedule[i % len(schedule)], t_len - t0)
        i += 1
        t1 = t0 + c
        count = np.full(batch, t0, np.int64)
        out = ops.attention(q[:, t0:t1], k[:, t0:t1], v[:, t0:t1], pos[:, t0:t1], window,
                            scale, softcap, k_cache, v_cache, count)
        results.append((t0, t1, out))
        for p in range(max(0, t1 - slots), t1):  # key p lives in slot p % S
            np.testing.assert_array_equal(k_cache[:, p % slots], k[:, p])
            np.testing.assert_array_equal(v_cache[:, p % slots], v[:, p])
        t0 = t1
    return results


@pytest.mark.parametrize("window_kind", ["window_eq_slots", "window_lt_slots"])
def test_attention_ring_cache_chunked_equals_prefill(isa, window_kind):
    """The ring-buffer wrap-around check: a sequence of 3*S+2 tokens processed in chunks of
    many sizes gives, chunk by chunk, the no-cache prefill of the whole sequence."""
    rng = np.random.default_rng(22)
    slots = 6
    window = slots if window_kind == "window_eq_slots" else 4
    t_len = 3 * slots + 2
    heads, kv_heads, hd, batch = 4, 2, 9, 2
    q, k, v = _attn_inputs(rng, batch, t_len, heads, kv_heads, hd)
    pos = np.tile(np.arange(t_len, dtype=np.int32), (batch, 1))
    scale, softcap = hd ** -0.5, 0.0
    whole = ops.attention(q, k, v, pos, window, scale, softcap)
    assert_close(whole, ref.attention(q, k, v, pos, window, scale, softcap), _attn_mag(v),
                 what="whole prefill vs twin")
    schedules = {
        "token_by_token": [1],
        "twos": [2],
        "S-1": [slots - 1],
        "S": [slots],
        "S+1": [slots + 1],
        "mixed": [1, 2, slots - 1, slots, slots + 1],
        "mixed_rev": [slots + 1, slots, slots - 1, 2, 1],
        "big_first": [2 * slots + 1, 1, 3],
    }
    for name, schedule in schedules.items():
        for t0, t1, out in _run_chunked(q, k, v, pos, window, scale, softcap, slots, schedule):
            assert_close(out, whole[:, t0:t1], _attn_mag(v),
                         what=f"{name}: chunk [{t0}, {t1}) W={window} S={slots}")


def test_attention_ring_cache_softcap_and_mqa(isa):
    rng = np.random.default_rng(23)
    slots = window = 5
    t_len = 3 * slots + 2
    q, k, v = _attn_inputs(rng, 1, t_len, 4, 1, 16)
    pos = np.arange(t_len, dtype=np.int32)[None]
    whole = ops.attention(q, k, v, pos, window, 1.0, 4.0)
    assert_close(whole, ref.attention(q, k, v, pos, window, 1.0, 4.0), _attn_mag(v),
                 what="twin")
    for schedule in ([1], [3, 1, 4]):
        for t0, t1, out in _run_chunked(q, k, v, pos, window, 1.0, 4.0, slots, schedule):
            assert_close(out, whole[:, t0:t1], _attn_mag(v), what=f"{schedule} [{t0}, {t1})")


def test_attention_cache_matches_reference_per_row_counts(isa):
    """Different counts per sequence, a prefilled (random) ring, document starts in the chunk."""
    rng = np.random.default_rng(24)
    batch, t_len, heads, kv_heads, hd, slots = 2, 7, 4, 2, 13, 8
    for window in (3, 8):
        q, k, v = _attn_inputs(rng, batch, t_len, heads, kv_heads, hd)
        k_cache = rnd(rng, batch, slots, kv_heads, hd)
        v_cache = rnd(rng, batch, slots, kv_heads, hd)
        count = np.array([3, 11], np.int64)
        pos = np.array([[3, 4, 5, 6, 0, 1, 2], [11, 12, 0, 1, 2, 3, 4]], np.int32)
        kc_n, vc_n, kc_r, vc_r = k_cache.copy(), v_cache.copy(), k_cache.copy(), v_cache.copy()
        got = ops.attention(q, k, v, pos, window, 0.4, 0.0, kc_n, vc_n, count)
        want = ref.attention(q, k, v, pos, window, 0.4, 0.0, kc_r, vc_r, count)
        assert_close(got, want, _attn_mag(v, v_cache), what=f"per-row counts W={window}")
        np.testing.assert_array_equal(kc_n, kc_r)
        np.testing.assert_array_equal(vc_n, vc_r)


def test_attention_cache_too_small(isa):
    rng = np.random.default_rng(25)
    q, k, v = _attn_inputs(rng, 1, 1, 2, 1, 8)
    pos = np.array([[9]], np.int32)
    slots, window = 4, 6
    kc = rnd(rng, 1, slots, 1, 8)
    vc = rnd(rng, 1, slots, 1, 8)
    # enough history that more than `slots` cached keys would be visible -> error
    for count in (5, 6, 50):
        with pytest.raises(InvalidArgumentError):
            ops.attention(q, k, v, pos, window, 1.0, 0.0, kc.copy(), vc.copy(),
                          np.array([count], np.int64))
    # with no more history than slots the small cache is still exact
    for count in (0, 3, 4):
        a_k, a_v, b_k, b_v = kc.copy(), vc.copy(), kc.copy(), vc.copy()
        c = np.array([count], np.int64)
        got = ops.attention(q, k, v, pos, window, 1.0, 0.0, a_k, a_v, c)
        want = ref.attention(q, k, v, pos, window, 1.0, 0.0, b_k, b_v, c)
        assert_close(got, want, _attn_mag(v, vc), what=f"small cache count={count}")
        np.testing.assert_array_equal(a_k, b_k)


# ---------------------------------------------------------------------------------------------
# geglu, softcap
# ---------------------------------------------------------------------------------------------


def test_geglu_matches_reference(isa):
    rng = np.random.default_rng(26)
    for shape in [(1,), (7,), (33,), (100,), (3, 37), (2, 5, 17), (4099,)]:
        gate = rnd(rng, *shape, scale=3.0)
        up = rnd(rng, *shape, scale=2.0)
        got = ops.geglu(gate, up)
        want = ref.geglu(gate, up)
        assert got.dtype == np.float32 and got.shape == gate.shape
        # |gelu(g)| <= |g|; 1 + tanh(...) cancels in fp32 for negative g (abs error ~eps*|g|)
        mag = np.abs(want) + 0.1 * (np.abs(gate) + 1.0) * np.abs(up)
        assert_close(got, want, mag, what=f"geglu {shape}")


def test_softcap_matches_reference(isa):
    rng = np.random.default_rng(27)
    for shape in [(1,), (7,), (33,), (3, 100), (8193,)]:
        for cap in (0.5, 5.0, 30.0):
            x = rnd(rng, *shape, scale=40.0)
            x_before = x.copy()
            got = ops.softcap(x, cap)
            want = ref.softcap(x, cap)
            np.testing.assert_array_equal(x, x_before)
            assert got.shape == x.shape and np.all(np.abs(got) <= cap)
            assert_close(got, want, np.abs(want), what=f"softcap {shape} cap={cap}")


# ---------------------------------------------------------------------------------------------
# sample, sample_uniform
# ---------------------------------------------------------------------------------------------


def _sample_both(logits, temperature, top_k, top_p, seeds, counters):
    b = logits.shape[0]
    col = lambda v, dt: np.broadcast_to(np.asarray(v, dt), (b,)).copy()  # noqa: E731
    t, k, p = col(temperature, np.float32), col(top_k, np.int32), col(top_p, np.float32)
    s, c = col(seeds, np.uint64), col(counters, np.uint64)
    got = ops.sample(logits, t, k, p, s, c)
    want = ref.sample(logits, t, k, p, s, c)
    assert got.dtype == np.int32 and got.shape == (b,)
    return got, want


def test_sample_greedy_is_argmax(isa):
    rng = np.random.default_rng(28)
    for vocab in (1, 7, 33, 1000):
        logits = rnd(rng, 16, vocab, scale=3.0)
        got, want = _sample_both(logits, 0.0, 0, 1.0, 1, 2)
        np.testing.assert_array_equal(got, np.argmax(logits, axis=1))
        np.testing.assert_array_equal(got, want)
    # ties -> lowest index; NaN never chosen; -inf rows fall back to index 0
    logits = np.array([
        [1.0, 3.0, 2.0, 3.0, 3.0],
        [np.nan, 1.0, np.nan, 1.0, 0.0],
        [np.nan, -1.0, np.inf, np.nan, np.inf],
        [-np.inf, -np.inf, -np.inf, -np.inf, -np.inf],
        [-5.0, np.nan, -5.0, -7.0, np.nan],
    ], np.float32)
    got, want = _sample_both(logits, [0.0, 0.0, -0.0, 0.0, 0.0], [0, 5, 0, 2, 1],
                             [1.0, 0.5, 1.0, 0.9, 1.0], 7, 3)
    np.testing.assert_array_equal(got, [1, 1, 2, 0, 0])
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.5])
def test_sample_matches_reference_draw_for_draw(isa, temperature):
    rng = np.random.default_rng(29)
    vocab, draws = 37, 60
    base = rnd(rng, vocab, scale=2.0)
    base[5] = base[11] = base.max() + 0.5  # a tie at the top
    base[20] = np.nan
    base[21] = -np.inf
    logits = np.tile(base, (draws, 1))
    logits[::7] = rnd(rng, len(logits[::7]), vocab, scale=2.0)  # some other rows
    logits[:, 20] = np.nan
    logits[:, 21] = -np.inf
    seeds = rng.integers(0, 2**63, size=draws, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    counters = rng.integers(0, 2**40, size=draws, dtype=np.uint64)
    counters[:3] = [0, 1, 2**64 - 1]
    for top_k in (0, 1, 2, 5, vocab, vocab + 3):
        for top_p in (1.0, 0.9, 0.5, 1e-3):
            got, want = _sample_both(logits, temperature, top_k, top_p, seeds, counters)
            np.testing.assert_array_equal(got, want, err_msg=f"top_k={top_k} top_p={top_p}")
            assert np.all((got >= 0) & (got < vocab)) and not np.any(got == 20)


def test_sample_top_k_1_is_greedy(isa):
    rng = np.random.default_rng(30)
    logits = rnd(rng, 200, 33, scale=2.0)
    seeds = np.arange(200, dtype=np.uint64) * np.uint64(977)
    counters = np.arange(200, dtype=np.uint64)
    for temperature in (0.5, 1.0, 10.0):
        for top_p in (1.0, 0.3):
            got, _ = _sample_both(logits, temperature, 1, top_p, seeds, counters)
            np.testing.assert_array_equal(got, np.argmax(logits, axis=1))


def test_sample_uniform_matches_reference():
    rng = np.random.default_rng(31)
    pairs = [(0, 0), (0, 1), (1, 0), (2**64 - 1, 2**64 - 1), (2**64 - 1, 0), (0, 2**64 - 1),
             (12345, 2**63)]
    pairs += [(int(s), int(c)) for s, c in rng.integers(0, 2**64, size=(300, 2), dtype=np.uint64)]
    pairs += [(7, c) for c in range(100)]
    for seed, counter in pairs:
        u = gn.ops.sample_uniform(seed, counter)
        assert u == ref.sample_uniform(seed, counter), (seed, counter)
        assert 0.0 <= u < 1.0
    values = np.array([gn.ops.sample_uniform(42, c) for c in range(2000)])
    assert abs(values.mean() - 0.5) < 0.03 and len(np.unique(values)) > 1990


def _chi_square(ids, probs):
    n = len(ids)
    observed = np.bincount(ids, minlength=len(probs)).astype(np.float64)
    assert np.all(observed[probs == 0] == 0), "a token outside the kept set was drawn"
    keep = probs > 0
    expected = probs[keep] * n
    return float(np.sum((observed[keep] - expected) ** 2 / expected)), int(keep.sum()) - 1


@pytest.mark.parametrize("top_k,top_p", [(0, 1.0), (3, 1.0), (0, 0.8), (4, 0.7)])
def test_sample_empirical_distribution(top_k, top_p):
    logits = np.array([2.0, 1.5, 0.3, -0.4, 1.0, -1.0], np.float32)
    temperature, n = 0.7, 20000
    z = logits.astype(np.float64) / temperature
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    order = np.argsort(-probs, kind="stable")
    keep = np.ones_like(probs, bool)
    if top_k:
        keep[:] = False
        keep[order[:top_k]] = True
    if top_p < 1.0:
        p_sorted = np.where(keep[order], probs[order], 0.0)
        p_sorted /= p_sorted.sum()
        cut = int(np.searchsorted(np.cumsum(p_sorted), top_p)) + 1
        kept = np.zeros_like(keep)
        kept[order[:cut]] = True
        keep &= kept
    probs = np.where(keep, probs, 0.0)
    probs /= probs.sum()
    ids = ops.sample(np.tile(logits, (n, 1)), np.full(n, temperature, np.float32),
                     np.full(n, top_k, np.int32), np.full(n, top_p, np.float32),
                     np.full(n, 1234, np.uint64), np.arange(n, dtype=np.uint64))
    chi2, dof = _chi_square(ids, probs)
    # dof <= 5: chi2 > 40 has probability < 1e-6 under the right distribution
    assert chi2 < 40.0, f"chi2 {chi2:.1f} with {dof} dof; counts {np.bincount(ids, minlength=6)}"


def test_sample_tiny_temperature_is_near_greedy():
    """A tiny (finite, > 0) temperature is a valid argument and must act like greedy: dividing
    by it overflows the scaled logits to +inf, which must not turn into NaN probabilities that
    make the sampler return the last candidate."""
    logits = np.array([[1.0, 5.0, 2.0, 3.0]], np.float32)
    for temperature in (1e-6, 1e-30, 1e-38, 1e-45):
        for top_k, top_p in ((0, 1.0), (2, 1.0), (0, 0.9)):
            got = ops.sample(logits, temperature, top_k, top_p, 1, 2)
            assert int(got[0]) == 1, (temperature, top_k, top_p, int(got[0]))


def test_sample_scalar_parameters_broadcast_over_rows():
    """ops.sample documents per-row parameters but also accepts scalars (its `col` helper
    broadcasts 0-d values to the batch)."""
    rng = np.random.default_rng(33)
    logits = rnd(rng, 3, 11)
    got = ops.sample(logits, 0.0, 0, 1.0, 0, 0)
    np.testing.assert_array_equal(got, np.argmax(logits, axis=1))
    got = ops.sample(logits, 1.0, 1, 0.5, 9, 4)  # top_k = 1: greedy again
    np.testing.assert_array_equal(got, np.argmax(logits, axis=1))


def test_sample_bad_values_raise():
    logits = np.zeros((2, 5), np.float32)
    good = dict(temperature=[1.0, 1.0], top_k=[0, 0], top_p=[1.0, 1.0], seed=[0, 0],
                counter=[0, 0])
    ops.sample(logits, **good)  # sanity
    bad_cases = [
        ("temperature", -0.5), ("temperature", np.nan), ("temperature", np.inf),
        ("temperature", -np.inf), ("top_p", 0.0), ("top_p", 1.5), ("top_p", -0.2),
        ("top_p", np.nan), ("top_k", -1),
    ]
    for name, value in bad_cases:
        kwargs = {k: list(v) for k, v in good.items()}
        kwargs[name][1] = value  # the bad row is not the first one
        with pytest.raises(InvalidArgumentError):
            ops.sample(logits, **kwargs)


# ---------------------------------------------------------------------------------------------
# bad inputs: each raises the matching GemmaNativeError subclass, never crashes
# ---------------------------------------------------------------------------------------------

_F = np.float32
_x23 = lambda: np.ones((2, 3), _F)  # noqa: E731
_w43 = lambda: np.ones((4, 3), _F)  # noqa: E731
_cx = lambda: np.ones((2, 5, 3), _F)  # noqa: E731
_cpos = lambda: np.tile(np.arange(5, dtype=np.int32), (2, 1))  # noqa: E731
_cw = lambda: np.ones((4, 3), _F)  # noqa: E731
_q = lambda: np.ones((1, 3, 4, 8), _F)  # noqa: E731
_kv = lambda: np.ones((1, 3, 2, 8), _F)  # noqa: E731
_apos = lambda: np.arange(3, dtype=np.int32)[None]  # noqa: E731


def _readonly(a):
    a.setflags(write=False)
    return a


def _noncontig_state():
    return np.zeros((2, 3, 3), _F).transpose(0, 2, 1)  # shape ok (2, 3, 3), F-ordered


def _rglru(x_shape=(2, 5, 3), gx=None, a_len=3, pos=None, h=None):
    x = np.ones(x_shape, _F)
    return lambda: ops.rglru_scan(x, np.ones(gx or x_shape, _F), np.ones(x_shape, _F),
                                  np.zeros(a_len, _F),
                                  _cpos() if pos is None else pos,
                                  np.zeros((2, 3), _F) if h is None else h)


def _attn(q=None, k=None, v=None, pos=None, window=4, kc=None, vc=None, count=None,
          with_cache=False):
    def call():
        kk = _kv() if k is None else k
        if with_cache:
            kcc = np.zeros((1, 4, 2, 8), _F) if kc is None else kc
            vcc = np.zeros((1, 4, 2, 8), _F) if vc is None else vc
            cnt = np.array([2], np.int64) if count is None else count
        else:
            kcc, vcc, cnt = kc, vc, count
        return ops.attention(_q() if q is None else q, kk, kk.copy() if v is None else v,
                             _apos() if pos is None else pos, window, 1.0, 0.0, kcc, vcc, cnt)
    return call


BAD_INPUTS = {
    # embedding
    "emb table 1-D": (lambda: ops.embedding(np.ones(4, _F), np.array([0])), ShapeError),
    "emb ids 2-D": (lambda: ops.embedding(_w43(), np.zeros((1, 2), np.int32)), ShapeError),
    "emb id negative": (lambda: ops.embedding(_w43(), np.array([0, -1])), InvalidArgumentError),
    "emb id == V": (lambda: ops.embedding(_w43(), np.array([4])), InvalidArgumentError),
    "emb id way out": (lambda: ops.embedding(_w43(), np.array([2**31 - 1])),
                       InvalidArgumentError),
    "emb id beyond int32": (lambda: ops.embedding(_w43(), np.array([2**32 + 1], np.int64)),
                            InvalidArgumentError),
    "emb int table": (lambda: ops.embedding(np.ones((4, 3), np.int32), np.array([0])),
                      DTypeError),
    "emb float64 table": (lambda: ops.embedding(np.ones((4, 3)), np.array([0])), DTypeError),
    "emb float64 as bf16": (lambda: ops.embedding((np.ones((4, 3)), "bfloat16"), np.array([0])),
                            DTypeError),
    "emb float32 as bf16": (lambda: ops.embedding((_w43(), "bfloat16"), np.array([0])),
                            DTypeError),
    "emb uint16 as f32": (lambda: ops.embedding((np.ones((4, 3), np.uint16), "float32"),
                                                np.array([0])), DTypeError),
    "emb bare uint16": (lambda: ops.embedding(np.ones((4, 3), np.uint16), np.array([0])),
                        DTypeError),
    "emb unknown dtype": (lambda: ops.embedding((np.ones((4, 3), np.uint16), "int8"),
                                                np.array([0])), DTypeError),
    # rmsnorm
    "rms w length": (lambda: ops.rmsnorm(_x23(), np.ones(4, _F)), ShapeError),
    "rms w 2-D": (lambda: ops.rmsnorm(_x23(), np.ones((1, 3), _F)), ShapeError),
    "rms width 0": (lambda: ops.rmsnorm(np.ones((2, 0), _F), np.ones(0, _F)), ShapeError),
    # linear
    "lin K mismatch": (lambda: ops.linear(np.ones((2, 4), _F), _w43()), ShapeError),
    "lin bias length": (lambda: ops.linear(_x23(), _w43(), np.ones(3, _F)), ShapeError),
    "lin bias 2-D": (lambda: ops.linear(_x23(), _w43(), np.ones((1, 4), _F)), ShapeError),
    "lin x 3-D": (lambda: ops.linear(np.ones((1, 2, 3), _F), _w43()), ShapeError),
    "lin x 1-D": (lambda: ops.linear(np.ones(3, _F), _w43()), ShapeError),
    "lin w 1-D": (lambda: ops.linear(_x23(), np.ones(3, _F)), ShapeError),
    "lin w 3-D": (lambda: ops.linear(_x23(), np.ones((1, 4, 3), _F)), ShapeError),
    "lin int weights": (lambda: ops.linear(_x23(), np.ones((4, 3), np.int64)), DTypeError),
    "lin float64 weights": (lambda: ops.linear(_x23(), np.ones((4, 3))), DTypeError),
    "lin float64 as bf16": (lambda: ops.linear(_x23(), (np.ones((4, 3)), "bfloat16")),
                            DTypeError),
    "lin uint16 as f32": (lambda: ops.linear(_x23(), (np.ones((4, 3), np.uint16), "float32")),
                          DTypeError),
    "lin f32 as f16": (lambda: ops.linear(_x23(), (_w43(), "float16")), DTypeError),
    "lin bad tuple": (lambda: ops.linear(_x23(), (_w43(), "float32", 1)), DTypeError),
    # block_diag_linear
    "bdl w not square": (lambda: ops.block_diag_linear(np.ones((2, 6), _F),
                                                       np.ones((2, 3, 4), _F)), ShapeError),
    "bdl x width": (lambda: ops.block_diag_linear(np.ones((2, 5), _F), np.ones((2, 3, 3), _F)),
                    ShapeError),
    "bdl b shape": (lambda: ops.block_diag_linear(np.ones((2, 6), _F), np.ones((2, 3, 3), _F),
                                                  np.ones(6, _F)), ShapeError),
    "bdl b wrong blocks": (lambda: ops.block_diag_linear(np.ones((2, 6), _F),
                                                         np.ones((2, 3, 3), _F),
                                                         np.ones((3, 3), _F)), ShapeError),
    "bdl w 2-D": (lambda: ops.block_diag_linear(np.ones((2, 3), _F), np.ones((3, 3), _F)),
                  ShapeError),
    "bdl zero blocks": (lambda: ops.block_diag_linear(np.ones((2, 0), _F),
                                                      np.ones((0, 3, 3), _F)), ShapeError),
    "bdl int weights": (lambda: ops.block_diag_linear(np.ones((2, 6), _F),
                                                      np.ones((2, 3, 3), np.int16)), DTypeError),
    # conv1d
    "conv x 2-D": (lambda: ops.conv1d(np.ones((5, 3), _F), _cpos(), _cw()), ShapeError),
    "conv w 1-D": (lambda: ops.conv1d(_cx(), _cpos(), np.ones(3, _F)), ShapeError),
    "conv w channels": (lambda: ops.conv1d(_cx(), _cpos(), np.ones((4, 2), _F)), ShapeError),
    "conv w no taps": (lambda: ops.conv1d(_cx(), _cpos(), np.ones((0, 3), _F)), ShapeError),
    "conv pos shape": (lambda: ops.conv1d(_cx(), np.zeros((2, 4), np.int32), _cw()), ShapeError),
    "conv pos 1-D": (lambda: ops.conv1d(_cx(), np.arange(5), _cw()), ShapeError),
    "conv bias length": (lambda: ops.conv1d(_cx(), _cpos(), _cw(), np.ones(4, _F)), ShapeError),
    "conv state taps": (lambda: ops.conv1d(_cx(), _cpos(), _cw(), None,
                                           np.zeros((2, 4, 3), _F)), ShapeError),
    "conv state batch": (lambda: ops.conv1d(_cx(), _cpos(), _cw(), None,
                                            np.zeros((1, 3, 3), _F)), ShapeError),
    "conv state channels": (lambda: ops.conv1d(_cx(), _cpos(), _cw(), None,
                                               np.zeros((2, 3, 4), _F)), ShapeError),
    "conv state 2-D": (lambda: ops.conv1d(_cx(), _cpos(), _cw(), None, np.zeros((2, 9), _F)),
                       ShapeError),
    "conv state float64": (lambda: ops.conv1d(_cx(), _cpos(), _cw(), None,
                                              np.zeros((2, 3, 3))), DTypeError),
    "conv state float16": (lambda: ops.conv1d(_cx(), _cpos(), _cw(), None,
                                              np.zeros((2, 3, 3), np.float16)), DTypeError),
    "conv state non-contiguous": (lambda: ops.conv1d(_cx(), _cpos(), _cw(), None,
                                                     _noncontig_state()), ShapeError),
    "conv state read-only": (lambda: ops.conv1d(_cx(), _cpos(), _cw(), None,
                                                _readonly(np.zeros((2, 3, 3), _F))),
                             InvalidArgumentError),
    # rglru_scan
    "lru x 2-D": (_rglru(x_shape=(5, 3), gx=(5, 3), pos=_cpos()), ShapeError),
    "lru gate shape": (_rglru(gx=(2, 5, 4)), ShapeError),
    "lru a_param length": (_rglru(a_len=4), ShapeError),
    "lru pos shape": (_rglru(pos=np.zeros((2, 4), np.int32)), ShapeError),
    "lru h shape": (_rglru(h=np.zeros((2, 4), _F)), ShapeError),
    "lru h 3-D": (_rglru(h=np.zeros((2, 1, 3), _F)), ShapeError),
    "lru h float64": (_rglru(h=np.zeros((2, 3))), DTypeError),
    "lru h non-contiguous": (_rglru(h=np.zeros((3, 2), _F).T), ShapeError),
    "lru h strided": (_rglru(h=np.zeros((2, 6), _F)[:, ::2]), ShapeError),
    "lru h read-only": (_rglru(h=_readonly(np.zeros((2, 3), _F))), InvalidArgumentError),
    # rope
    "rope x 2-D": (lambda: ops.rope(np.ones((2, 8), _F), np.arange(2), 8), ShapeError),
    "rope pos length": (lambda: ops.rope(np.ones((2, 1, 8), _F), np.arange(3), 8), ShapeError),
    "rope pos 2-D": (lambda: ops.rope(np.ones((2, 1, 8), _F), np.zeros((2, 1)), 8), ShapeError),
    "rope odd rot_dims": (lambda: ops.rope(np.ones((2, 1, 8), _F), np.arange(2), 3), ShapeError),
    "rope rot_dims > hd": (lambda: ops.rope(np.ones((2, 1, 8), _F), np.arange(2), 10),
                           ShapeError),
    "rope negative rot_dims": (lambda: ops.rope(np.ones((2, 1, 8), _F), np.arange(2), -2),
                               ShapeError),
    "rope base 0": (lambda: ops.rope(np.ones((2, 1, 8), _F), np.arange(2), 8, 0.0),
                    InvalidArgumentError),
    "rope base negative": (lambda: ops.rope(np.ones((2, 1, 8), _F), np.arange(2), 8, -1.0),
                           InvalidArgumentError),
    "rope base NaN": (lambda: ops.rope(np.ones((2, 1, 8), _F), np.arange(2), 8, np.nan),
                      InvalidArgumentError),
    # attention
    "attn k/v mismatch": (_attn(v=np.ones((1, 3, 1, 8), _F)), ShapeError),
    "attn k/v head_dim": (_attn(v=np.ones((1, 3, 2, 7), _F)), ShapeError),
    "attn q/k head_dim": (_attn(k=np.ones((1, 3, 2, 9), _F)), ShapeError),
    "attn q/k time": (_attn(k=np.ones((1, 2, 2, 8), _F)), ShapeError),
    "attn q/k batch": (_attn(k=np.ones((2, 3, 2, 8), _F)), ShapeError),
    "attn heads % kv_heads": (_attn(k=np.ones((1, 3, 3, 8), _F)), ShapeError),
    "attn zero kv_heads": (_attn(k=np.ones((1, 3, 0, 8), _F)), ShapeError),
    "attn q 3-D": (_attn(q=np.ones((3, 4, 8), _F)), ShapeError),
    "attn pos shape": (_attn(pos=np.arange(4, dtype=np.int32)[None]), ShapeError),
    "attn negative window": (_attn(window=-1), InvalidArgumentError),
    "attn cache without count": (_attn(kc=np.zeros((1, 4, 2, 8), _F),
                                       vc=np.zeros((1, 4, 2, 8), _F)), InvalidArgumentError),
    "attn count without cache": (_attn(count=np.array([0])), InvalidArgumentError),
    "attn k_cache only": (_attn(kc=np.zeros((1, 4, 2, 8), _F), count=np.array([0])),
                          InvalidArgumentError),
    "attn cache kv_heads": (_attn(with_cache=True, kc=np.zeros((1, 4, 1, 8), _F),
                                  vc=np.zeros((1, 4, 1, 8), _F)), ShapeError),
    "attn cache head_dim": (_attn(with_cache=True, kc=np.zeros((1, 4, 2, 7), _F),
                                  vc=np.zeros((1, 4, 2, 7), _F)), ShapeError),
    "attn cache batch": (_attn(with_cache=True, kc=np.zeros((2, 4, 2, 8), _F),
                               vc=np.zeros((2, 4, 2, 8), _F)), ShapeError),
    "attn k/v cache mismatch": (_attn(with_cache=True, vc=np.zeros((1, 5, 2, 8), _F)),
                                ShapeError),
    "attn cache 3-D": (_attn(with_cache=True, kc=np.zeros((1, 4, 16), _F),
                             vc=np.zeros((1, 4, 16), _F)), ShapeError),
    "attn cache float64": (_attn(with_cache=True, kc=np.zeros((1, 4, 2, 8)),
                                 vc=np.zeros((1, 4, 2, 8))), DTypeError),
    "attn cache non-contiguous": (_attn(with_cache=True,
                                        kc=np.zeros((1, 2, 4, 8), _F).transpose(0, 2, 1, 3)),
                                  ShapeError),
    "attn cache read-only": (_attn(with_cache=True, vc=_readonly(np.zeros((1, 4, 2, 8), _F))),
                             InvalidArgumentError),
    "attn zero slots": (_attn(with_cache=True, kc=np.zeros((1, 0, 2, 8), _F),
                              vc=np.zeros((1, 0, 2, 8), _F), count=np.array([0])),
                        InvalidArgumentError),
    "attn count length": (_attn(with_cache=True, count=np.array([0, 0])), ShapeError),
    "attn count 2-D": (_attn(with_cache=True, count=np.array([[0]])), ShapeError),
    "attn negative count": (_attn(with_cache=True, count=np.array([-1])), InvalidArgumentError),
    "attn cache too small": (_attn(with_cache=True, window=6, count=np.array([5])),
                             InvalidArgumentError),
    # geglu / softcap
    "geglu shapes": (lambda: ops.geglu(np.ones(4, _F), np.ones(5, _F)), ShapeError),
    "geglu shapes 2-D": (lambda: ops.geglu(np.ones((2, 3), _F), np.ones((3, 2), _F)),
                         ShapeError),
    "softcap zero": (lambda: ops.softcap(np.ones(4, _F), 0.0), InvalidArgumentError),
    "softcap negative": (lambda: ops.softcap(np.ones(4, _F), -1.0), InvalidArgumentError),
    "softcap NaN": (lambda: ops.softcap(np.ones(4, _F), np.nan), InvalidArgumentError),
    # sample
    "sample logits 1-D": (lambda: ops.sample(np.ones(5, _F), 1.0, 0, 1.0, 0, 0), ShapeError),
    "sample logits 3-D": (lambda: ops.sample(np.ones((1, 1, 5), _F), 1.0, 0, 1.0, 0, 0),
                          ShapeError),
    "sample empty vocab": (lambda: ops.sample(np.ones((2, 0), _F), [1.0, 1.0], [0, 0],
                                              [1.0, 1.0], [0, 0], [0, 0]), ShapeError),
    "sample param length": (lambda: ops.sample(np.ones((2, 5), _F), [1.0, 1.0, 1.0], [0, 0],
                                               [1.0, 1.0], [0, 0], [0, 0]), ShapeError),
    "sample param 2-D": (lambda: ops.sample(np.ones((2, 5), _F), [1.0, 1.0], np.zeros((2, 1)),
                                            [1.0, 1.0], [0, 0], [0, 0]), ShapeError),
    "sample temperature < 0": (lambda: ops.sample(np.ones((1, 5), _F), -1.0, 0, 1.0, 0, 0),
                               InvalidArgumentError),
    "sample temperature NaN": (lambda: ops.sample(np.ones((1, 5), _F), np.nan, 0, 1.0, 0, 0),
                               InvalidArgumentError),
    "sample top_p 0": (lambda: ops.sample(np.ones((1, 5), _F), 1.0, 0, 0.0, 0, 0),
                       InvalidArgumentError),
    "sample top_p > 1": (lambda: ops.sample(np.ones((1, 5), _F), 1.0, 0, 1.01, 0, 0),
                         InvalidArgumentError),
    "sample top_k < 0": (lambda: ops.sample(np.ones((1, 5), _F), 1.0, -3, 1.0, 0, 0),
                         InvalidArgumentError),
    "sample greedy top_k < 0": (lambda: ops.sample(np.ones((1, 5), _F), 0.0, -1, 1.0, 0, 0),
                                InvalidArgumentError),
    # kernel sets
    "isa unknown": (lambda: gn.set_cpu_isa("sse9"), DeviceError),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_inputs_raise(isa, case):
    fn, expected = BAD_INPUTS[case]
    with pytest.raises(GemmaNativeError) as info:
        fn()
    assert isinstance(info.value, expected), (
        f"{case}: raised {type(info.value).__name__} ({info.value}), "
        f"expected {expected.__name__}")


def test_unavailable_isa_raises_device_error():
    missing = [name for name in ALL_ISAS if name not in AVAILABLE_ISAS]
    if not missing:
        pytest.skip("every compiled CPU kernel set runs on this CPU")
    for name in missing:
        with pytest.raises(DeviceError):
            gn.set_cpu_isa(name)
    assert gn.backend_info()["cpu_isa"] in AVAILABLE_ISAS
