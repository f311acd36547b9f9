"""Build a SentencePiece tokenizer from the tokenizer metadata of a GGUF file (docs/model-math.md,
'Tokenizer').

A GGUF file produced by llama.cpp's converter from a SentencePiece model (``tokenizer.ggml.model
== "llama"``) stores the vocabulary as three parallel arrays -- ``tokenizer.ggml.tokens``,
``tokenizer.ggml.scores`` and ``tokenizer.ggml.token_type`` -- plus the special ids and a few
flags.  :func:`spm_proto_from_gguf` turns that back into a serialized SentencePiece
``ModelProto`` (hand-encoded protobuf, no ``protobuf`` package needed) such that
``Tokenizer.from_bytes(proto).encode(text)`` gives the same ids as llama.cpp's
``llama_tokenize(text, add_special=False, parse_special=True)``.

Public API
----------
``spm_proto_from_gguf(metadata) -> bytes``
    The serialized ``ModelProto``.
``tokenizer_from_gguf(metadata) -> Tokenizer``
    ``Tokenizer.from_bytes(spm_proto_from_gguf(metadata))``.

``metadata`` maps GGUF keys to plain Python values (``str``, ``int``, ``float``, ``bool``,
``list[str]``) and numpy arrays (or lists) for the numeric arrays, e.g. as read by a GGUF reader.

How the GGUF vocabulary maps onto SentencePiece
-----------------------------------------------
* ``model_type = BPE``: llama.cpp's SPM tokenizer and SentencePiece's BPE model run the same
  algorithm (repeatedly merge the adjacent pair whose concatenation is a piece with the highest
  score, ties to the leftmost pair; characters left outside the vocabulary become byte pieces).
* Token types keep their meaning: NORMAL, CONTROL, USER_DEFINED, UNUSED and BYTE map to the
  SentencePiece types of the same name.  SentencePiece needs exactly one UNKNOWN piece, so the
  ``unknown_token_id`` piece is typed UNKNOWN (Gemma's GGUF types ``<unk>`` CONTROL); any other
  UNKNOWN-typed token becomes CONTROL (llama.cpp treats both alike).  The BOS/EOS/PAD pieces are
  typed CONTROL, which SentencePiece requires for ``bos_id()`` & co.
* USER_DEFINED tokens are matched as whole pieces wherever they occur in the text, by llama.cpp
  and by SentencePiece alike.  llama.cpp's converter writes their spaces as ``' '`` (it
  "pre-normalizes" ``'▁'``); SentencePiece matches user-defined pieces after whitespace
  escaping, so their spaces are turned back into ``'▁'`` here (Gemma's runs of spaces).
* CONTROL tokens stay CONTROL: they decode to ``''``, and ``Tokenizer.encode`` takes the
  tag-like ones (``<start_of_turn>``, ``<unused0>`` ...) from text as single ids, as llama.cpp
  does with ``parse_special=True``.  ``<bos>``, ``<eos>``, ``<pad>``, ``<unk>`` and ``<mask>``
  written in text stay plain text (``Tokenizer`` policy; llama.cpp with ``parse_special=True``
  would turn them into their ids).
* ``byte_fallback`` is on when the vocabulary has all 256 ``<0xXX>`` BYTE pieces.
* Normalizer: identity (no character map), spaces escaped to ``'▁'``, whitespace runs kept
  (``remove_extra_whitespaces = false``: SentencePiece's default would collapse them and also
  strip a leading space when decoding), and ``add_dummy_prefix`` = ``tokenizer.ggml.
  add_space_prefix`` (llama.cpp's default for SentencePiece vocabularies is true; Gemma writes
  false).

Other tokenizer families (``"gpt2"`` byte-level BPE with ``tokenizer.ggml.merges``, ``"bert"``,
``"t5"`` ...) raise :class:`UnsupportedModelError`.
"""

from __future__ import annotations

import math
import numbers
import re
import struct
from collections.abc import Mapping

from .errors import InvalidArgumentError, ModelFormatError, TokenizerError, UnsupportedModelError
from .tokenizer import Tokenizer

__all__ = ["spm_proto_from_gguf", "tokenizer_from_gguf"]

# GGUF metadata keys (llama.cpp gguf-py ``Keys.Tokenizer``).
KEY_MODEL = "tokenizer.ggml.model"
KEY_TOKENS = "tokenizer.ggml.tokens"
KEY_SCORES = "tokenizer.ggml.scores"
KEY_TOKEN_TYPE = "tokenizer.ggml.token_type"
KEY_BOS_ID = "tokenizer.ggml.bos_token_id"
KEY_EOS_ID = "tokenizer.ggml.eos_token_id"
KEY_UNK_ID = "tokenizer.ggml.unknown_token_id"
KEY_PAD_ID = "tokenizer.ggml.padding_token_id"
KEY_ADD_SPACE_PREFIX = "tokenizer.ggml.add_space_prefix"

# GGUF token types (llama.cpp ``llama_token_type``); SentencePiece's piece types use the same
# numbers for 1..6.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
_GGUF_TYPE_NAMES = {0: "UNDEFINED", 1: "NORMAL", 2: "UNKNOWN", 3: "CONTROL", 4: "USER_DEFINED",
                    5: "UNUSED", 6: "BYTE"}
# SentencePiece keeps NORMAL / USER_DEFINED / UNUSED pieces in one map and the other types in a
# second one; a piece string may occur only once within each map.
_SPM_REGULAR_TYPES = frozenset({NORMAL, USER_DEFINED, UNUSED})

# Defaults llama.cpp uses for a SentencePiece ("llama") vocabulary without these keys.
_DEFAULT_BOS, _DEFAULT_EOS, _DEFAULT_UNK = 1, 2, 0
_DEFAULT_ADD_SPACE_PREFIX = True

_SPACE_SYMBOL = "\u2581"
_BYTE_PIECE = re.compile(r"<0x([0-9A-F]{2})>")

_OTHER_TOKENIZERS = {
    "gpt2": "GPT-2 style byte-level BPE (tokenizer.ggml.merges) is not supported yet; only "
            "SentencePiece vocabularies (tokenizer.ggml.model = 'llama') are",
    "bert": "WordPiece (BERT) vocabularies are not supported",
    "t5": "SentencePiece unigram (T5 / 'ugm') vocabularies are not supported yet",
    "rwkv": "RWKV vocabularies are not supported",
    "plamo2": "PLaMo-2 vocabularies are not supported",
}

# SentencePiece ModelProto field numbers (sentencepiece_model.proto).
_MP_PIECES, _MP_TRAINER_SPEC, _MP_NORMALIZER_SPEC = 1, 2, 3
_SP_PIECE, _SP_SCORE, _SP_TYPE = 1, 2, 3
_TS_MODEL_TYPE, _TS_VOCAB_SIZE = 3, 4
_TS_TREAT_WHITESPACE_AS_SUFFIX = 24
_TS_BYTE_FALLBACK = 35
_TS_UNK_ID, _TS_BOS_ID, _TS_EOS_ID, _TS_PAD_ID = 40, 41, 42, 43
_TS_UNK_PIECE, _TS_BOS_PIECE, _TS_EOS_PIECE, _TS_PAD_PIECE = 45, 46, 47, 48
_NS_NAME, _NS_ADD_DUMMY_PREFIX, _NS_REMOVE_EXTRA_WHITESPACES, _NS_ESCAPE_WHITESPACES = 1, 3, 4, 5
_MODEL_TYPE_BPE = 2

# Protobuf wire types.
_WT_VARINT, _WT_LEN, _WT_FIXED32 = 0, 2, 5


# ---------------------------------------------------------------------------------------------
# A minimal protobuf writer


def _varint(value: int) -> bytes:
    """Base-128 varint; negative values as 64-bit two's complement (protobuf ``int32`` rule)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _int_field(field: int, value: int) -> bytes:
    return _key(field, _WT_VARINT) + _varint(int(value))


def _bool_field(field: int, value: bool) -> bytes:
    return _key(field, _WT_VARINT) + (b"\x01" if value else b"\x00")


def _bytes_field(field: int, payload: bytes) -> bytes:
    return _key(field, _WT_LEN) + _varint(len(payload)) + payload


def _str_field(field: int, text: str) -> bytes:
    return _bytes_field(field, text.encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# Reading and checking the metadata


def _get_str(metadata: Mapping, key: str) -> str | None:
    value = metadata.get(key)
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise ModelFormatError(f"GGUF key {key} is not valid UTF-8") from None
    if not isinstance(value, str):
        raise ModelFormatError(f"GGUF key {key} must be a string, got {type(value).__name__}")
    return value


def _get_bool(metadata: Mapping, key: str, default: bool) -> bool:
    value = metadata.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise ModelFormatError(f"GGUF key {key} must be a bool, got {type(value).__name__}")


def _get_token_id(metadata: Mapping, key: str, default: int | None, n_vocab: int) -> int | None:
    """A special-token id, or None when absent (or stored as -1 / 0xFFFFFFFF, "no token")."""
    value = metadata.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or type(value).__name__ == "bool_" or not isinstance(
            value, numbers.Integral):
        raise ModelFormatError(f"GGUF key {key} must be an integer, got {type(value).__name__}")
    value = int(value)
    if value in (-1, 0xFFFFFFFF):
        return None
    if not 0 <= value < n_vocab:
        raise ModelFormatError(
            f"GGUF key {key} = {value} is outside the vocabulary [0, {n_vocab})")
    return value


def _get_tokens(metadata: Mapping) -> list[str]:
    tokens = metadata.get(KEY_TOKENS)
    if tokens is None:
        raise ModelFormatError(f"GGUF metadata has {KEY_MODEL} but no {KEY_TOKENS}")
    if isinstance(tokens, (str, bytes, bytearray, Mapping)) or not hasattr(tokens, "__iter__"):
        raise ModelFormatError(f"GGUF key {KEY_TOKENS} must be a list of strings, "
                               f"got {type(tokens).__name__}")
    out: list[str] = []
    for i, token in enumerate(tokens):
        if isinstance(token, (bytes, bytearray)):
            try:
                token = bytes(token).decode("utf-8")
            except UnicodeDecodeError:
                raise ModelFormatError(f"{KEY_TOKENS}[{i}] is not valid UTF-8") from None
        elif not isinstance(token, str):
            raise ModelFormatError(
                f"{KEY_TOKENS}[{i}] must be a string, got {type(token).__name__}")
        out.append(token)
    if not out:
        raise ModelFormatError(f"GGUF key {KEY_TOKENS} is empty")
    return out


def _as_number_list(metadata: Mapping, key: str, n_vocab: int, integral: bool) -> list | None:
    value = metadata.get(key)
    if value is None:
        return None
    kind = "integers" if integral else "numbers"
    dtype = getattr(value, "dtype", None)
    if dtype is not None:  # numpy array
        if getattr(value, "ndim", 1) != 1:
            raise ModelFormatError(f"GGUF key {key} must be one-dimensional, "
                                   f"got shape {tuple(value.shape)}")
        allowed = "iu" if integral else "iuf"
        if dtype.kind not in allowed:
            raise ModelFormatError(f"GGUF key {key} must hold {kind}, got dtype {dtype}")
        items = value.tolist()
    elif isinstance(value, (list, tuple)):
        items = list(value)
        base = numbers.Integral if integral else numbers.Real
        for i, item in enumerate(items):
            if isinstance(item, bool) or not isinstance(item, base):
                raise ModelFormatError(
                    f"{key}[{i}] must be one of the {kind}, got {type(item).__name__}")
    else:
        raise ModelFormatError(f"GGUF key {key} must be an array of {kind}, "
                               f"got {type(value).__name__}")
    if len(items) != n_vocab:
        raise ModelFormatError(f"GGUF key {key} has {len(items)} entries but {KEY_TOKENS} has "
                               f"{n_vocab}")
    return items


def _absent_piece(base: str, seen: Mapping) -> str:
    """A piece string that is not in the vocabulary (``seen`` keys are (regular?, piece))."""
    candidate, k = base, 0
    while (True, candidate) in seen or (False, candidate) in seen:
        k += 1
        candidate = f"{base[:-1]} {k}>"
    return candidate


# ---------------------------------------------------------------------------------------------
# Public API


def spm_proto_from_gguf(metadata: Mapping, default_bos: int | None = None,
                        default_eos: int | None = None) -> bytes:
    """Serialized SentencePiece ``ModelProto`` for the SentencePiece vocabulary in ``metadata``.

    Raises :class:`UnsupportedModelError` for tokenizer families other than SentencePiece
    (``tokenizer.ggml.model`` other than ``"llama"``), :class:`TokenizerError` when the metadata
    has no tokenizer at all, and :class:`ModelFormatError` for inconsistent metadata (arrays of
    different lengths or wrong element types, special ids outside the vocabulary, empty or
    duplicate pieces, malformed or incomplete byte pieces).
    """
    if not isinstance(metadata, Mapping):
        raise InvalidArgumentError(
            f"metadata must be a mapping of GGUF keys, got {type(metadata).__name__}")
    model = _get_str(metadata, KEY_MODEL)
    if model is None or model in ("none", "no_vocab"):
        raise TokenizerError(f"the GGUF metadata has no tokenizer ({KEY_MODEL} is {model!r})")
    if model != "llama":
        reason = _OTHER_TOKENIZERS.get(model, f"unknown tokenizer family {model!r}")
        raise UnsupportedModelError(f"GGUF {KEY_MODEL} = {model!r}: {reason}")

    tokens = _get_tokens(metadata)
    n = len(tokens)
    scores = _as_number_list(metadata, KEY_SCORES, n, integral=False)
    types = _as_number_list(metadata, KEY_TOKEN_TYPE, n, integral=True)
    if scores is None:  # llama.cpp: score 0
        scores = [0.0] * n
    if types is None:  # llama.cpp: NORMAL, byte pieces are still found by their text
        types = [BYTE if _BYTE_PIECE.fullmatch(t) else NORMAL for t in tokens]
        if sum(t == BYTE for t in types) != 256:
            types = [NORMAL] * n
    for i, t in enumerate(types):
        if t == 0:  # UNDEFINED: llama.cpp gives it no attributes; closest is NORMAL
            types[i] = NORMAL
        elif t not in _GGUF_TYPE_NAMES:
            raise ModelFormatError(f"{KEY_TOKEN_TYPE}[{i}] = {t} is not a GGUF token type")
    for i, s in enumerate(scores):
        if math.isnan(s):
            raise ModelFormatError(f"{KEY_SCORES}[{i}] is NaN")

    # without the keys: the model family's ids when the caller knows them (Gemma: <bos> 2,
    # <eos> 1, as its config defaults), else llama.cpp's SentencePiece defaults
    dbos = _DEFAULT_BOS if default_bos is None else default_bos
    deos = _DEFAULT_EOS if default_eos is None else default_eos
    bos = _get_token_id(metadata, KEY_BOS_ID, dbos if 0 <= dbos < n else None, n)
    eos = _get_token_id(metadata, KEY_EOS_ID, deos if 0 <= deos < n else None, n)
    unk = _get_token_id(metadata, KEY_UNK_ID, None, n)
    pad = _get_token_id(metadata, KEY_PAD_ID, None, n)
    add_space_prefix = _get_bool(metadata, KEY_ADD_SPACE_PREFIX, _DEFAULT_ADD_SPACE_PREFIX)

    # --- piece types as SentencePiece needs them
    if unk is None:
        # No key: the first UNKNOWN-typed token, else llama.cpp's default id.
        unk = next((i for i, t in enumerate(types) if t == UNKNOWN), _DEFAULT_UNK)
    spm_types = list(types)
    for i, t in enumerate(spm_types):
        if t == UNKNOWN and i != unk:
            spm_types[i] = CONTROL
    spm_types[unk] = UNKNOWN
    specials = {"bos": bos, "eos": eos, "pad": pad}
    for name, i in specials.items():
        if i is not None and i != unk:
            spm_types[i] = CONTROL
        elif i is not None:
            specials[name] = None  # shares the unknown piece: SentencePiece reports -1

    # --- piece strings
    pieces = list(tokens)
    for i, piece in enumerate(pieces):
        if not piece:
            raise ModelFormatError(f"{KEY_TOKENS}[{i}] is empty (SentencePiece pieces must not "
                                   "be empty)")
        if spm_types[i] == USER_DEFINED and " " in piece:
            pieces[i] = piece.replace(" ", _SPACE_SYMBOL)
    byte_ids = [i for i, t in enumerate(spm_types) if t == BYTE]
    bytes_seen = set()
    for i in byte_ids:
        m = _BYTE_PIECE.fullmatch(pieces[i])
        if m is None:
            raise ModelFormatError(f"{KEY_TOKENS}[{i}] = {pieces[i]!r} has type BYTE but is not "
                                   "of the form <0xXX>")
        bytes_seen.add(int(m.group(1), 16))
    if byte_ids and len(bytes_seen) != 256:
        raise ModelFormatError(f"the GGUF vocabulary has {len(bytes_seen)} distinct byte pieces; "
                               "byte fallback needs all 256")
    byte_fallback = bool(byte_ids)

    seen: dict[tuple[bool, str], int] = {}
    for i, piece in enumerate(pieces):
        key = (spm_types[i] in _SPM_REGULAR_TYPES, piece)
        j = seen.setdefault(key, i)
        if j != i:
            raise ModelFormatError(
                f"{KEY_TOKENS}[{j}] and [{i}] are both {piece!r}; a SentencePiece model cannot "
                "hold the same piece twice")

    # --- ModelProto
    # Hot loop over ~256k pieces: fields written inline (same encoding as the helpers above).
    out = bytearray()
    piece_key, score_key = _key(_SP_PIECE, _WT_LEN), _key(_SP_SCORE, _WT_FIXED32)
    pieces_key = _key(_MP_PIECES, _WT_LEN)
    type_suffix = {t: b"" if t == NORMAL else _int_field(_SP_TYPE, t) for t in set(spm_types)}
    try:
        packed_scores = struct.pack(f"<{n}f", *scores)
    except (OverflowError, struct.error) as exc:
        raise ModelFormatError(f"GGUF key {KEY_SCORES} holds a value that is not a float32: "
                               f"{exc}") from None
    for k, (piece, t) in enumerate(zip(pieces, spm_types)):
        data = piece.encode("utf-8")
        size = len(data)
        body = b"".join((piece_key, bytes((size,)) if size < 0x80 else _varint(size), data,
                         score_key, packed_scores[4 * k:4 * k + 4], type_suffix[t]))
        size = len(body)
        out += pieces_key
        out += bytes((size,)) if size < 0x80 else _varint(size)
        out += body

    trainer = bytearray()
    trainer += _int_field(_TS_MODEL_TYPE, _MODEL_TYPE_BPE)
    trainer += _int_field(_TS_VOCAB_SIZE, n)
    trainer += _bool_field(_TS_TREAT_WHITESPACE_AS_SUFFIX, False)
    trainer += _bool_field(_TS_BYTE_FALLBACK, byte_fallback)
    trainer += _int_field(_TS_UNK_ID, unk)
    trainer += _str_field(_TS_UNK_PIECE, pieces[unk])
    for name, id_field, piece_field in (("bos", _TS_BOS_ID, _TS_BOS_PIECE),
                                        ("eos", _TS_EOS_ID, _TS_EOS_PIECE),
                                        ("pad", _TS_PAD_ID, _TS_PAD_PIECE)):
        i = specials[name]
        trainer += _int_field(id_field, -1 if i is None else i)
        # SentencePiece finds bos_id() & co. by these piece strings, not by the ids.  Without
        # the token, name a piece that does not exist: an empty or missing name would mean the
        # default ("<s>", "</s>", "<pad>"), which may be an unrelated piece of the vocabulary.
        trainer += _str_field(piece_field, pieces[i] if i is not None else _absent_piece(
            f"<no {name}>", seen))
    out += _bytes_field(_MP_TRAINER_SPEC, bytes(trainer))

    normalizer = (_str_field(_NS_NAME, "identity")
                  + _bool_field(_NS_ADD_DUMMY_PREFIX, add_space_prefix)
                  + _bool_field(_NS_REMOVE_EXTRA_WHITESPACES, False)
                  + _bool_field(_NS_ESCAPE_WHITESPACES, True))
    out += _bytes_field(_MP_NORMALIZER_SPEC, normalizer)
    return bytes(out)


def tokenizer_from_gguf(metadata: Mapping, default_bos: int | None = None,
                        default_eos: int | None = None) -> Tokenizer:
    """A :class:`~gemma_native.tokenizer.Tokenizer` for the SentencePiece vocabulary in
    ``metadata`` (see :func:`spm_proto_from_gguf` for the accepted metadata and the errors).
    ``default_bos`` / ``default_eos``: the ids to use when the metadata names none (the
    model's config defaults, so that the model and its tokenizer agree)."""
    return Tokenizer.from_bytes(spm_proto_from_gguf(metadata, default_bos, default_eos))
