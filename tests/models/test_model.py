"""Model-level invariants on random weights (no reference package needed): chunked prefill ==
token-by-token decode, batch == singles, every ISA agrees, fixed-size state, text paths."""

import copy

import numpy as np
import pytest

import gemma_native as gn

from tests.helpers.arrays import random_ids
from tests.helpers.spm_fixture import train_tiny_spm

W = 16  # window of the tiny preset
VOCAB = 512  # vocabulary of the tiny preset


@pytest.fixture(scope="module")
def model():
    return gn.random_model("recurrentgemma-tiny", dtype="float32", seed=1)


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    m = gn.random_model("recurrentgemma-tiny", dtype="bfloat16", seed=2, vocab_size=400)
    m.tokenizer = gn.Tokenizer.from_file(train_tiny_spm(str(tmp_path_factory.mktemp("spm"))))
    return m


@pytest.mark.parametrize("length", [W - 1, W, W + 1, 3 * W + 5])
@pytest.mark.parametrize("chunks", ["ones", "mixed", "window"])
def test_chunked_prefill_equals_full_and_token_by_token(model, length, chunks):
    ids = random_ids(length, VOCAB, seed=length)
    full = model.logits(ids)
    if chunks == "ones":
        sizes = [1] * length
    elif chunks == "window":
        sizes = [W] * (length // W) + ([length % W] if length % W else [])
    else:
        sizes = [3, 1, W - 1, W + 1, 2, 7, W, 1, 5, 30][: len(ids)]
    state = model.new_state()
    got, i = [], 0
    for s in sizes:
        if i >= length:
            break
        got.append(model.forward(ids[i:i + s], state, all_positions=True))
        i += s
    if i < length:
        got.append(model.forward(ids[i:], state, all_positions=True))
    got = np.concatenate(got)
    assert state.pos == length
    np.testing.assert_allclose(got, full, atol=2e-5, rtol=1e-5)


def test_state_size_is_fixed(model):
    state = model.new_state()
    size0 = state.nbytes
    cfg = model.config
    n_rec = sum(b == "recurrent" for b in cfg.block_types)
    n_att = len(cfg.block_types) - n_rec
    expect = 4 * (n_rec * (cfg.lru_width * cfg.conv1d_width)
                  + n_att * 2 * cfg.attention_window_size * cfg.num_kv_heads * cfg.head_dim)
    assert size0 == expect
    model.forward(random_ids(5 * W, VOCAB), state)
    for t in random_ids(50, VOCAB, seed=3):
        model.forward([int(t)], state)
    assert state.pos == 5 * W + 50 and state.nbytes == size0


def test_state_clone_and_restore(model):
    ids = random_ids(40, VOCAB, seed=4)
    s = model.new_state()
    model.forward(ids[:30], s)
    c = s.clone()
    saved, pos = s.to_numpy(), s.pos
    a = model.forward(ids[30:], s)
    b = model.forward(ids[30:], c)
    np.testing.assert_array_equal(a, b)
    d = copy.deepcopy(c)
    assert d.pos == c.pos
    r = model.new_state()
    r.load_numpy(saved, pos)
    np.testing.assert_array_equal(model.forward(ids[30:], r), a)
    np.testing.assert_allclose(a, model.logits(ids)[-1], atol=2e-5, rtol=1e-5)


def test_every_isa_gives_the_same_logits(model):
    ids = random_ids(2 * W + 3, VOCAB, seed=5)
    isas = gn.backend_info()["available_isas"]
    try:
        out = {}
        for isa in isas:
            gn.set_cpu_isa(isa)
            out[isa] = model.logits(ids)
    finally:
        gn.set_cpu_isa("auto")
    for isa in isas:  # bit for bit (tests/ops/test_kernel_sets.py covers every op and model)
        np.testing.assert_array_equal(out[isa], out["scalar"], err_msg=isa)


def test_bf16_weights_model_runs_every_isa():
    m = gn.random_model("recurrentgemma-tiny", dtype="bfloat16", seed=1)
    f = gn.random_model("recurrentgemma-tiny", dtype="float32", seed=1)
    ids = random_ids(20, VOCAB, seed=6)
    # same bf16-valued weights, widened: identical math up to summation order
    np.testing.assert_allclose(m.logits(ids), f.logits(ids), atol=2e-5, rtol=1e-5)


def test_batch_equals_singles_greedy_and_sampled(model):
    prompts = [list(random_ids(n, VOCAB, seed=n)) for n in (3, 11, 1, 2 * W + 1)]
    for params in (gn.SamplingParams(max_tokens=12, stop_token_ids=()),
                   gn.SamplingParams(max_tokens=12, temperature=0.9, top_k=40, top_p=0.9, seed=7,
                                     stop_token_ids=())):
        batch = model.generate(prompts, params)
        singles = [model.generate(p, params) for p in prompts]
        assert [r.token_ids for r in batch] == [r.token_ids for r in singles]
        assert all(len(r.token_ids) == 12 and r.finish_reason == "length" for r in batch)


def test_logits_batch_equals_rows(model):
    ids = np.stack([random_ids(25, VOCAB, seed=s) for s in range(3)])
    batched = model.logits(ids)
    for b in range(3):
        np.testing.assert_array_equal(model.logits(ids[b]), batched[b])  # bit for bit


def test_generate_greedy_is_argmax_chain(model):
    prompt = list(random_ids(6, VOCAB, seed=9))
    out = model.generate(prompt, max_tokens=10, stop_token_ids=())
    seq = list(prompt)
    for _ in range(10):
        seq.append(int(np.argmax(model.logits(seq)[-1])))
    assert out.token_ids == seq[len(prompt):]


def test_seeds(model):
    p = list(random_ids(4, VOCAB, seed=10))
    kw = dict(max_tokens=20, temperature=1.0, stop_token_ids=())
    a = model.generate(p, seed=1, **kw).token_ids
    assert a == model.generate(p, seed=1, **kw).token_ids
    assert a != model.generate(p, seed=2, **kw).token_ids
    assert model.generate(p, max_tokens=0).token_ids == []


def test_stop_token_ends_generation(model):
    p = list(random_ids(4, VOCAB, seed=11))
    free = model.generate(p, max_tokens=15, stop_token_ids=()).token_ids
    stop = free[6]
    out = model.generate(p, max_tokens=15, stop_token_ids=(stop,))
    assert out.token_ids == free[: free.index(stop) + 1] and out.finish_reason == "stop"


def test_text_generate_stream_and_stop_strings(text_model):
    m = text_model
    kw = dict(max_tokens=40, temperature=0.8, seed=3, stop_token_ids=())
    out = m.generate("def hello(x):", **kw)
    assert out.text == m.tokenizer.decode(out.token_ids)
    assert out.prompt_token_ids == m.tokenizer.encode("def hello(x):", add_bos=True)
    assert "".join(m.stream("def hello(x):", **kw)) == out.text
    text = out.text
    assert len(text) > 6
    stop = text[3:6]
    cut = m.generate("def hello(x):", stop=[stop], **kw)
    assert cut.text == text[: text.index(stop)] and cut.finish_reason == "stop"
    pieces = list(m.stream("def hello(x):", stop=[stop], **kw))
    assert "".join(pieces) == cut.text and all(stop not in p for p in pieces)


def test_chat_uses_turn_template(text_model):
    m = text_model
    msgs = [{"role": "user", "content": "hi there"}]
    r = m.chat(msgs, max_tokens=5, seed=0)
    expect = m.tokenizer.encode("<start_of_turn>user\nhi there<end_of_turn>\n<start_of_turn>model\n",
                                add_bos=True)
    assert r.prompt_token_ids == expect
    eot = m.tokenizer.piece_to_id("<end_of_turn>")
    assert eot is not None and eot in m._stop_ids(gn.SamplingParams())
    assert "".join(m.chat(msgs, max_tokens=5, seed=0, stream=True)) == r.text


def test_ids_past_tokenizer_vocab_carry_no_text(text_model):
    # A model may have more embedding rows than its tokenizer has pieces (padded vocabularies);
    # generating such an id must not break text decoding.
    m = gn.random_model("recurrentgemma-tiny", dtype="float32", seed=2, vocab_size=512)
    m.tokenizer = text_model.tokenizer
    out = m.generate([2, 450, 500], max_tokens=30, temperature=1.0, seed=1, stop_token_ids=())
    shown = [t for t in out.token_ids if t < 400]
    assert len(shown) < len(out.token_ids)  # the case under test did occur
    assert out.text == m.tokenizer.decode(shown)


def test_perplexity_is_the_mean_nll_and_chunk_independent(model):
    ids = random_ids(40, VOCAB, seed=9)
    logits = model.logits(ids).astype(np.float64)
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    want = float(np.exp(np.mean(lse[:-1] - logits[np.arange(39), ids[1:]])))
    for chunk in (1, 7, 64):
        assert abs(model.perplexity(ids, chunk=chunk) / want - 1) < 1e-5
    with pytest.raises(gn.InvalidArgumentError):
        model.perplexity([5])
    with pytest.raises(gn.InvalidArgumentError):
        model.perplexity(ids, chunk=0)


@pytest.mark.parametrize("preset", ["recurrentgemma-tiny", "gemma3-tiny"])
def test_forward_batch_equals_forward_per_state(preset):
    m = gn.random_model(preset, dtype="float32", seed=4)
    ids = np.stack([random_ids(7, m.config.vocab_size, seed=s) for s in range(3)])
    states = [m.new_state() for _ in range(3)]
    singles = [m.new_state() for _ in range(3)]
    first = m.forward_batch(ids, states)
    assert first.shape == (3, m.config.vocab_size)
    for b in range(3):
        np.testing.assert_array_equal(m.forward(ids[b], singles[b]), first[b])  # bit for bit
    nxt = ids[:, :2][:, ::-1].copy()
    every = m.forward_batch(nxt, states, all_positions=True)
    assert every.shape == (3, 2, m.config.vocab_size) and all(s.pos == 9 for s in states)
    for b in range(3):
        np.testing.assert_array_equal(m.forward(nxt[b], singles[b], all_positions=True), every[b])
    with pytest.raises(gn.InvalidArgumentError):
        m.forward_batch(ids[:2], states)  # rows != states
    with pytest.raises(gn.InvalidArgumentError):
        m.forward_batch(ids, states[0])  # not a list
    with pytest.raises(gn.InvalidArgumentError):
        m.forward_batch(ids, [states[0], states[0], states[1]])  # one state twice
    assert all(s.pos == 9 for s in states)  # refused calls change nothing


def test_special_tokens_are_left_out_of_generated_text(text_model):
    """A generated <end_of_turn> (here forced by logit_bias, with no stop ids) is not text by
    default; with skip_special_tokens=False it is written as its piece.  Streaming and
    generate agree either way, and the token ids are reported either way."""
    m = text_model
    eot = m.tokenizer.piece_to_id("<end_of_turn>")
    kw = dict(max_tokens=6, stop_token_ids=(), logit_bias={eot: 100.0})
    hidden = m.generate("hello", **kw)
    shown = m.generate("hello", skip_special_tokens=False, **kw)
    assert hidden.token_ids == shown.token_ids == [eot] * 6
    assert hidden.text == "" and shown.text == "<end_of_turn>" * 6
    for skip, want in ((True, hidden), (False, shown)):
        assert "".join(m.stream("hello", skip_special_tokens=skip, **kw)) == want.text
    with pytest.raises(gn.InvalidArgumentError, match="skip_special_tokens"):
        gn.SamplingParams(skip_special_tokens="no")
