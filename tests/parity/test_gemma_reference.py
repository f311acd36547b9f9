"""Gemma 1 / 2 / 3 text models against Hugging Face transformers on tiny random configs:
logits at every position (past the sliding window too), greedy continuations, older and current
config.json spellings, bf16 checkpoints, chunked == full."""

import json
import os

import numpy as np
import pytest

import gemma_native as gn

torch = pytest.importorskip("torch")
from tests.helpers import refmodels as rm  # noqa: E402  (needs torch)
from tests.helpers.arrays import random_ids  # noqa: E402
transformers = pytest.importorskip("transformers")

ATOL = 1e-4
W = 8
VOCAB = 300  # of the tiny configs below


def _make(gen, seed, hidden=64):
    torch.manual_seed(seed)
    common = dict(vocab_size=300, hidden_size=hidden, intermediate_size=96, head_dim=32,
                  max_position_embeddings=256)
    if gen == 1:  # MQA, all layers global
        cfg = transformers.GemmaConfig(num_hidden_layers=3, num_attention_heads=4,
                                       num_key_value_heads=1, **common)
        m = transformers.GemmaForCausalLM(cfg)
    elif gen == 2:  # GQA, alternating sliding/global, both soft-caps, query scalar != head_dim
        cfg = transformers.Gemma2Config(num_hidden_layers=4, num_attention_heads=4,
                                        num_key_value_heads=2, sliding_window=W,
                                        query_pre_attn_scalar=24, attn_logit_softcapping=50.0,
                                        final_logit_softcapping=30.0, **common)
        m = transformers.Gemma2ForCausalLM(cfg)
    else:  # 5 sliding : 1 global, QK-norm, two RoPE bases
        cfg = transformers.Gemma3TextConfig(num_hidden_layers=7, num_attention_heads=4,
                                            num_key_value_heads=1, sliding_window=W, **common)
        m = transformers.Gemma3ForCausalLM(cfg)
    m.config._attn_implementation = "eager"
    m = m.float().eval()
    with torch.no_grad():  # the default init leaves norms at 0 and logits tiny: spread them
        for name, p in m.named_parameters():
            if "norm" in name:
                p.normal_(0, 0.2)
            elif "embed" in name:
                p.normal_(0, 0.5)
    return m


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = {}
    torch.set_num_threads(1)
    for gen in (1, 2, 3):
        m = _make(gen, seed=gen)
        folder = str(tmp_path_factory.mktemp(f"gemma{gen}"))
        m.save_pretrained(folder)
        out[gen] = (m, folder)
    return out


def _hf_logits(m, toks):
    with torch.no_grad():
        return m(torch.as_tensor(np.asarray(toks)), use_cache=False).logits.float().numpy()


@pytest.mark.parametrize("gen", [1, 2, 3])
@pytest.mark.parametrize("length", [1, W - 1, W, W + 1, 3 * W + 2])
def test_logits_match_transformers(models, gen, length):
    m, folder = models[gen]
    toks = random_ids((2, length), VOCAB, seed=length, dtype=np.int64)
    ref = _hf_logits(m, toks)
    ours = gn.load(folder).logits(toks)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < ATOL


@pytest.mark.parametrize("gen", [1, 2, 3])
def test_greedy_matches_transformers_generate(models, gen):
    m, folder = models[gen]
    prompt = [2] + list(random_ids(5, VOCAB, seed=gen, dtype=np.int64))
    with torch.no_grad():  # HF's own cached decode path
        ref = m.generate(torch.tensor([prompt]), max_new_tokens=3 * W, do_sample=False,
                         eos_token_id=None, pad_token_id=0)[0, len(prompt):].tolist()
    out = gn.load(folder).generate(prompt, max_tokens=3 * W, stop_token_ids=())
    rm.assert_greedy_agrees(out.token_ids, ref, prompt, lambda ids: _hf_logits(m, [ids])[0, -1],
                            ATOL)


@pytest.mark.parametrize("gen", [1, 2, 3])
def test_chunked_prefill_equals_full(models, gen):
    _, folder = models[gen]
    model = gn.load(folder)
    ids = random_ids(4 * W + 3, VOCAB, seed=11, dtype=np.int64)
    full = model.logits(ids)
    state = model.new_state()
    got, i = [], 0
    for size in (1, W - 1, W, W + 1, 2, 1, 3 * W):
        if i >= len(ids):
            break
        got.append(model.forward(ids[i:i + size], state, all_positions=True))
        i += size
    np.testing.assert_allclose(np.concatenate(got), full, atol=2e-5, rtol=1e-5)
    c = state.clone()
    np.testing.assert_array_equal(model.forward([5], state), model.forward([5], c))


def test_older_config_spellings(models, tmp_path):
    """Gemma 3 config.json as older transformers wrote it: rope_theta / rope_local_base_freq /
    sliding_window_pattern instead of rope_parameters / layer_types."""
    m, folder = models[3]
    with open(os.path.join(folder, "config.json")) as f:
        conf = json.load(f)
    rp = conf.pop("rope_parameters")
    conf.pop("layer_types")
    conf["rope_theta"] = rp["full_attention"]["rope_theta"]
    conf["rope_local_base_freq"] = rp["sliding_attention"]["rope_theta"]
    conf["sliding_window_pattern"] = 6
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps(conf))
    os.symlink(os.path.join(folder, "model.safetensors"), old / "model.safetensors")
    toks = random_ids((1, 3 * W), VOCAB, seed=3, dtype=np.int64)
    np.testing.assert_allclose(gn.load(str(old)).logits(toks), _hf_logits(m, toks), atol=ATOL,
                               rtol=0)


def test_bf16_checkpoint(tmp_path):
    """A bf16 checkpoint keeps bf16 weights; its embedding scale is sqrt(width) rounded to bf16
    as transformers does for bf16 models (docs/model-math.md, 'Embedding scale').  The truth:
    transformers in fp32 holding the same bf16-rounded parameters and the bf16-rounded
    embedding scale.  (Casting the whole HF model to bf16 and back would also round its RoPE
    frequency buffer.)"""
    hidden = 96  # sqrt(96) = 9.798 is 9.8125 in bf16
    _make(2, seed=2, hidden=hidden).to(torch.bfloat16).save_pretrained(str(tmp_path))
    model = gn.load(str(tmp_path))
    assert model.weight_dtype == "bfloat16" and model.config.embed_scale == 9.8125
    mf = _make(2, seed=2, hidden=hidden)
    with torch.no_grad():
        for p in mf.parameters():
            p.copy_(p.to(torch.bfloat16).float())
        mf.model.embed_tokens.embed_scale.fill_(9.8125)
    toks = random_ids((1, 2 * W), VOCAB, seed=4, dtype=np.int64)
    np.testing.assert_allclose(model.logits(toks), _hf_logits(mf, toks), atol=ATOL, rtol=0)


def test_gemma3_linear_rope_scaling(tmp_path):
    """Gemma 3 4B+ scale the global layers' RoPE linearly (factor 8; the sliding layers keep
    theirs): a tiny such model against transformers, in the current and the older spelling."""
    torch.manual_seed(7)
    cfg = transformers.Gemma3TextConfig(
        num_hidden_layers=7, num_attention_heads=4, num_key_value_heads=1, sliding_window=W,
        vocab_size=300, hidden_size=64, intermediate_size=96, head_dim=32,
        max_position_embeddings=256, rope_scaling={"rope_type": "linear", "factor": 8.0})
    m = transformers.Gemma3ForCausalLM(cfg)
    m.config._attn_implementation = "eager"
    m = m.float().eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name:
                p.normal_(0, 0.2)
            elif "embed" in name:
                p.normal_(0, 0.5)
    folder = tmp_path / "scaled"
    m.save_pretrained(str(folder))
    toks = random_ids((1, 3 * W + 5), VOCAB, seed=5, dtype=np.int64)
    ref = _hf_logits(m, toks)
    model = gn.load(str(folder))
    assert model.config.rope_global_factor == 8.0
    assert np.abs(model.logits(toks) - ref).max() < ATOL
    # without the scaling the global layers rotate differently: the test can tell
    conf = json.loads((folder / "config.json").read_text())
    plain = dict(conf, rope_parameters={k: {"rope_type": "default", "rope_theta": v["rope_theta"]}
                                        for k, v in conf["rope_parameters"].items()})
    other = tmp_path / "plain"
    other.mkdir()
    (other / "config.json").write_text(json.dumps(plain))
    os.symlink(folder / "model.safetensors", other / "model.safetensors")
    assert np.abs(gn.load(str(other)).logits(toks) - ref).max() > 10 * ATOL
    # older spelling: rope_scaling next to rope_theta / rope_local_base_freq
    old_conf = dict(plain)
    rp = old_conf.pop("rope_parameters")
    old_conf.pop("layer_types", None)
    old_conf.update(rope_theta=rp["full_attention"]["rope_theta"],
                    rope_local_base_freq=rp["sliding_attention"]["rope_theta"],
                    sliding_window_pattern=6, rope_scaling={"type": "linear", "factor": 8.0})
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps(old_conf))
    os.symlink(folder / "model.safetensors", old / "model.safetensors")
    assert np.abs(gn.load(str(old)).logits(toks) - ref).max() < ATOL


@pytest.mark.parametrize("scaling", [{"rope_type": "yarn", "factor": 4.0},
                                     {"rope_type": "linear", "factor": -1},
                                     {"rope_type": "linear"}, "linear"])
def test_unsupported_or_bad_rope_scaling(models, tmp_path, scaling):
    _, folder = models[3]
    conf = json.loads(open(os.path.join(folder, "config.json")).read())
    conf.pop("rope_parameters")
    conf["rope_scaling"] = scaling
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps(conf))
    os.symlink(os.path.join(folder, "model.safetensors"), bad / "model.safetensors")
    with pytest.raises((gn.UnsupportedModelError, gn.ModelFormatError)):
        gn.load(str(bad))


@pytest.mark.parametrize("gen", [1, 2, 3])
def test_state_save_and_restore(models, gen):
    """to_numpy() / load_numpy(): a restored KV cache continues exactly like the original
    (past the sliding window's wrap-around and after the global caches grew)."""
    _, folder = models[gen]
    model = gn.load(folder)
    ids = random_ids(3 * W + 3, VOCAB, seed=21, dtype=np.int64)
    st = model.new_state()
    model.forward(ids[:W + 2], st)
    model.forward(ids[W + 2:], st)
    saved, pos = st.to_numpy(), st.pos
    assert saved.dtype == np.float32 and saved.ndim == 1 and pos == len(ids)
    fresh = model.new_state()
    fresh.load_numpy(saved, pos)
    np.testing.assert_array_equal(fresh.to_numpy(), saved)
    np.testing.assert_array_equal(model.forward([7, 8, 9], fresh, all_positions=True),
                                  model.forward([7, 8, 9], st, all_positions=True))
    with pytest.raises(gn.InvalidArgumentError):
        model.new_state().load_numpy(saved[:-1], pos)
    with pytest.raises(gn.InvalidArgumentError):
        model.new_state().load_numpy(saved, pos + 1)
    with pytest.raises(gn.InvalidArgumentError):
        model.new_state().load_numpy(saved.astype(np.float64), pos)
