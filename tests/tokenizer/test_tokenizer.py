"""Tests of gemma_native.tokenizer on tiny SentencePiece BPE models trained on the fly."""

from __future__ import annotations

import random

import pytest

from gemma_native.errors import (
    InvalidArgumentError,
    ModelFormatError,
    ModelNotFoundError,
)
from gemma_native.tokenizer import (
    IncrementalDecoder,
    StopMatcher,
    Tokenizer,
    format_chat,
)

from tests.helpers.spm_fixture import train_tiny_spm

# --------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("spm")


@pytest.fixture(scope="session")
def model_path(model_dir):
    return train_tiny_spm(model_dir)


@pytest.fixture(scope="session")
def tok(model_path):
    return Tokenizer.from_file(model_path)


@pytest.fixture(scope="session")
def tok_control(model_dir):
    """Same corpus, but <start_of_turn>/<end_of_turn> stored as CONTROL pieces."""
    return Tokenizer.from_file(
        train_tiny_spm(model_dir, name="control_turns", turn_tokens_as_control=True)
    )


@pytest.fixture(scope="session")
def tok_default(model_dir):
    """SentencePiece's default normaliser (dummy prefix, whitespace collapsing)."""
    return Tokenizer.from_file(train_tiny_spm(model_dir, name="default_norm", gemma_like=False))


@pytest.fixture(scope="session")
def sp_raw(model_path):
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=model_path)


ROUND_TRIP = [
    "",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "def f(x):\n    return x + 1\n",
    "for i in range(10):\n\tprint(i)",
    "digits 0123456789 and 3.14159 and 1e-9",
    "a    b          c",
    "   leading and trailing spaces   ",
    "\n\n\nnewlines\n\n",
    "tab\tseparated\tvalues\t\t",
    "emoji 😀🚀 and 👍🏽 family 👨‍👩‍👧",
    "CJK 日本語のテキスト 中文 한국어",
    "mixed: café naïve Ünïcödé € ¥ £ — “quotes”",
    "<div class=\"x\">a < b > c</div>",
    "x < y and y > z, <notatoken> <start_of_turn",
]


# --------------------------------------------------------------------------------- loading


def test_special_ids_and_vocab(tok):
    assert tok.vocab_size == 400 == len(tok)
    assert (tok.pad_id, tok.eos_id, tok.bos_id, tok.unk_id) == (0, 1, 2, 3)
    assert tok.id_to_piece(2) == "<bos>"
    assert tok.id_to_piece(1) == "<eos>"
    assert tok.piece_to_id("<start_of_turn>") == 5
    assert tok.piece_to_id("<end_of_turn>") == 6
    assert tok.piece_to_id("<unk>") == 3
    assert tok.piece_to_id("definitely-not-a-piece") is None
    assert tok.piece_to_id("<0x41>") is not None
    assert tok.is_control(0) and tok.is_control(1) and tok.is_control(2) and tok.is_control(4)
    assert not tok.is_control(5)  # USER_DEFINED in the Gemma-like model
    assert tok.is_byte(tok.piece_to_id("<0xE2>"))
    assert not tok.is_byte(tok.piece_to_id("a"))
    assert "vocab_size=400" in repr(tok)


def test_from_file_missing(tmp_path):
    with pytest.raises(ModelNotFoundError):
        Tokenizer.from_file(tmp_path / "nope.model")
    with pytest.raises(ModelNotFoundError):
        Tokenizer.from_file(tmp_path)  # folder without tokenizer.model
    with pytest.raises(FileNotFoundError):  # also a built-in FileNotFoundError
        Tokenizer.from_file(str(tmp_path / "nope.model"))


def test_from_file_corrupt(tmp_path):
    bad = tmp_path / "broken.model"
    bad.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(ModelFormatError, match="broken.model"):
        Tokenizer.from_file(bad)
    empty = tmp_path / "empty.model"
    empty.write_bytes(b"")
    with pytest.raises(ModelFormatError, match="empty.model"):
        Tokenizer.from_file(empty)


def test_from_bytes_and_folder(tok, model_path, tmp_path):
    with open(model_path, "rb") as f:
        data = f.read()
    t2 = Tokenizer.from_bytes(data)
    assert t2.vocab_size == tok.vocab_size
    assert t2.encode("hello world") == tok.encode("hello world")
    assert Tokenizer.from_bytes(tok.serialized_proto()).encode("x = 1") == tok.encode("x = 1")
    (tmp_path / "tokenizer.model").write_bytes(data)
    assert Tokenizer.from_file(tmp_path).vocab_size == 400
    with pytest.raises(ModelFormatError):
        Tokenizer.from_bytes(b"\x0a\x00garbage")
    with pytest.raises(ModelFormatError):
        Tokenizer.from_bytes(b"")
    with pytest.raises(InvalidArgumentError):
        Tokenizer.from_bytes("not bytes")


# --------------------------------------------------------------------------------- encode / decode


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_round_trip(tok, sp_raw, text):
    ids = tok.encode(text)
    assert all(isinstance(i, int) for i in ids)
    assert tok.decode(ids) == text
    if "<start_of_turn>" not in text:
        assert ids == list(sp_raw.EncodeAsIds(text))  # plain text: exactly SentencePiece's ids


def test_byte_fallback_pieces(tok):
    ids = tok.encode("😀")
    assert [tok.id_to_piece(i) for i in ids] == ["<0xF0>", "<0x9F>", "<0x98>", "<0x80>"]
    assert all(tok.is_byte(i) for i in ids)
    ids = tok.encode("日本")
    assert len(ids) == 6 and all(tok.is_byte(i) for i in ids)


def test_no_dummy_prefix_and_digits(tok):
    pieces = [tok.id_to_piece(i) for i in tok.encode("the 2024 x")]
    assert not pieces[0].startswith("▁")  # no dummy prefix
    assert "2" in pieces and "0" in pieces and "4" in pieces  # split_digits
    # whitespace runs are kept (no collapsing)
    assert tok.decode(tok.encode("a     b")) == "a     b"


def test_turn_tokens_single_ids(tok):
    assert tok.encode("<start_of_turn>") == [5]
    assert tok.encode("<end_of_turn>") == [6]
    ids = tok.encode("<start_of_turn>user\nhi<end_of_turn>\n")
    assert ids[0] == 5 and 6 in ids
    assert ids.count(5) == 1 and ids.count(6) == 1
    # the markers are special tokens: left out of the text unless asked for
    assert tok.decode(ids) == "user\nhi\n"
    assert tok.decode(ids, skip_special_tokens=False) == "<start_of_turn>user\nhi<end_of_turn>\n"
    assert {5, 6} <= tok.special_ids


def test_control_strings_never_from_text(tok, tok_control):
    for t in (tok, tok_control):
        for s in ("<bos>", "<eos>", "<pad>", "<unk>", "<mask>"):
            ids = t.encode(s)
            assert len(ids) > 1
            assert not any(t.is_control(i) for i in ids)
            assert t.decode(ids) == s


def test_add_bos(tok):
    assert tok.encode("hello", add_bos=True) == [2] + tok.encode("hello")
    assert tok.encode("", add_bos=True) == [2]
    assert tok.encode("") == []


def test_decode_controls_empty(tok):
    assert tok.decode([0, 1, 2, 4]) == ""
    text = "Hello there"
    assert tok.decode([2] + tok.encode(text) + [1, 0, 0]) == text
    assert tok.decode([]) == ""


def test_decode_invalid_ids(tok):
    for bad in ([-1], [400], [5, 10**9], [1.0], ["3"], [None], [True]):
        with pytest.raises(InvalidArgumentError):
            tok.decode(bad)
    with pytest.raises(InvalidArgumentError):
        tok.decode("abc")
    with pytest.raises(InvalidArgumentError):
        tok.decode(None)
    for bad in (-1, 400):
        with pytest.raises(InvalidArgumentError):
            tok.id_to_piece(bad)
        with pytest.raises(InvalidArgumentError):
            tok.is_control(bad)
    with pytest.raises(InvalidArgumentError):
        tok.encode(b"bytes")
    with pytest.raises(ValueError):  # InvalidArgumentError is a ValueError
        tok.decode([400])


def test_decode_accepts_numpy_and_tuples(tok):
    np = pytest.importorskip("numpy")
    ids = tok.encode("numpy ids 123")
    assert tok.decode(np.asarray(ids, dtype=np.int32)) == "numpy ids 123"
    assert tok.decode(np.asarray(ids, dtype=np.int64)) == "numpy ids 123"
    assert tok.decode(tuple(ids)) == "numpy ids 123"
    assert tok.decode([np.int64(i) for i in ids]) == "numpy ids 123"
    with pytest.raises(InvalidArgumentError):
        tok.decode(np.asarray([1, 400]))
    with pytest.raises(InvalidArgumentError):
        tok.decode(np.asarray([1.0, 2.0]))


def test_invalid_utf8_bytes_decode_to_replacement(tok):
    b = lambda v: tok.piece_to_id(f"<0x{v:02X}>")  # noqa: E731
    assert tok.decode([b(0xE2), b(0x82), b(0xAC)]) == "€"
    assert tok.decode([b(0xE2), b(0x82)]) == "\ufffd\ufffd"
    assert tok.decode([b(0x80)]) == "\ufffd"


# --------------------------------------------------------------------------------- control model


def test_control_turn_tokens_from_text(tok_control):
    t = tok_control
    assert t.is_control(5) and t.is_control(6)
    assert t.encode("<start_of_turn>") == [5]
    assert t.encode("<end_of_turn>") == [6]
    text = "<start_of_turn>user\nhi < there<end_of_turn>\n<start_of_turn>model\n"
    ids = t.encode(text)
    assert ids.count(5) == 2 and ids.count(6) == 1
    assert ids[0] == 5
    # the segments between are encoded exactly as plain text
    assert ids[1 : ids.index(6)] == t.encode("user\nhi < there")
    # control pieces decode to '' (as SentencePiece does)
    assert t.decode(ids) == "user\nhi < there\nmodel\n"
    # a '<' that is not a full control string stays ordinary text
    for s in ("<", "a < b", "<start_of_turn", "start_of_turn>", "<<start_of_turn>>", "<x>"):
        ids = t.encode(s)
        assert t.decode(ids) == s.replace("<start_of_turn>", "")
    assert t.encode("<<start_of_turn>>").count(5) == 1
    assert t.encode("x<start_of_turn><start_of_turn>y").count(5) == 2


def test_control_model_same_as_gemma_model_for_plain_text(tok, tok_control):
    for text in ROUND_TRIP:
        if "<start_of_turn>" in text:
            continue
        assert tok_control.encode(text) == tok.encode(text)


def test_chat_prompt_encoding(tok, tok_control):
    prompt = format_chat([{"role": "user", "content": "Hi there"}])
    for t in (tok, tok_control):
        ids = t.encode(prompt, add_bos=True)
        assert ids[:2] == [2, 5]
        assert ids[-len(t.encode("model\n")) - 1] == 5
        assert ids.count(5) == 2 and ids.count(6) == 1


# --------------------------------------------------------------------------------- incremental


def _stream(tokenizer, ids):
    dec = IncrementalDecoder(tokenizer)
    chunks = []
    for i in ids:
        chunks.append(dec.push(i))
        assert len(dec._pending) <= 4  # sliding window stays tiny
    tail = dec.flush()
    return chunks, tail


def _assert_clean_chunk(chunk):
    chunk.encode("utf-8")  # raises on lone surrogates
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in chunk)


def test_incremental_euro_sign(tok):
    euro = [tok.piece_to_id(p) for p in ("<0xE2>", "<0x82>", "<0xAC>")]
    dec = IncrementalDecoder(tok)
    assert [dec.push(i) for i in euro] == ["", "", "€"]
    assert dec.flush() == ""
    # interrupted: the incomplete bytes come out as U+FFFD (one per byte, like decode)
    dec = IncrementalDecoder(tok)
    assert dec.push(euro[0]) == ""
    assert dec.push(euro[1]) == ""
    assert dec.flush() == "\ufffd\ufffd"
    # a non-continuation byte resolves the pending bytes
    dec = IncrementalDecoder(tok)
    a = tok.piece_to_id("a")
    assert dec.push(euro[0]) == ""
    assert dec.push(a) == "\ufffda"
    with pytest.raises(InvalidArgumentError):
        dec.push(400)
    with pytest.raises(InvalidArgumentError):
        dec.push("x")


def test_incremental_releases_hopeless_bytes_at_once(tok):
    """Byte prefixes that can never become a valid character are not held back."""
    b = lambda v: tok.piece_to_id(f"<0x{v:02X}>")  # noqa: E731
    cases = [
        [0xED, 0xA0],  # would be a surrogate
        [0xE0, 0x80],  # overlong
        [0xC0],  # overlong lead
        [0xF4, 0x90],  # above U+10FFFF
        [0xF5],  # invalid lead
        [0x80],  # stray continuation byte
    ]
    for values in cases:
        dec = IncrementalDecoder(tok)
        out = "".join(dec.push(b(v)) for v in values)
        assert out == "\ufffd" * len(values), values
        assert dec.flush() == ""
    # completable prefixes are held: F4 8F could still become U+10FFFF
    dec = IncrementalDecoder(tok)
    assert dec.push(b(0xF4)) + dec.push(b(0x8F)) == ""
    assert dec.push(b(0xBF)) + dec.push(b(0xBF)) == "\U0010ffff"


def test_incremental_text_streams(tok, tok_default):
    rng = random.Random(0)
    for t in (tok, tok_default):
        for text in ROUND_TRIP + ["\n".join(ROUND_TRIP)]:
            ids = [2] + t.encode(text) + [1]
            chunks, tail = _stream(t, ids)
            for c in chunks:
                _assert_clean_chunk(c)
                assert "\ufffd" not in c  # valid text never shows a partial character
            assert "".join(chunks) + tail == t.decode(ids)
            assert tail == ""
        # spaces and controls at the very start (dummy-prefix handling at stream start)
        sp_ = t.piece_to_id("▁")
        for _ in range(50):
            ids = [rng.choice([0, 1, 2, sp_, sp_]) for _ in range(rng.randint(0, 4))]
            ids += t.encode("the cat  sat " + rng.choice(["😀", "x", "日本"]))
            chunks, tail = _stream(t, ids)
            assert "".join(chunks) + tail == t.decode(ids)


def test_incremental_random_ids(tok, tok_default, tok_control):
    rng = random.Random(1234)
    for t in (tok, tok_default, tok_control):
        byte_ids = [t.piece_to_id(f"<0x{v:02X}>") for v in range(256)]
        lead_ids = [byte_ids[v] for v in (0xC3, 0xE2, 0xE6, 0xED, 0xF0, 0xF4, 0xF5)]
        cont_ids = byte_ids[0x80:0xC0]
        for _ in range(300):
            n = rng.randint(1, 40)
            ids = []
            for _ in range(n):
                r = rng.random()
                if r < 0.3:
                    ids.append(rng.randrange(t.vocab_size))
                elif r < 0.5:
                    ids.append(rng.choice(byte_ids))
                elif r < 0.7:
                    ids.append(rng.choice(lead_ids))
                elif r < 0.9:
                    ids.append(rng.choice(cont_ids))
                else:
                    ids.extend(t.encode(rng.choice("😀日€é a\n")))
            chunks, tail = _stream(t, ids)
            for c in chunks + [tail]:
                _assert_clean_chunk(c)
            assert "".join(chunks) + tail == t.decode(ids), ids


def test_incremental_valid_multibyte_never_split(tok):
    rng = random.Random(7)
    alphabet = "aé€日本語😀🚀 \n한글ß"
    for _ in range(100):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30)))
        ids = tok.encode(text)
        chunks, tail = _stream(tok, ids)
        assert "".join(chunks) == text
        assert tail == ""
        for c in chunks:
            assert "\ufffd" not in c


def test_incremental_reuse_after_flush(tok):
    dec = IncrementalDecoder(tok)
    ids = tok.encode("first stream")
    out = "".join(dec.push(i) for i in ids) + dec.flush()
    assert out == "first stream"
    out = "".join(dec.push(i) for i in ids) + dec.flush()
    assert out == "first stream"
    with pytest.raises(InvalidArgumentError):
        IncrementalDecoder("not a tokenizer")


# --------------------------------------------------------------------------------- stop strings


def _run_stop(stops, chunks):
    m = StopMatcher(stops)
    out = []
    hit = False
    for c in chunks:
        text, hit = m.push(c)
        out.append(text)
        if hit:
            break
    if not hit:
        out.append(m.flush())
    return "".join(out), hit, out


def _random_split(rng, text):
    cuts = []
    if len(text) > 1:
        cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(0, 8))))
    parts, prev = [], 0
    for c in cuts + [len(text)]:
        parts.append(text[prev:c])
        prev = c
    if rng.random() < 0.3:  # sprinkle empty pushes
        parts.insert(rng.randrange(len(parts) + 1), "")
    return parts


def test_stop_matcher_basic():
    m = StopMatcher(["<end_of_turn>"])
    assert m.push("Hello <end") == ("Hello ", False)
    assert m.push("_of_turn> more") == ("", True)
    assert m.stopped and m.stop_string == "<end_of_turn>"
    assert m.push("later") == ("", True)
    assert m.flush() == ""

    m = StopMatcher(["\n\n", "User:"])
    assert m.push("abc\n") == ("abc", False)
    assert m.push("x") == ("\nx", False)
    assert m.push("Us") == ("", False)
    assert m.flush() == "Us"
    assert not m.stopped

    m = StopMatcher([])
    assert m.push("anything") == ("anything", False)
    assert m.flush() == ""

    m = StopMatcher("STOP")  # a single string is accepted
    assert m.push("goSTOP") == ("go", True)

    m = StopMatcher(["ab", "b"])  # earliest occurrence wins
    assert m.push("xab") == ("x", True)


def test_stop_matcher_errors():
    with pytest.raises(InvalidArgumentError):
        StopMatcher([""])
    with pytest.raises(InvalidArgumentError):
        StopMatcher(["ok", ""])
    with pytest.raises(InvalidArgumentError):
        StopMatcher([1])
    with pytest.raises(InvalidArgumentError):
        StopMatcher(None)
    with pytest.raises(InvalidArgumentError):
        StopMatcher(["x"]).push(b"bytes")


def test_stop_matcher_never_leaks_random():
    rng = random.Random(42)
    stop_sets = [
        ["<end_of_turn>"],
        ["\n\n", "User:"],
        ["aab", "ab", "abab"],
        ["xyx", "yxy"],
        ["😀😀", "日本"],
        ["aaaa"],
    ]
    alphabet = "abxy \n:U<>_endofturs😀日本"
    for _ in range(1500):
        stops = rng.choice(stop_sets)
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        if rng.random() < 0.5:
            pos = rng.randint(0, len(text))
            text = text[:pos] + rng.choice(stops) + text[pos:]
        positions = [p for p in (text.find(s) for s in stops) if p != -1]
        expected_hit = bool(positions)
        expected = text[: min(positions)] if positions else text
        out, hit, pieces = _run_stop(stops, _random_split(rng, text))
        assert hit == expected_hit, (stops, text)
        assert out == expected, (stops, text)
        for s in stops:
            assert s not in out
        # nothing after the cut was emitted, and emitted text never runs ahead of the input
        assert text.startswith(out)


def test_stop_matcher_holds_back_prefixes_only():
    m = StopMatcher(["<end_of_turn>"])
    # a '<' that cannot start the stop string is released at once
    assert m.push("a <b") == ("a <b", False)
    assert m.push(" <") == (" ", False)
    assert m.push("x") == ("<x", False)


# --------------------------------------------------------------------------------- chat format


def test_format_chat_single_turn():
    assert (
        format_chat([{"role": "user", "content": "Hello"}])
        == "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n"
    )
    assert (
        format_chat([{"role": "user", "content": "Hello"}], add_generation_prompt=False)
        == "<start_of_turn>user\nHello<end_of_turn>\n"
    )


def test_format_chat_multi_turn_and_aliases():
    messages = [
        {"role": "user", "content": "  Hi!\n"},
        {"role": "assistant", "content": "Hello. "},
        {"role": "user", "content": "What is 2+2?"},
    ]
    assert format_chat(messages) == (
        "<start_of_turn>user\nHi!<end_of_turn>\n"
        "<start_of_turn>model\nHello.<end_of_turn>\n"
        "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    messages[1]["role"] = "model"
    assert format_chat(messages, add_generation_prompt=False) == (
        "<start_of_turn>user\nHi!<end_of_turn>\n"
        "<start_of_turn>model\nHello.<end_of_turn>\n"
        "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n"
    )
    assert "<bos>" not in format_chat(messages)


def test_format_chat_system_folded():
    messages = [
        {"role": "system", "content": " Be terse. "},
        {"role": "user", "content": "Why?"},
        {"role": "model", "content": "Because."},
    ]
    assert format_chat(messages) == (
        "<start_of_turn>user\nBe terse.\n\nWhy?<end_of_turn>\n"
        "<start_of_turn>model\nBecause.<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [{"role": "model", "content": "hi"}],
        [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
        [{"role": "user", "content": "a"}, {"role": "model", "content": "b"},
         {"role": "model", "content": "c"}],
        [{"role": "system", "content": "s"}],
        [{"role": "system", "content": "s"}, {"role": "model", "content": "m"}],
        [{"role": "user", "content": "a"}, {"role": "system", "content": "s"}],
        [{"role": "tool", "content": "x"}],
        [{"role": "user"}],
        [{"content": "x"}],
        [{"role": "user", "content": 3}],
        [{"role": "user", "content": ["x"]}],
        ["user: hi"],
        "hello",
        None,
        {"role": "user", "content": "x"},
    ],
)
def test_format_chat_errors(messages):
    with pytest.raises(InvalidArgumentError):
        format_chat(messages)


def test_special_tokens_written_or_left_out(tok, tok_control, tok_default):
    """decode() leaves special tokens out by default and writes them as their pieces with
    skip_special_tokens=False, whether the file types the turn markers USER_DEFINED (tok) or
    CONTROL (tok_control); the text around them is the text of each run, and the streaming
    decoder gives the same text chunk by chunk."""
    for t in (tok, tok_control, tok_default):
        sot, eot, bos = t.piece_to_id("<start_of_turn>"), t.piece_to_id("<end_of_turn>"), t.bos_id
        assert {sot, eot, bos} <= t.special_ids
        runs = ["héllo", " world €", "x y"]
        ids = [bos] + t.encode(runs[0], add_bos=False) + [sot] + \
            t.encode(runs[1], add_bos=False) + [eot] + t.encode(runs[2], add_bos=False)
        texts = [t.decode(t.encode(r, add_bos=False)) for r in runs]
        assert t.decode(ids) == t.decode([i for i in ids if i not in (sot, eot, bos)])
        shown = t.decode(ids, skip_special_tokens=False)
        assert shown.startswith("<bos>") and "<start_of_turn>" in shown and "<end_of_turn>" in shown
        if t is not tok_default:  # no dummy-prefix handling: each run decodes as it does alone
            assert shown == f"<bos>{texts[0]}<start_of_turn>{texts[1]}<end_of_turn>{texts[2]}"
        for skip in (True, False):
            dec = IncrementalDecoder(t, skip_special_tokens=skip)
            streamed = "".join(dec.push(i) for i in ids) + dec.flush()
            assert streamed == t.decode(ids, skip_special_tokens=skip)
