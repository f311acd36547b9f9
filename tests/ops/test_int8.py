"""dtype="int8": weights quantized at load to Q8_0 blocks (GGML's reference quantizer), run with
8-bit activations by default or float32 activations on request (activations="float32").  With
8-bit activations on the CPU the linear matrices go to Q8_0R16 (16 rows interleaved, whole-block
integer sums), the embedding table (looked up by row, and the tied output layer) included."""

import warnings

import gemma_native as gn
import numpy as np
import pytest
from gemma_native import _core, ops, reference
from gemma_native._dtypes import QUANT_CODES, int8_layout, pack_q8_0r16, to_engine, unpack_q8_0r16

from tests.helpers.q8_exact import q8_0r16_exact



def _cos(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_quantizer_is_ggmls_reference_rule():
    rng = np.random.default_rng(0)
    w = (rng.normal(size=(5, 96)) * rng.uniform(0.01, 3, size=(5, 1))).astype(np.float32)
    w[2, 32:64] = 0.0
    w[3, 3] = 0.5 * w[3, :32].max() / 127 * 254  # lands near a rounding midpoint
    blocks = _core.quantize_q8_0(w)
    assert blocks.shape == (5, 3 * 34) and blocks.dtype == np.uint8
    b = blocks.reshape(5, 3, 34)
    d = np.ascontiguousarray(b[:, :, :2]).view(np.float16)[:, :, 0]
    q = b[:, :, 2:].view(np.int8).astype(np.float32)
    amax = np.abs(w).reshape(5, 3, 32).max(axis=2)
    dd = amax / np.float32(127)
    np.testing.assert_array_equal(d, dd.astype(np.float16))
    with np.errstate(divide="ignore"):
        idd = np.where(dd != 0, np.float32(1) / dd, np.float32(0)).astype(np.float32)
    x = w.reshape(5, 3, 32) * idd[:, :, None]
    want = np.sign(x) * np.floor(np.abs(x) + np.float32(0.5))  # roundf: half away from zero
    np.testing.assert_array_equal(q, want)
    # dequantized, each value is within half a step of the original
    err = np.abs(d[:, :, None].astype(np.float32) * q - w.reshape(5, 3, 32))
    assert np.all(err <= (amax / 127 * 0.5 * 1.01 + 1e-6)[:, :, None] + np.abs(
        d.astype(np.float32) - dd)[:, :, None] * 127)
    with pytest.raises(gn.ShapeError):
        _core.quantize_q8_0(np.ones((2, 40), np.float32))


def test_to_engine_quantizes_only_whole_block_matrices():
    w = np.ones((4, 64), np.float32)
    arr, code = to_engine(w, "float32", "int8")
    assert arr.shape == (4, 68) and code == 3
    odd = np.ones((4, 48), np.float32)
    arr, code = to_engine(odd, "float32", "int8")
    assert arr.dtype == np.float32 and code == 0  # 48 is not a whole number of blocks
    with pytest.raises(gn.DTypeError):
        ops.linear(np.ones((1, 64), np.float32), (arr, "int8"))


@pytest.fixture(scope="module")
def ckpt(tiny_checkpoint):
    return tiny_checkpoint(seed=3, vocab_size=256, width=64, lru_width=64, mlp_expanded_width=128)


def test_int8_model_tracks_the_float_model(ckpt):
    f32 = gn.load(ckpt)
    q8 = gn.load(ckpt, dtype="int8")
    q8f = gn.load(ckpt, dtype="int8", activations="float32")
    assert q8.weight_dtype == "int8"
    assert q8.weights_nbytes < 0.4 * f32.weights_nbytes
    ids = list(np.random.default_rng(1).integers(0, 256, size=40))
    a, b, c = f32.logits(ids), q8.logits(ids), q8f.logits(ids)
    assert _cos(a, b) > 0.999 and _cos(a, c) > 0.999
    assert not np.array_equal(b, c)  # the two activation modes really differ
    # the state path agrees with the one-shot path
    st = q8.new_state()
    q8.forward(ids[:17], st)
    last = q8.forward(ids[17:], st)
    np.testing.assert_allclose(np.asarray(last).reshape(-1, 256)[-1], b[-1], rtol=1e-4, atol=1e-4)
    out = q8.generate(ids[:8], max_tokens=6)
    assert len(out.token_ids) == 6


def test_int8_linear_of_a_loaded_matrix_equals_reference():
    rng = np.random.default_rng(4)
    w = rng.normal(size=(40, 128)).astype(np.float32)
    blocks, _ = to_engine(w, "float32", "int8")
    x = rng.normal(size=(3, 128)).astype(np.float32)
    got = ops.linear(x, (blocks, "Q8_0"))
    np.testing.assert_allclose(got, reference.linear(x, (blocks, "Q8_0")), rtol=1e-5, atol=1e-5)
    assert _cos(got, x @ w.T) > 0.999


def test_bad_activation_mode(ckpt):
    with pytest.raises(gn.InvalidArgumentError):
        gn.load(ckpt, activations="int4")
    with pytest.raises(gn.DTypeError):
        gn.load(ckpt, dtype="int4")


# ---- Q8_0R16: what dtype="int8" turns linear matrices into on the CPU ----------------------------

def _q8_blocks(rows, cols, seed):
    w = np.random.default_rng(seed).normal(size=(rows, cols)).astype(np.float32)
    return _core.quantize_q8_0(w)


def test_q8_0r16_layout():
    """Group g, block b: 16 half scales, then k-step j, row r: values 4j..4j+3 as q + 128."""
    q8 = _q8_blocks(32, 96, 7)
    packed = pack_q8_0r16(q8)
    assert packed.shape == q8.shape and packed.dtype == np.uint8
    nb = 3
    for g, r, b, v in [(0, 0, 0, 0), (0, 15, 2, 31), (1, 3, 1, 17), (1, 9, 0, 4)]:
        row, base = 16 * g + r, (g * nb + b) * 544
        flat = packed.reshape(-1)
        assert flat[base + 2 * r] == q8[row, 34 * b] and flat[base + 2 * r + 1] == q8[row, 34 * b + 1]
        j, i = divmod(v, 4)
        assert flat[base + 32 + 64 * j + 4 * r + i] == (int(q8[row, 34 * b + 2 + v]) + 128) % 256
    np.testing.assert_array_equal(unpack_q8_0r16(packed), q8)
    rewritten = q8.copy()
    at = rewritten.ctypes.data
    assert pack_q8_0r16(rewritten, in_place=True).ctypes.data == at  # group by group, in place
    np.testing.assert_array_equal(rewritten, packed)
    into = np.zeros_like(q8)
    assert pack_q8_0r16(q8, out=into) is into  # into the rows of another array
    np.testing.assert_array_equal(into, packed)
    with pytest.raises(gn.ShapeError):
        pack_q8_0r16(q8, out=np.zeros((16, q8.shape[1]), np.uint8))
    with pytest.raises(gn.InvalidArgumentError):
        pack_q8_0r16(q8.copy(), in_place=True, out=into)
    frozen = q8.copy()
    frozen.flags.writeable = False
    with pytest.raises(gn.InvalidArgumentError):
        pack_q8_0r16(frozen, in_place=True)
    with pytest.raises(gn.DTypeError):
        pack_q8_0r16(q8[:24])  # not whole groups of 16 rows
    with pytest.raises(gn.DTypeError):
        pack_q8_0r16(q8[:, :50])  # not whole blocks


def test_q8_0r16_is_the_whole_block_arithmetic_bit_for_bit():
    """The definition (q8_0r16.cc): per output acc = 0, then per block acc = fma(s_b, dw * dx,
    acc) with s_b the exact int32 sum of the block's 32 products, one rounding per block.  Here
    it is evaluated in exact rational arithmetic and rounded once per step; the kernel set in
    use must give the same bits (test_kernel_sets holds the other sets to this one)."""
    rows, cols, n = 160, 96, 3  # 10 groups: pairs of groups per thread on AVX512-VNNI
    q8 = _q8_blocks(rows, cols, 8)
    x = np.random.default_rng(9).normal(size=(n, cols)).astype(np.float32) * 2
    got = ops.linear(x, (pack_q8_0r16(q8), "Q8_0R16"))
    want = q8_0r16_exact(q8, x)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    # the same values as Q8_0 (llama.cpp's lane arithmetic), summed in another order
    np.testing.assert_allclose(got, ops.linear(x, (q8, "Q8_0")), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got, reference.linear(x, (pack_q8_0r16(q8), "Q8_0R16")),
                               rtol=1e-5, atol=1e-4)


def test_q8_0r16_batch_rows_are_the_rows_alone():
    q8 = pack_q8_0r16(_q8_blocks(48, 256, 10))
    x = np.random.default_rng(11).normal(size=(29, 256)).astype(np.float32)
    bias = np.arange(48, dtype=np.float32)
    batch = ops.linear(x, (q8, "Q8_0R16"), bias)
    for t in (0, 11, 12, 28):
        np.testing.assert_array_equal(batch[t], ops.linear(x[t:t + 1], (q8, "Q8_0R16"), bias)[0])


def test_q8_0r16_bad_input():
    q8 = _q8_blocks(16, 64, 12)
    packed = pack_q8_0r16(q8)
    x = np.ones((2, 64), np.float32)
    with pytest.raises(gn.ShapeError, match="groups of 16 rows"):
        ops.linear(x, (q8[:8], "Q8_0R16"))  # 8 rows: no whole group
    with pytest.raises(gn.InvalidArgumentError, match="8-bit activations"):
        ops.linear(x, (packed, "Q8_0R16"), float_activations=True)
    with pytest.raises(gn.ShapeError):
        ops.linear(np.ones((2, 32), np.float32), (packed, "Q8_0R16"))  # x is 32 wide, W 64
    with pytest.raises(gn.GemmaNativeError):
        ops.linear(x, (packed[:, :60], "Q8_0R16"))  # not whole blocks
    with pytest.raises(gn.ShapeError, match="groups of 16 rows"):
        ops.embedding((q8[:8], "Q8_0R16"), [0, 1])
    with pytest.raises(gn.InvalidArgumentError, match="outside the vocabulary"):
        ops.embedding((packed, "Q8_0R16"), [0, 16])


def test_q8_0r16_rows_look_up_as_their_q8_0_rows():
    """An int8 model's embedding table is Q8_0R16: each looked-up row is picked out of its group
    and must equal the Q8_0 row's values bit for bit (the same d * q products, then the scale)."""
    q8 = _q8_blocks(48, 96, 17)
    q8[5, 2:34] = 0x80  # a block of -128s, the byte the +128 shift wraps
    q8[7, :2] = [0x00, 0x7c]  # d = +inf: inf * q, NaN where q == 0
    ids = np.array([0, 15, 16, 47, 5, 7, 31, 5], np.int32)
    for scale in (1.0, 1.7, -0.25):
        got = ops.embedding((pack_q8_0r16(q8), "Q8_0R16"), ids, scale)
        want = ops.embedding((q8, "Q8_0"), ids, scale)
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
        np.testing.assert_array_equal(got, reference.embedding((q8, "Q8_0"), ids, scale))


def test_int8_layout_converts_whole_groups_of_rows():
    q8, r16 = QUANT_CODES["Q8_0"], QUANT_CODES["Q8_0R16"]
    weights = {"embed": (_q8_blocks(32, 64, 1), q8), "layers.0.w": (_q8_blocks(32, 64, 2), q8),
               "layers.0.odd": (_q8_blocks(24, 64, 3), q8),
               "norm": (np.ones(64, np.float32), 0)}
    for activations, device in (("float32", "cpu"), ("int8", "cuda-emu")):
        assert int8_layout(dict(weights), activations, device) == weights
    before = dict(weights)
    out = int8_layout(weights, "int8", "cpu")
    assert out is weights  # in place: each Q8_0 matrix goes as its packed copy comes
    assert out["layers.0.odd"] is before["layers.0.odd"] and out["norm"] is before["norm"]
    assert out["layers.0.w"][1] == r16 and out["embed"][1] == r16
    np.testing.assert_array_equal(unpack_q8_0r16(out["layers.0.w"][0]), before["layers.0.w"][0])


def test_int8_model_runs_q8_0r16(ckpt):
    q8 = gn.load(ckpt, dtype="int8")
    assert "Q8_0R16" in q8.compute_mode
    assert "Q8_0R16" not in gn.load(ckpt, dtype="int8", activations="float32").compute_mode


def test_ops_quantize_int8():
    w = np.random.default_rng(13).normal(size=(32, 64)).astype(np.float32)
    blocks, name = ops.quantize_int8(w, "Q8_0")
    assert name == "Q8_0"
    np.testing.assert_array_equal(blocks, _core.quantize_q8_0(w))
    packed, name = ops.quantize_int8(w)
    assert name == "Q8_0R16"
    np.testing.assert_array_equal(unpack_q8_0r16(packed), blocks)
    x = np.random.default_rng(14).normal(size=(3, 64)).astype(np.float32)
    assert _cos(ops.linear(x, (packed, name)), x @ w.T) > 0.999
    with pytest.raises(gn.InvalidArgumentError):
        ops.quantize_int8(w, "Q4_0")
    with pytest.raises(gn.DTypeError):
        ops.quantize_int8(w[:24])  # Q8_0R16 needs whole groups of 16 rows


def test_q8_0r16_bits_do_not_depend_on_the_thread_count():
    """Threads take groups of 16 rows, in pairs on AVX512-VNNI where their range allows: how the
    rows are split must not change a bit (1 thread: every group in a pair but an odd last one)."""
    q8 = pack_q8_0r16(_q8_blocks(80, 128, 15))  # 5 groups
    x = np.random.default_rng(16).normal(size=(13, 128)).astype(np.float32)
    before = gn.backend_info()["num_threads"]
    try:
        got = {}
        for threads in (1, 2, 3):
            with warnings.catch_warnings():  # 3 threads may oversubscribe this machine
                warnings.simplefilter("ignore", RuntimeWarning)
                gn.set_num_threads(threads)
            got[threads] = ops.linear(x, (q8, "Q8_0R16"))
    finally:
        gn.set_num_threads(before)
    np.testing.assert_array_equal(got[1].view(np.uint32), got[2].view(np.uint32))
    np.testing.assert_array_equal(got[1].view(np.uint32), got[3].view(np.uint32))
