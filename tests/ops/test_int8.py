"""dtype="int8": weights quantized at load to Q8_0 blocks (GGML's reference quantizer), run with
8-bit activations by default or float32 activations on request (activations="float32")."""

import gemma_native as gn
import numpy as np
import pytest
from gemma_native import _core, ops, reference
from gemma_native._dtypes import to_engine



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
