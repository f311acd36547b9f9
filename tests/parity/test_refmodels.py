"""Self-tests of the reference fixtures in refmodels.py.

They pin down that the two implementations we compare against (DeepMind's recurrentgemma torch
code and Hugging Face transformers) agree with each other through our own conversion and folder
writer, and where exactly they disagree (the attention window: docs/model-math.md, 'Local
attention window').
"""

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from tests.helpers import refmodels as R  # noqa: E402

if R.load_official() is None:
    pytest.skip("recurrentgemma (torch half) not importable", allow_module_level=True)

from transformers import RecurrentGemmaForCausalLM  # noqa: E402

SEED = 1234
CFG = R.tiny_config()
W = CFG["attention_window_size"]
ATOL = 1e-4


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with R.torch_threads(1):
        yield


@pytest.fixture(scope="module")
def official(_one_thread):
    return R.make_official(CFG, SEED)


@pytest.fixture(scope="module")
def tokens():
    # two rows, longer than the window; avoid nothing in particular (ids 0..255 all valid)
    return np.random.default_rng(7).integers(0, CFG["vocab_size"], size=(2, W + 6))


def test_tiny_config_shape():
    assert R.block_types(CFG) == ["recurrent", "recurrent", "attention", "recurrent", "recurrent"]
    assert CFG["width"] // CFG["num_heads"] == 48
    # sqrt(96) is not exactly representable in bf16: the model must use the rounded 9.8125
    assert float(torch.tensor(96 ** 0.5).to(torch.bfloat16)) == 9.8125


def test_weights_random_and_logits_sane(official, tokens):
    for name, p in official.named_parameters():
        a = p.detach().float()
        assert a.std() > 0.03, name                       # nothing left at the 0 / 1 init
        assert not torch.all(a == a.flatten()[0]), name
    sp = torch.nn.functional.softplus(official.blocks[0].recurrent_block.rg_lru.a_param.detach())
    r = torch.exp(-sp)                                    # decay radius, official init ring
    assert 0.9 - 1e-4 <= float(r.min()) and float(r.max()) <= 0.999 + 1e-4
    logits = R.official_logits(official, tokens)
    assert logits.shape == (2, W + 6, CFG["vocab_size"]) and logits.dtype == np.float32
    assert 1.0 < logits.std() < 10.0
    assert np.abs(logits).max() < 0.8 * CFG["logits_soft_cap"]   # far from saturating the cap
    # same seed -> same weights; different seed -> different weights
    np.testing.assert_array_equal(logits, R.official_logits(R.make_official(CFG, SEED), tokens))
    assert not np.allclose(logits, R.official_logits(R.make_official(CFG, SEED + 1), tokens))


@pytest.mark.parametrize("shards", [1, 3])
def test_official_to_hf_folder_matches_transformers(official, tokens, tmp_path, shards):
    tensors = R.official_to_hf_tensors(official)
    assert "lm_head.weight" not in tensors
    folder = R.write_hf_folder(str(tmp_path / "hf"), CFG, tensors, dtype="float32", shards=shards)
    files = sorted(os.listdir(folder))
    if shards == 1:
        assert files == ["config.json", "model.safetensors"]
    else:
        assert files == ["config.json"] + [f"model-{i:05d}-of-00003.safetensors" for i in (1, 2, 3)] + [
            "model.safetensors.index.json"]
        with open(os.path.join(folder, "model.safetensors.index.json")) as f:
            index = json.load(f)
        assert sorted(index["weight_map"]) == sorted(tensors)
        assert set(index["weight_map"].values()) == set(files[1:4])

    hf = RecurrentGemmaForCausalLM.from_pretrained(folder).eval()
    assert hf.dtype == torch.float32
    assert hf.config.block_types == ["recurrent", "recurrent", "attention"]
    assert hf.lm_head.weight.data_ptr() == hf.model.embed_tokens.weight.data_ptr()
    for t in (1, 3, W):                                   # up to the window both agree
        ref = R.official_logits(official, tokens[:, :t])
        got = R.hf_logits(hf, tokens[:, :t])
        np.testing.assert_allclose(got, ref, rtol=0, atol=ATOL)


def test_beyond_window_first_difference_is_index_W(official, tokens):
    """Official: query i sees keys j with 0 <= i - j <= W (W+1 keys).  HF: i - j < W (W keys).

    The first query that has a key at distance exactly W is i = W (0-based; the (W+1)-th token,
    seeing key 0).  Everything before the attention layer is identical and the recurrent layers
    are causal, so logits at indices 0..W-1 agree and the first difference is at index W (not
    W+1).  After that every position differs (the attention output feeds later layers).
    """
    hf = R.make_hf(CFG, SEED)
    ref = R.official_logits(official, tokens)
    got = R.hf_logits(hf, tokens)
    err = np.abs(got - ref).max(axis=(0, 2))              # per position
    assert np.all(err[:W] < ATOL), err
    assert np.all(err[W:] > 1e-2), err
    assert int(np.argmax(err > 1e-2)) == W

    # Sharper statement of the same off-by-one: the official model with window W-1 (keys with
    # i - j <= W-1, i.e. W keys) equals HF with window W at every position.  The window size
    # changes no parameter, so make_official gives the same weights.
    official_wm1 = R.make_official(R.tiny_config(attention_window_size=W - 1), SEED)
    np.testing.assert_allclose(got, R.official_logits(official_wm1, tokens), rtol=0, atol=ATOL)


def test_greedy_deterministic_and_cache_consistent(official):
    prompt = [2, 17, 99, 5]
    n = 2 * W + 2                                         # runs well past the window
    a = R.official_greedy(official, prompt, n)
    b = R.official_greedy(official, prompt, n)
    assert a == b
    assert len(a) == n and all(isinstance(t, int) and 0 <= t < CFG["vocab_size"] for t in a)
    assert len(set(a)) > 2                                # the random model is not degenerate
    # The official decode path (prefill cache, ring buffer of W slots + current key) agrees with
    # recomputing the whole sequence (W previous keys + current; docs/model-math.md, 'Local
    # attention window' and 'Attention cache ring').
    assert R.official_greedy_cached(official, prompt, n) == a
    assert R.official_greedy(official, prompt, 0) == []


def test_hf_config_json_is_what_save_pretrained_writes(official, tmp_path):
    hf = R.make_hf(CFG, SEED)
    folder = R.hf_save(hf, str(tmp_path / "saved"))
    with open(os.path.join(folder, "config.json")) as f:
        written = json.load(f)
    # every key as hf_config_json writes it; transformers stamps its own version (5.23.0 when
    # hf_config_json was written, whatever is installed now)
    import transformers
    assert written == dict(R.hf_config_json(CFG), transformers_version=transformers.__version__)
    assert written["block_types"] == ["recurrent", "recurrent", "attention"]
    assert written["intermediate_size"] == 2 * CFG["mlp_expanded_width"]

    from safetensors.numpy import load_file
    saved = load_file(os.path.join(folder, "model.safetensors"))
    ours = R.official_to_hf_tensors(official)
    assert sorted(saved) == sorted(ours)                  # no lm_head.weight: tied
    for k, v in ours.items():
        assert saved[k].shape == v.shape, k
        np.testing.assert_array_equal(saved[k], v, err_msg=k)


def test_bf16_hub_style_folder(tokens, tmp_path):
    """bf16 safetensors + the legacy Hub config layout load in transformers and reproduce the
    official model whose weights are the same bf16 values (run in fp32 on both sides)."""
    off_bf16 = R.make_official(CFG, SEED, dtype=torch.bfloat16)
    tensors = R.official_to_hf_tensors(off_bf16)
    folder = R.write_hf_folder(str(tmp_path / "hub"), CFG, tensors, dtype="bfloat16", config_style="hub")
    with open(os.path.join(folder, "config.json")) as f:
        cfg_json = json.load(f)
    assert cfg_json["_block_types"] == ["recurrent", "recurrent", "attention"]
    assert "block_types" not in cfg_json and cfg_json["torch_dtype"] == "bfloat16"
    from safetensors import safe_open
    with safe_open(os.path.join(folder, "model.safetensors"), "pt") as f:
        assert all(f.get_slice(k).get_dtype() == "BF16" for k in f.keys())

    hf = RecurrentGemmaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    assert hf.config.rope_parameters["partial_rotary_factor"] == 0.5
    ref = R.official_logits(off_bf16.float(), tokens[:, :W])
    np.testing.assert_allclose(R.hf_logits(hf, tokens[:, :W]), ref, rtol=0, atol=ATOL)
    # and the bf16 official model itself runs (activations in bf16) close to that
    assert np.abs(R.official_logits(off_bf16, tokens[:, :W]) - ref).max() < 1.0
