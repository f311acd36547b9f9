"""SentencePiece tokenizer, streaming helpers and the Gemma chat template (docs/model-math.md,
'Tokenizer' and 'Chat template and stop tokens').

Public API
----------
``Tokenizer``
    Wraps a SentencePiece model (``from_file`` / ``from_bytes``); ``encode``, ``decode``,
    piece/id look-ups and the special ids.
``IncrementalDecoder``
    Turns a stream of token ids into text chunks that never split a UTF-8 character.
``StopMatcher``
    Cuts a text stream at the first occurrence of any stop string, holding back text that could
    still become a stop string.
``format_chat``
    Renders ``[{"role": ..., "content": ...}, ...]`` in Gemma's turn format.

Encoding adds no dummy prefix of its own: whether a leading ``▁`` is inserted is decided by the
model's normaliser spec (Gemma's has ``add_dummy_prefix = false``).
"""

from __future__ import annotations

import operator
import os
import re
from collections.abc import Iterable, Mapping, Sequence

from .errors import (
    InvalidArgumentError,
    ModelFormatError,
    ModelNotFoundError,
    TokenizerError,
)

__all__ = [
    "START_OF_TURN",
    "END_OF_TURN",
    "Tokenizer",
    "IncrementalDecoder",
    "StopMatcher",
    "format_chat",
]

START_OF_TURN = "<start_of_turn>"
# Pieces of the Gemma vocabularies that are not text but are typed USER_DEFINED (not CONTROL)
# in some files, so SentencePiece would decode them literally: the turn markers (Gemma 1/2
# tokenizer.model files), the image / audio markers (Gemma 3, 3n), and <unused0>, <unused1> ...
SPECIAL_MARKERS = ("<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>",
                   "<image_soft_token>", "[multimodal]", "<start_of_audio>", "<end_of_audio>",
                   "<audio_soft_token>", "<mask>")
END_OF_TURN = "<end_of_turn>"

# Control pieces with these names are never produced from text (as in Gemma), even though
# they look like ``<...>``.
_NEVER_FROM_TEXT = frozenset({"<bos>", "<eos>", "<pad>", "<unk>", "<mask>", "<s>", "</s>"})
_TAG_LIKE = re.compile(r"<[^<>\s]+>")
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _import_sentencepiece():
    try:
        import sentencepiece
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise TokenizerError(
            "the 'sentencepiece' package is required for text tokenization "
            "(pip install sentencepiece)"
        ) from exc
    return sentencepiece


def _as_token_id(value, where: str = "token id") -> int:
    """``value`` as a Python int; bools, floats, strings ... raise InvalidArgumentError."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        raise InvalidArgumentError(f"{where} must be an int, got {type(value).__name__}")
    try:
        return operator.index(value)
    except TypeError:
        raise InvalidArgumentError(
            f"{where} must be an int, got {type(value).__name__}"
        ) from None


class Tokenizer:
    """A SentencePiece model (Gemma's ``tokenizer.model`` or any other SentencePiece model).

    Construct with :meth:`from_file` or :meth:`from_bytes`.

    Look-up conventions: :meth:`piece_to_id` returns ``None`` for a piece that is not in the
    vocabulary; the special-id properties return ``-1`` when the model defines no such token
    (typically ``pad_id``).
    """

    def __init__(self, processor, source: str = "<bytes>"):
        # Private: use from_file / from_bytes.
        self._sp = processor
        self._source = source
        self._vocab_size = int(processor.GetPieceSize())
        if self._vocab_size <= 0:
            raise ModelFormatError(f"SentencePiece model {source} has an empty vocabulary")
        self._text_specials: dict[str, int] | None = None  # built lazily by encode()
        self._special_ids: frozenset | None = None  # built lazily by special_ids
        self._text_special_re: re.Pattern | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Tokenizer":
        """Load a SentencePiece ``.model`` file.

        ``path`` may also be a model folder holding ``tokenizer.model``.  A missing file raises
        :class:`ModelNotFoundError`; a file that is not a SentencePiece model raises
        :class:`ModelFormatError`.
        """
        try:
            path = os.fspath(path)
        except TypeError:
            raise InvalidArgumentError(
                f"tokenizer path must be a str or os.PathLike, got {type(path).__name__}"
            ) from None
        if os.path.isdir(path):
            candidate = os.path.join(path, "tokenizer.model")
            if not os.path.isfile(candidate):
                raise ModelNotFoundError(f"no tokenizer.model in folder {path}")
            path = candidate
        if not os.path.exists(path):
            raise ModelNotFoundError(f"tokenizer file not found: {path}")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise ModelNotFoundError(f"cannot read tokenizer file {path}: {exc}") from exc
        return cls._load(data, path)

    @classmethod
    def from_bytes(cls, serialized_proto: bytes) -> "Tokenizer":
        """Load a serialized SentencePiece ``ModelProto`` (the content of a ``.model`` file)."""
        if not isinstance(serialized_proto, (bytes, bytearray, memoryview)):
            raise InvalidArgumentError(
                f"serialized_proto must be bytes, got {type(serialized_proto).__name__}"
            )
        return cls._load(bytes(serialized_proto), "<bytes>")

    @classmethod
    def _load(cls, data: bytes, source: str) -> "Tokenizer":
        spm = _import_sentencepiece()
        if not data:
            raise ModelFormatError(f"SentencePiece model {source} is empty")
        processor = spm.SentencePieceProcessor()
        try:
            ok = processor.LoadFromSerializedProto(data)
        except Exception as exc:  # sentencepiece raises RuntimeError / OSError
            raise ModelFormatError(
                f"cannot parse SentencePiece model {source}: {exc}".rstrip()
            ) from exc
        if ok is False:
            raise ModelFormatError(f"cannot parse SentencePiece model {source}")
        return cls(processor, source)

    def serialized_proto(self) -> bytes:
        """The serialized ``ModelProto`` (e.g. to hand the tokenizer to the native engine)."""
        return bytes(self._sp.serialized_model_proto())

    # ------------------------------------------------------------------ properties
    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def bos_id(self) -> int:
        return int(self._sp.bos_id())

    @property
    def eos_id(self) -> int:
        return int(self._sp.eos_id())

    @property
    def pad_id(self) -> int:
        """Id of the padding piece, or -1 if the model has none."""
        return int(self._sp.pad_id())

    @property
    def unk_id(self) -> int:
        return int(self._sp.unk_id())

    def __len__(self) -> int:
        return self._vocab_size

    def __repr__(self) -> str:
        return (
            f"Tokenizer(source={self._source!r}, vocab_size={self._vocab_size}, "
            f"bos_id={self.bos_id}, eos_id={self.eos_id}, pad_id={self.pad_id}, "
            f"unk_id={self.unk_id})"
        )

    # ------------------------------------------------------------------ pieces
    def _check_id(self, token_id) -> int:
        i = _as_token_id(token_id)
        if not 0 <= i < self._vocab_size:
            raise InvalidArgumentError(
                f"token id {i} is outside the vocabulary [0, {self._vocab_size})"
            )
        return i

    def id_to_piece(self, token_id: int) -> str:
        """The piece string of ``token_id`` (e.g. ``'▁the'``, ``'<0x0A>'``, ``'<eos>'``)."""
        return self._sp.IdToPiece(self._check_id(token_id))

    def piece_to_id(self, piece: str) -> int | None:
        """The id of ``piece``, or ``None`` if the vocabulary has no such piece."""
        if not isinstance(piece, str):
            raise InvalidArgumentError(f"piece must be a str, got {type(piece).__name__}")
        i = int(self._sp.PieceToId(piece))
        # SentencePiece answers unk_id for unknown pieces.
        if i < 0 or (i == self.unk_id and self._sp.IdToPiece(i) != piece):
            return None
        return i

    def is_control(self, token_id: int) -> bool:
        """True for CONTROL pieces (``<bos>``, ``<eos>``, ``<pad>`` ...): they decode to ''."""
        return bool(self._sp.IsControl(self._check_id(token_id)))

    @property
    def special_ids(self) -> frozenset:
        """Ids that are not text: every CONTROL piece (``<bos>``, ``<eos>``, ``<start_of_turn>``,
        ``<unused0>`` ...) and the Gemma markers some files type as ordinary (USER_DEFINED)
        pieces: the turn markers, ``<start_of_image>``, ``<end_of_image>``,
        ``<image_soft_token>``, ``[multimodal]``, the audio ones, ``<mask>``, ``<unusedN>``.
        Other USER_DEFINED pieces (runs of spaces, tabs, newlines; HTML tags in Gemma 1/2) are
        text and are not included."""
        if self._special_ids is None:
            ids = {i for i in range(self._vocab_size) if self._sp.IsControl(i)}
            for piece in SPECIAL_MARKERS:
                i = self.piece_to_id(piece)
                if i is not None:
                    ids.add(i)
            n = 0
            while (i := self.piece_to_id(f"<unused{n}>")) is not None:
                ids.add(i)
                n += 1
            self._special_ids = frozenset(ids)
        return self._special_ids

    def is_byte(self, token_id: int) -> bool:
        """True for byte-fallback pieces ``<0x00>`` ... ``<0xFF>``."""
        return bool(self._sp.IsByte(self._check_id(token_id)))

    def is_unknown(self, token_id: int) -> bool:
        return bool(self._sp.IsUnknown(self._check_id(token_id)))

    def _byte_value(self, token_id: int) -> int | None:
        """The byte a byte-fallback piece stands for, else None (``token_id`` pre-checked)."""
        if not self._sp.IsByte(token_id):
            return None
        m = _BYTE_PIECE.fullmatch(self._sp.IdToPiece(token_id))
        return int(m.group(1), 16) if m else None

    # ------------------------------------------------------------------ encode
    def _specials_from_text(self) -> tuple[dict[str, int], re.Pattern | None]:
        """CONTROL pieces that look like ``<...>`` and may be written literally in text.

        SentencePiece matches USER_DEFINED pieces (Gemma's turn markers) in text itself but never
        produces CONTROL pieces; for models that store e.g. ``<start_of_turn>`` as CONTROL we
        split the text on those strings ourselves.  ``<bos>``, ``<eos>``, ``<pad>``, ``<unk>``,
        ``<mask>`` (and the special ids) are never taken from text.
        """
        if self._text_specials is None:
            excluded_ids = {self.bos_id, self.eos_id, self.pad_id, self.unk_id}
            specials: dict[str, int] = {}
            sp = self._sp
            for i in range(self._vocab_size):
                if not sp.IsControl(i) or i in excluded_ids:
                    continue
                piece = sp.IdToPiece(i)
                if piece in _NEVER_FROM_TEXT or not _TAG_LIKE.fullmatch(piece):
                    continue
                specials.setdefault(piece, i)
            pattern = None
            if specials:
                # Longest first so that a special that is a prefix of another cannot win.
                alternatives = sorted(specials, key=len, reverse=True)
                pattern = re.compile("|".join(re.escape(s) for s in alternatives))
            self._text_special_re = pattern
            self._text_specials = specials
        return self._text_specials, self._text_special_re

    def _encode_plain(self, text: str) -> list[int]:
        if not text:
            return []
        try:
            return list(self._sp.EncodeAsIds(text))
        except Exception as exc:
            raise TokenizerError(f"SentencePiece failed to encode text: {exc}") from exc

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        """Token ids of ``text``; with ``add_bos`` the BOS id is prepended once.

        Control-token strings such as ``<start_of_turn>`` written in ``text`` become their single
        id whether the model stores them as USER_DEFINED pieces (Gemma) or as CONTROL pieces.
        ``<bos>``/``<eos>``/``<pad>``/``<unk>``/``<mask>`` in text are encoded as ordinary text.
        Note: the text between two such control strings is encoded as a separate SentencePiece
        call, so a model with a dummy prefix adds it to each segment.
        """
        if not isinstance(text, str):
            raise InvalidArgumentError(f"text must be a str, got {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:  # lone surrogates ("\ud800") have no UTF-8 form
            raise InvalidArgumentError(
                f"text is not valid Unicode: {text[e.start:e.end]!r} at index {e.start} "
                f"(a lone surrogate) cannot be encoded as UTF-8") from None
        ids: list[int] = []
        if add_bos:
            if self.bos_id < 0:
                raise TokenizerError("add_bos requested but the tokenizer has no BOS token")
            ids.append(self.bos_id)
        specials, pattern = self._specials_from_text()
        if pattern is None or "<" not in text:
            ids.extend(self._encode_plain(text))
            return ids
        pos = 0
        for m in pattern.finditer(text):
            ids.extend(self._encode_plain(text[pos : m.start()]))
            ids.append(specials[m.group(0)])
            pos = m.end()
        ids.extend(self._encode_plain(text[pos:]))
        return ids

    # ------------------------------------------------------------------ decode
    def _check_ids(self, ids) -> list[int]:
        if isinstance(ids, (str, bytes, bytearray)):
            raise InvalidArgumentError(
                f"ids must be a sequence of ints, got {type(ids).__name__}"
            )
        if isinstance(ids, int) and not isinstance(ids, bool):
            ids = [ids]
        dtype = getattr(ids, "dtype", None)
        if dtype is not None and getattr(ids, "ndim", 1) != 1:
            if getattr(ids, "ndim", 1) == 0:
                ids = ids.reshape(1)
            else:
                raise InvalidArgumentError(
                    f"ids must be one-dimensional, got shape {tuple(ids.shape)}"
                )
        if dtype is not None and getattr(dtype, "kind", "") in ("i", "u"):
            # numpy-like fast path
            if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= self._vocab_size):
                bad = next(int(v) for v in ids if not 0 <= int(v) < self._vocab_size)
                raise InvalidArgumentError(
                    f"token id {bad} is outside the vocabulary [0, {self._vocab_size})"
                )
            return [int(v) for v in ids.tolist()]
        try:
            iterator = iter(ids)
        except TypeError:
            raise InvalidArgumentError(
                f"ids must be a sequence of ints, got {type(ids).__name__}"
            ) from None
        n = self._vocab_size
        out: list[int] = []
        for v in iterator:
            i = _as_token_id(v)
            if not 0 <= i < n:
                raise InvalidArgumentError(
                    f"token id {i} is outside the vocabulary [0, {n})"
                )
            out.append(i)
        return out

    def _decode_checked(self, ids: list[int]) -> str:
        if not ids:
            return ""
        try:
            return self._sp.DecodeIds(ids)
        except Exception as exc:
            raise TokenizerError(f"SentencePiece failed to decode ids: {exc}") from exc

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of ``ids`` (a sequence of ints, a 1-D integer array, or a single int).

        Special tokens (:attr:`special_ids`: ``<bos>``, ``<eos>``, ``<end_of_turn>``,
        ``<start_of_image>`` ...) are left out, or with ``skip_special_tokens=False`` written as
        their piece text; byte-fallback pieces are re-assembled into UTF-8 (invalid bytes become
        U+FFFD, one per byte).
        """
        ids = self._check_ids(ids)
        if skip_special_tokens:
            special = self.special_ids
            return self._decode_checked([i for i in ids if i not in special])
        dec = IncrementalDecoder(self, skip_special_tokens=False)
        return "".join(dec.push(i) for i in ids) + dec.flush()


# ---------------------------------------------------------------------------------------------
# Streaming decode


def _utf8_need(lead: int) -> int:
    """Sequence length SentencePiece's UTF-8 decoder expects for ``lead`` (0 = invalid lead)."""
    if lead < 0x80:
        return 1
    if 0xC0 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF7:
        return 4
    return 0


_UTF8_MIN = {2: 0x80, 3: 0x800, 4: 0x10000}
_LEAD_MASK = {2: 0x1F, 3: 0x0F, 4: 0x07}


def _utf8_cp_range(seq: Sequence[int], need: int) -> tuple[int, int] | None:
    """Code-point range reachable by completing ``seq`` to ``need`` bytes (None if a byte after
    the lead is not a continuation byte)."""
    cp = seq[0] & _LEAD_MASK[need]
    for b in seq[1:]:
        if not 0x80 <= b <= 0xBF:
            return None
        cp = (cp << 6) | (b & 0x3F)
    missing = need - len(seq)
    lo = cp << (6 * missing)
    hi = lo | ((1 << (6 * missing)) - 1)
    return lo, hi


def _range_has_valid_cp(lo: int, hi: int, need: int) -> bool:
    lo = max(lo, _UTF8_MIN[need])
    hi = min(hi, 0x10FFFF)
    if lo > hi:
        return False
    # Valid code points exclude the surrogates D800-DFFF.
    return lo < 0xD800 or hi > 0xDFFF


def _incomplete_utf8_start(data: Sequence[int]) -> int | None:
    """Index where ``data`` ends in an unfinished but still completable UTF-8 character.

    Mirrors SentencePiece's byte-piece decoding: it scans a run of byte pieces from the start,
    taking a whole valid character at a time or marking a single byte invalid (U+FFFD).
    Returns None when the decoding of ``data`` cannot change however the run continues.
    """
    i, n = 0, len(data)
    while i < n:
        need = _utf8_need(data[i])
        if need <= 1:
            i += 1
            continue
        if i + need <= n:
            rng = _utf8_cp_range(data[i : i + need], need)
            i += need if rng is not None and _range_has_valid_cp(*rng, need) else 1
            continue
        rng = _utf8_cp_range(data[i:], need)
        if rng is not None and _range_has_valid_cp(*rng, need):
            return i
        i += 1
    return None


class IncrementalDecoder:
    """Streaming detokenizer: ``push`` one id at a time, get the newly completed text.

    ``"".join(push(i) for i in ids) + flush() == tokenizer.decode(ids)``.  A chunk never ends
    inside a UTF-8 character: byte-fallback pieces ``<0xE2><0x82><0xAC>`` yield '' , '' , '€'.
    Special tokens (``Tokenizer.special_ids``) give '' or, with ``skip_special_tokens=False``,
    the text completed before them followed by their piece (an unfinished character before
    one becomes U+FFFD per byte).

    Work per token is O(1): only the ids since the last character boundary are decoded, behind a
    fixed one-piece "anchor" that stands for the text already emitted (so SentencePiece's
    start-of-text whitespace handling only applies at the real start of the stream).
    ``flush()`` ends the stream (unfinished bytes become U+FFFD) and resets the decoder.
    """

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = True):
        if not isinstance(tokenizer, Tokenizer):
            raise InvalidArgumentError(
                f"IncrementalDecoder needs a Tokenizer, got {type(tokenizer).__name__}"
            )
        self._tok = tokenizer
        self._special = tokenizer.special_ids
        self._skip_special = bool(skip_special_tokens)
        self._anchor_id, self._anchor_text = self._find_anchor(tokenizer)
        self._history: list[int] = []  # only used if the model has no usable anchor piece
        self._emitted_len = 0  # idem
        self.reset()

    @staticmethod
    def _find_anchor(tok: Tokenizer) -> tuple[int | None, str]:
        """A piece whose text is non-empty, whitespace-free and context-independent."""
        sp = tok._sp

        def usable(i: int | None) -> str | None:
            if i is None or sp.IsControl(i) or sp.IsUnknown(i) or sp.IsUnused(i):
                return None
            if sp.IsByte(i):
                value = tok._byte_value(i)
                if value is None or not 0x21 <= value <= 0x7E:
                    return None
            text = sp.DecodeIds([i])
            if not text or any(c.isspace() for c in text) or "\ufffd" in text:
                return None
            if sp.DecodeIds([i, i]) != text + text:
                return None
            return text

        candidates = [tok.piece_to_id(p) for p in ("a", "e", "x", "A", "0", "1", ".", "!")]
        candidates += [tok.piece_to_id(f"<0x{v:02X}>") for v in (0x41, 0x61, 0x30, 0x2E)]
        for i in candidates:
            text = usable(i)
            if text is not None:
                return i, text
        for i in range(min(tok.vocab_size, 4096)):
            text = usable(i)
            if text is not None:
                return i, text
        return None, ""

    def reset(self) -> None:
        """Forget the stream (as after ``flush``)."""
        self._pending: list[int] = []  # ids since the last committed character boundary
        self._started = False  # has any non-empty text been emitted?
        self._history = []
        self._emitted_len = 0

    def _decode_pending(self, ids: list[int]) -> str:
        if not ids:
            return ""
        tok = self._tok
        if not self._started:
            # Nothing visible yet: SentencePiece is still at "start of text", exactly as when
            # decoding ids[:] from the real beginning.
            return tok._decode_checked(ids)
        text = tok._decode_checked([self._anchor_id] + ids)
        if not text.startswith(self._anchor_text):  # pragma: no cover - defensive
            raise TokenizerError("incremental decoding lost synchronisation with SentencePiece")
        return text[len(self._anchor_text) :]

    def _commit(self, ids: list[int]) -> str:
        text = self._decode_pending(ids)
        if text:
            self._started = True
        return text

    def _incomplete_from(self, ids: list[int]) -> int | None:
        """Index in ``ids`` where an unfinished UTF-8 character starts, if any.

        ``ids`` must start at a character boundary; only its trailing run of byte pieces is
        scanned (that run is at most a few ids long, see ``push``).
        """
        tok = self._tok
        values: list[int] = []
        j = len(ids)
        while j > 0:
            value = tok._byte_value(ids[j - 1])
            if value is None:
                break
            values.append(value)
            j -= 1
        if not values:
            return None
        values.reverse()
        start = _incomplete_utf8_start(values)
        return None if start is None else j + start

    def push(self, token_id: int) -> str:
        """Add one token id; return the text completed by it ('' while a character is open)."""
        i = self._tok._check_id(token_id)
        if i in self._special:
            return "" if self._skip_special else self._push_special(i)
        if self._anchor_id is None:
            return self._push_slow(i)
        self._pending.append(i)
        cut = self._incomplete_from(self._pending)
        if cut is None:
            ready, self._pending = self._pending, []
        else:
            ready, self._pending = self._pending[:cut], self._pending[cut:]
        return self._commit(ready)

    def flush(self) -> str:
        """Return the remaining text (an unfinished character becomes U+FFFD per byte); reset."""
        if self._anchor_id is None:
            text = self._tok._decode_checked(self._history)[self._emitted_len :]
        else:
            text = self._commit(self._pending)
        self.reset()
        return text

    def _push_special(self, i: int) -> str:
        piece = self._tok._sp.IdToPiece(i)
        if self._anchor_id is None:
            text = self._tok._decode_checked(self._history)[self._emitted_len :]
            self._history, self._emitted_len = [], 0
        else:
            text, self._pending = self._commit(self._pending), []
        self._started = True  # what follows is not at the start of the text
        return text + piece

    def _push_slow(self, i: int) -> str:
        # Fallback for exotic vocabularies without a usable anchor piece: O(n) per token.
        self._history.append(i)
        if self._incomplete_from(self._history) is not None:
            return ""
        text = self._tok._decode_checked(self._history)
        new = text[self._emitted_len :]
        self._emitted_len = len(text)
        return new


# ---------------------------------------------------------------------------------------------
# Stop strings


class StopMatcher:
    """Cut a streamed text at the first occurrence of any stop string.

    ``push(chunk)`` returns ``(text, stopped)``: ``text`` is safe to show now; when ``stopped``
    is True it is the text up to (not including) the stop string and the stream is over — later
    pushes return ``('', True)``.  A suffix that could still grow into a stop string is held back
    until it is ruled out; ``flush()`` releases it at the end of the stream.
    ``stops`` may be a single string or an iterable of non-empty strings.
    """

    def __init__(self, stops: Iterable[str] | str):
        if isinstance(stops, str):
            stops = [stops]
        try:
            stops = list(stops)
        except TypeError:
            raise InvalidArgumentError(
                f"stops must be a list of strings, got {type(stops).__name__}"
            ) from None
        for s in stops:
            if not isinstance(s, str):
                raise InvalidArgumentError(f"stop strings must be str, got {type(s).__name__}")
            if not s:
                raise InvalidArgumentError("stop strings must not be empty")
        self._stops: tuple[str, ...] = tuple(dict.fromkeys(stops))
        self._buffer = ""
        self._stopped = False
        self._stop: str | None = None

    @property
    def stops(self) -> tuple[str, ...]:
        return self._stops

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def stop_string(self) -> str | None:
        """The stop string that ended the stream, or None."""
        return self._stop

    def reset(self) -> None:
        self._buffer = ""
        self._stopped = False
        self._stop = None

    def _held_suffix_len(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
        best = 0
        for s in self._stops:
            for k in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:k]):
                    best = k
                    break
        return best

    def push(self, text: str) -> tuple[str, bool]:
        if not isinstance(text, str):
            raise InvalidArgumentError(f"text must be a str, got {type(text).__name__}")
        if self._stopped:
            return "", True
        buffer = self._buffer + text
        first = -1
        for s in self._stops:
            idx = buffer.find(s)
            if idx != -1 and (first == -1 or idx < first):
                first, self._stop = idx, s
        if first != -1:
            self._stopped = True
            self._buffer = ""
            return buffer[:first], True
        keep = self._held_suffix_len(buffer)
        self._buffer = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        """Release held-back text at the end of the stream ('' after a stop)."""
        text, self._buffer = self._buffer, ""
        return "" if self._stopped else text


# ---------------------------------------------------------------------------------------------
# Chat template


def format_chat(messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True) -> str:
    """Render a conversation in Gemma's turn format (docs/model-math.md, 'Chat template and stop
    tokens'), without ``<bos>``.

    ``<start_of_turn>user\\n{content}<end_of_turn>\\n<start_of_turn>model\\n{reply}<end_of_turn>\\n``
    ... and, with ``add_generation_prompt``, a final ``<start_of_turn>model\\n``.
    Roles: ``user``, ``model`` (``assistant`` is an alias), alternating and starting with
    ``user``; one leading ``system`` message is folded into the first user turn as
    ``{system}\\n\\n{user}``.  Contents are stripped of surrounding whitespace.
    """
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Iterable):
        raise InvalidArgumentError("messages must be a list of {'role', 'content'} dicts")
    turns: list[tuple[str, str]] = []
    for n, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise InvalidArgumentError(
                f"message {n} must be a dict with 'role' and 'content', "
                f"got {type(message).__name__}"
            )
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str):
            raise InvalidArgumentError(f"message {n} needs a 'role' string")
        if not isinstance(content, str):
            raise InvalidArgumentError(f"message {n} needs a 'content' string")
        if role == "assistant":
            role = "model"
        if role not in ("user", "model", "system"):
            raise InvalidArgumentError(
                f"message {n} has role {role!r}; expected 'user', 'model'/'assistant' or "
                "'system'"
            )
        turns.append((role, content.strip()))
    if not turns:
        raise InvalidArgumentError("messages must not be empty")

    system = None
    if turns[0][0] == "system":
        system = turns.pop(0)[1]
        if not turns or turns[0][0] != "user":
            raise InvalidArgumentError("a system message must be followed by a user message")
    parts: list[str] = []
    for n, (role, content) in enumerate(turns):
        expected = "user" if n % 2 == 0 else "model"
        if role != expected:
            where = n + (1 if system is not None else 0)
            if role == "system":
                raise InvalidArgumentError(
                    f"message {where}: a system message is only allowed first"
                )
            raise InvalidArgumentError(
                f"message {where} has role {role!r} but {expected!r} was expected "
                "(roles must alternate user/model, starting with user)"
            )
        if n == 0 and system is not None:
            content = f"{system}\n\n{content}"
        parts.append(f"{START_OF_TURN}{role}\n{content}{END_OF_TURN}\n")
    if add_generation_prompt:
        parts.append(f"{START_OF_TURN}model\n")
    return "".join(parts)
