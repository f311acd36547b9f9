"""gn.random_model presets: configs equal the published shapes (docs/model-math.md, 'Published
shapes'; Gemma 3 1B config.json), weight byte counts equal the parameter counts given there,
every preset generates, seeds are deterministic, bad presets / overrides raise clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import gemma_native as gn
from gemma_native.random_model import PRESETS, preset_config

# (layers, d_model, q heads, kv heads, head_dim, FFN width, vocab, window, layer pattern)
# transcribed from docs/model-math.md, 'Published shapes' (and the Gemma 3 1B config.json:
# 26 layers, 1152, 4/1 heads, 6912, 262144, window 512).
GEMMA_SPEC = {
    "gemma-2b": (18, 2048, 8, 1, 256, 16384, 256000, 0, "global"),
    "gemma-7b": (28, 3072, 16, 16, 256, 24576, 256000, 0, "global"),
    "gemma2-2b": (26, 2304, 8, 4, 256, 9216, 256000, 4096, "alternate"),
    "gemma2-9b": (42, 3584, 16, 8, 256, 14336, 256000, 4096, "alternate"),
    "gemma3-270m": (18, 640, 4, 1, 256, 2048, 262144, 512, "5:1"),
    "gemma3-1b": (26, 1152, 4, 1, 256, 6912, 262144, 512, "5:1"),
}
# docs/model-math.md, 'Published shapes': width, layers, heads, lru width, MLP width, window,
# vocab
GRIFFIN_SPEC = {
    "recurrentgemma-2b": (2560, 26, 10, 2560, 7680, 2048, 256000),
    "recurrentgemma-9b": (4096, 38, 16, 4096, 12288, 2048, 256000),
}


@pytest.mark.parametrize("preset", sorted(GEMMA_SPEC))
def test_gemma_preset_config_equals_spec(preset):
    n, d, h, kv, hd, f, v, w, pattern = GEMMA_SPEC[preset]
    c = preset_config(preset)
    assert (c.num_layers, c.width, c.num_heads, c.num_kv_heads, c.head_dim, c.mlp_width,
            c.vocab_size, c.sliding_window) == (n, d, h, kv, hd, f, v, w)
    if pattern == "global":
        assert set(c.layer_types) == {"global"} and c.architecture == "gemma"
        assert not c.post_norms and not c.qk_norm
        assert c.attn_logit_softcapping == 0 and c.final_logit_softcapping == 0
    elif pattern == "alternate":  # layer 0 sliding, 1 global, ...
        assert c.layer_types == tuple("sliding" if i % 2 == 0 else "global" for i in range(n))
        assert (c.attn_logit_softcapping, c.final_logit_softcapping) == (50.0, 30.0)
        assert c.post_norms and not c.qk_norm and c.max_position_embeddings == 8192
    else:  # global at 5, 11, 17, ...
        assert [i for i, t in enumerate(c.layer_types) if t == "global"] == list(
            range(5, n, 6))
        assert c.qk_norm and c.post_norms and c.max_position_embeddings == 32768
        assert (c.rope_local_theta, c.rope_theta) == (10000.0, 1_000_000.0)
    assert c.query_pre_attn_scalar == 256.0
    # bf16(sqrt(d)) as the reference applies it with bf16 weights (docs/model-math.md,
    # 'Embedding scale')
    want_scale = {2048: 45.25, 3072: 55.5, 2304: 48.0, 3584: 59.75, 640: 25.25}.get(d)
    if want_scale is not None:
        assert c.embed_scale == want_scale


@pytest.mark.parametrize("preset", sorted(GRIFFIN_SPEC))
def test_griffin_preset_config_equals_spec(preset):
    c = preset_config(preset)
    assert (c.width, c.num_layers, c.num_heads, c.lru_width, c.mlp_width,
            c.attention_window_size, c.vocab_size) == GRIFFIN_SPEC[preset]
    assert [i for i, t in enumerate(c.block_types) if t == "attention"] == list(
        range(2, c.num_layers, 3))


def test_gemma3_270m_parameter_count():
    """The whole real-shape model: 268,098,176 parameters (the published count), matrices in
    bf16 (2 bytes) and the 18 x (4 x 640 + 2 x 256) + 640 norm weights in float32."""
    m = gn.random_model("gemma3-270m", seed=0)
    norms = 18 * (4 * 640 + 2 * 256) + 640
    assert m.weights_nbytes == 2 * (268_098_176 - norms) + 4 * norms


def _gemma_layer_params(preset):
    n, d, h, kv, hd, f, v, w, pattern = GEMMA_SPEC[preset]
    mats = d * h * hd * 2 + d * kv * hd * 2 + 3 * d * f  # q, o, k, v, gate, up, down
    norms = d * (2 if pattern == "global" else 4) + (2 * hd if pattern == "5:1" else 0)
    return mats, norms


@pytest.mark.parametrize("preset", ["gemma-7b", "gemma2-9b", "gemma3-1b"])
def test_gemma_real_width_layer_bytes(preset):
    """One real-width layer (small vocabulary) holds exactly the spec's tensors."""
    vocab = 64
    d = GEMMA_SPEC[preset][1]
    m = gn.random_model(preset, num_layers=1, vocab_size=vocab, seed=0)
    mats, norms = _gemma_layer_params(preset)
    assert m.weights_nbytes == 2 * (mats + vocab * d) + 4 * (norms + d)
    out = m.generate([1, 2, 3], max_tokens=2, stop_token_ids=())
    assert len(out.token_ids) == 2 and all(0 <= t < vocab for t in out.token_ids)


def test_recurrentgemma_2b_layer_counts():
    """docs/model-math.md, 'Published shapes': 80,005,120 parameters per recurrent layer,
    73,425,920 per attention layer (3 real-width layers, tiny vocabulary; float32 for everything
    so bytes = 4 x count)."""
    m = gn.random_model("recurrentgemma-2b", num_layers=3, vocab_size=64, dtype="float32")
    assert m.weights_nbytes == 4 * (2 * 80_005_120 + 73_425_920 + 64 * 2560 + 2560)


TINY = ["recurrentgemma-tiny", "gemma-tiny", "gemma2-tiny", "gemma3-tiny"]


@pytest.mark.parametrize("preset", TINY)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_tiny_presets_generate(preset, dtype):
    m = gn.random_model(preset, dtype=dtype, seed=3)
    assert m.weight_dtype == dtype and m.path == f"random:{preset}"
    out = m.generate([2, 5, 7, 11], max_tokens=12, stop_token_ids=())
    assert len(out.token_ids) == 12 and out.finish_reason == "length"
    assert all(0 <= t < m.config.vocab_size for t in out.token_ids)
    # the weights are not degenerate: greedy output does not just repeat one token
    assert len(set(out.token_ids)) > 1
    logits = m.logits([2, 5, 7, 11])
    assert logits.shape == (4, m.config.vocab_size) and np.isfinite(logits).all()


@pytest.mark.parametrize("preset", TINY)
def test_tiny_presets_behave_like_models(preset):
    """Stateful decode equals the whole-prompt logits and a batch equals single runs,
    past the sliding window (16) of the tiny presets."""
    m = gn.random_model(preset, seed=4)
    ids = list(np.random.default_rng(0).integers(0, m.config.vocab_size, size=40))
    full = m.logits(ids)
    st = m.new_state()
    m.forward(ids[:20], st)
    steps = [m.forward([t], st) for t in ids[20:]]
    np.testing.assert_allclose(np.stack(steps), full[20:], rtol=1e-4, atol=1e-4)
    a = m.generate([[2, 3, 4], [9, 8, 7, 6]], max_tokens=5, stop_token_ids=())
    b = [m.generate(p, max_tokens=5, stop_token_ids=()) for p in ([2, 3, 4], [9, 8, 7, 6])]
    assert [r.token_ids for r in a] == [r.token_ids for r in b]


@pytest.mark.parametrize("preset", TINY)
def test_seed_determinism(preset):
    ids = [2, 3, 5, 7, 11, 13]
    a = gn.random_model(preset, seed=5).logits(ids)
    b = gn.random_model(preset, seed=5).logits(ids)
    c = gn.random_model(preset, seed=6).logits(ids)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-2


def test_float32_holds_the_bf16_values():
    """float32 weights are the bf16 draws widened: the matrices hold the same numbers, so a
    float32 model costs exactly twice the matrix bytes."""
    b = gn.random_model("gemma2-tiny", dtype="bfloat16", seed=1)
    f = gn.random_model("gemma2-tiny", dtype="float32", seed=1)
    c = f.config
    norms = c.width * (4 * c.num_layers + 1)
    assert f.weights_nbytes - 4 * norms == 2 * (b.weights_nbytes - 4 * norms)


def test_unknown_preset_lists_known_ones():
    with pytest.raises(gn.InvalidArgumentError) as e:
        gn.random_model("gemma4-huge")
    msg = str(e.value)
    assert "gemma4-huge" in msg
    for name in ("gemma-2b", "gemma3-270m", "recurrentgemma-tiny", "gemma2-tiny"):
        assert name in msg
    with pytest.raises(gn.InvalidArgumentError):
        gn.random_model(None)


def test_bad_overrides_and_dtype():
    with pytest.raises(gn.InvalidArgumentError):
        gn.random_model("gemma-tiny", no_such_field=3)
    with pytest.raises(gn.InvalidArgumentError):
        gn.random_model("gemma-tiny", layer_types=("global",))  # 3 layers
    with pytest.raises(gn.GemmaNativeError):
        gn.random_model("gemma-tiny", num_kv_heads=3)  # 4 query heads: not a multiple
    with pytest.raises(gn.DTypeError):
        gn.random_model("gemma3-tiny", dtype="int4")
    with pytest.raises(gn.InvalidArgumentError):
        gn.random_model("gemma3-tiny", seed=-1)


def test_presets_listed():
    assert set(GEMMA_SPEC) | set(GRIFFIN_SPEC) <= set(PRESETS)
    assert {"gemma-tiny", "gemma2-tiny", "gemma3-tiny", "recurrentgemma-tiny"} <= set(PRESETS)
