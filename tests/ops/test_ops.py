"""Every native op (gemma_native.ops) against its numpy twin (gemma_native.reference), on every
CPU kernel set this machine can run: embedding, rmsnorm, linear, block_diag_linear, conv1d,
rglru_scan, geglu, softcap.  rope and attention are in test_ops_attention.py, sampling in
test_ops_sample.py, the argument checks of the bindings in test_ops_bad_input.py.

Conventions (shared by those files):
* ``isa`` (tests/ops/conftest.py) parametrizes over scalar / avx2 / avx512 and skips the ones
  this CPU lacks; the active kernel set is restored to 'auto' after every test.  Its value
  ``cuda-emu`` runs the op's CUDA kernel on the SIMT emulator instead (ops.use_device), and
  ``cuda`` (marked gpu; skipped without a GPU) on a real GPU: the same shapes and the same
  tolerances as the CPU kernels.  Tests of an op without a CUDA kernel skip there (the op is the
  test name's prefix, test_<op>_...).
* Tolerances are relative to a magnitude bound of each output (the same op run on absolute
  values), so they stay meaningful for outputs near zero: fp32 math is held to ~1e-5 of that
  bound, while the twins compute in float64 where it matters (tests/helpers/opcheck.py).
* Shapes are small and deliberately not multiples of the vector widths (8 / 16 lanes) so that
  every vector body and every scalar tail runs.
"""

from __future__ import annotations

import numpy as np
import pytest

from gemma_native import ops
from gemma_native import reference as ref

from tests.helpers.arrays import rnd
from tests.helpers.opcheck import assert_close, make_weight

WEIGHT_DTYPES = ["float32", "float16", "bfloat16"]

# Sizes that exercise vector bodies and tails (lane counts are 1, 8 and 16).
KS = [1, 7, 16, 33, 100]
NS = [1, 3, 4, 5, 37]


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
# geglu, softcap, add
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


def test_add_matches_reference(isa):
    rng = np.random.default_rng(28)
    for shape in [(1,), (7,), (33,), (3, 100), (40000,)]:  # 40000: several threads / blocks
        x, y = rnd(rng, *shape, scale=5.0), rnd(rng, *shape, scale=5.0)
        x_before = x.copy()
        got = ops.add(x, y)
        np.testing.assert_array_equal(x, x_before)  # the binding returns a new array
        np.testing.assert_array_equal(got, ref.add(x, y))  # one fp32 rounding: exact
