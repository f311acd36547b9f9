"""ChatSession: a conversation that keeps the model state between turns.  Each turn's reply
must equal what the model gives when the whole conversation so far is read from scratch, and
the first turn must equal Model.chat."""

from __future__ import annotations

import pytest

import gemma_native as gn
from gemma_native.chat import ChatSession, looks_instruction_tuned
from gemma_native.errors import InvalidArgumentError, TokenizerError

from tests.helpers.spm_fixture import train_tiny_spm

EOT = "<end_of_turn>"


@pytest.fixture(scope="module", params=["recurrentgemma-tiny", "gemma-tiny"])
def model(request, tmp_path_factory):
    m = gn.random_model(request.param, dtype="float32", seed=4, vocab_size=400)
    m.tokenizer = gn.Tokenizer.from_file(train_tiny_spm(str(tmp_path_factory.mktemp("spm"))))
    return m


def _tail(model, last_reply_ids):
    """The tokens that close a reply and open the next user turn, as a full re-read sees them."""
    tok = model.tokenizer
    eot = tok.piece_to_id(EOT)
    closed = bool(last_reply_ids) and last_reply_ids[-1] == eot
    return tok.encode(("" if closed else EOT) + "\n", add_bos=False)


def _turn(model, text):
    return model.tokenizer.encode(f"<start_of_turn>user\n{text}{EOT}\n<start_of_turn>model\n",
                                  add_bos=False)


def test_first_turn_equals_model_chat(model):
    s = model.chat_session(max_tokens=6)
    r = s.send("hi there")
    want = model.chat([{"role": "user", "content": "hi there"}], max_tokens=6)
    assert r.token_ids == want.token_ids and r.text == want.text
    assert r.prompt_token_ids == want.prompt_token_ids
    assert s.messages == [{"role": "user", "content": "hi there"},
                          {"role": "model", "content": want.text}]


def test_system_prompt_is_folded_into_the_first_turn(model):
    s = model.chat_session(system="be brief", max_tokens=4)
    r = s.send("hello")
    want = model.chat([{"role": "system", "content": "be brief"},
                       {"role": "user", "content": "hello"}], max_tokens=4)
    assert r.prompt_token_ids == want.prompt_token_ids and r.token_ids == want.token_ids


@pytest.mark.parametrize("close_with_eot", [False, True])
def test_later_turns_equal_a_full_reread(model, close_with_eot):
    """Turn 3's reply from the kept state equals greedy generation over every token of the
    conversation read from scratch (prompt, reply, closing tokens, next turn ...)."""
    eot = model.tokenizer.piece_to_id(EOT)
    kw = dict(max_tokens=5)
    if close_with_eot:  # make every reply end with <end_of_turn> after 2 tokens at most
        kw = dict(max_tokens=3, logit_bias={eot: 30.0})
    s = model.chat_session(**kw)
    full = []
    replies = []
    for n, text in enumerate(["first question", "and a second one", "third"]):
        r = s.send(text)
        if n == 0:
            full = list(r.prompt_token_ids)
        else:
            full += _tail(model, replies[-1]) + _turn(model, text)
        want = model.generate(full, **kw)
        assert r.token_ids == want.token_ids, n
        replies.append(r.token_ids)
        full += r.token_ids
    if close_with_eot:
        assert all(ids[-1] == eot for ids in replies)
    assert [m["role"] for m in s.messages] == ["user", "model"] * 3


def test_an_interrupted_reply_is_kept_and_continued(model):
    """A listener that stops reading after one piece: the reply so far stays in the
    conversation, and the next turn equals a full re-read that holds exactly the reply tokens
    received (all but the last were fed during generation, the last one with the next turn)."""
    s = model.chat_session(max_tokens=8)
    it = s.send("tell me a story", stream=True)
    first = next(it)
    it.close()
    assert s.messages[-1]["role"] == "model" and s.messages[-1]["content"] == first
    whole = model.chat([{"role": "user", "content": "tell me a story"}], max_tokens=8)
    received = s.state.pos - len(whole.prompt_token_ids) + 1
    assert 1 <= received < len(whole.token_ids)  # it was cut short
    reply = whole.token_ids[:received]  # greedy: a prefix of the uninterrupted reply
    r2 = s.send("go on")
    full = whole.prompt_token_ids + reply + _tail(model, reply) + _turn(model, "go on")
    assert r2.token_ids == model.generate(full, max_tokens=8).token_ids


def test_reset_starts_over(model):
    s = model.chat_session(max_tokens=4)
    s.send("one")
    s.send("two")
    s.reset()
    assert s.messages == [] and s.state.pos == 0
    r = s.send("one")
    assert r.token_ids == model.chat([{"role": "user", "content": "one"}],
                                     max_tokens=4).token_ids


def test_a_conversation_past_the_context_is_a_clear_error(model):
    if model._core.max_context > 100_000:
        pytest.skip("RecurrentGemma's fixed-size state has no practical context limit")
    s = model.chat_session(max_tokens=4)
    s.send("hello")
    pos, messages = s.state.pos, list(s.messages)
    with pytest.raises(InvalidArgumentError, match="reset"):
        s.send("word " * (model._core.max_context + 5))
    assert s.state.pos == pos and s.messages == messages  # nothing was fed


def test_bad_turns_and_no_tokenizer(model):
    s = model.chat_session(max_tokens=2)
    for bad in ("", "   ", None, 5):
        with pytest.raises(InvalidArgumentError):
            s.send(bad)
    with pytest.raises(InvalidArgumentError):
        s.reset(system=3)
    bare = gn.random_model("recurrentgemma-tiny", dtype="float32", seed=4, vocab_size=400)
    with pytest.raises(TokenizerError):
        ChatSession(bare)


class _M:
    def __init__(self, path):
        self.path = path


@pytest.mark.parametrize("path,want", [
    ("/m/gemma-3-270m-q4_k_m.gguf", False),
    ("/m/gemma-3-270m-it-Q4_K_M.gguf", True),
    ("/models/recurrentgemma-2b-it", True),
    ("/models/recurrentgemma-2b", False),
    ("/c/models--google--gemma-2-2b-it/snapshots/0123abcd", True),
    ("/c/models--google--gemma-2-2b/snapshots/0123abcd", False),
    ("/x/Mistral-7B-Instruct", True),
    ("/x/italian-model", False),
    (None, None),
])
def test_base_model_detection_by_name(path, want):
    assert looks_instruction_tuned(_M(path)) is want


CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
GEMMA_LIKE = ("{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m.role }}\n"
              "{{ m.content }}<end_of_turn>\n{% endfor %}")


def _with_template(model, template):
    import copy

    m = copy.copy(model)
    m.chat_template = template
    return m


def test_a_stored_non_gemma_template_is_rendered(model):
    pytest.importorskip("jinja2")
    m = _with_template(model, CHATML)
    msgs = [{"role": "user", "content": "hi"}]
    text = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    want_ids = m.tokenizer.encode(text, add_bos=False)  # the template writes its own <bos>
    r = m.chat(msgs, max_tokens=3)
    assert r.prompt_token_ids == want_ids
    assert r.token_ids == m.generate(want_ids, max_tokens=3).token_ids
    # a session re-reads the conversation through the template every turn
    s = m.chat_session(max_tokens=3)
    r1 = s.send("hi")
    r2 = s.send("again")
    assert r1.prompt_token_ids == want_ids
    text2 = text + r1.text + "<|im_end|>\n<|im_start|>user\nagain<|im_end|>\n" \
        "<|im_start|>assistant\n"
    assert r2.prompt_token_ids == m.tokenizer.encode(text2, add_bos=False)


def test_a_gemma_template_needs_no_jinja(model, monkeypatch):
    import sys

    for name in ("jinja2", "jinja2.sandbox", "jinja2.exceptions"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails
    m = _with_template(model, GEMMA_LIKE)
    msgs = [{"role": "user", "content": "hi"}]
    assert m.chat_prompt_ids(msgs) == model.chat_prompt_ids(msgs)
    other = _with_template(model, CHATML)
    with pytest.raises(TokenizerError, match="jinja2"):
        other.chat(msgs, max_tokens=1)


def test_templates_are_read_from_hf_folders_and_gguf_metadata(tmp_path):
    import json

    from gemma_native.templates import template_from_gguf, template_from_hf_folder

    assert template_from_hf_folder(str(tmp_path)) is None
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": CHATML}))
    assert template_from_hf_folder(str(tmp_path)) == CHATML
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": [{"name": "tool_use", "template": "x"},
                           {"name": "default", "template": GEMMA_LIKE}]}))
    assert template_from_hf_folder(str(tmp_path)) == GEMMA_LIKE
    (tmp_path / "chat_template.jinja").write_text(CHATML)
    assert template_from_hf_folder(str(tmp_path)) == CHATML
    assert template_from_gguf({"tokenizer.chat_template": CHATML}) == CHATML
    assert template_from_gguf({}) is None
