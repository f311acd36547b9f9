"""A conversation that keeps the model's state between turns.

``Model.chat(messages)`` re-reads the whole conversation on every call.  A :class:`ChatSession`
instead feeds each turn's own tokens on top of the state the previous turns left: the user's
turn in Gemma's format, then the reply as it is generated.  For RecurrentGemma that state has
a fixed size, so a long conversation costs no more per turn than a short one; Gemma keeps its
KV cache.  The reply tokens stay as the model produced them (they are not re-tokenized from
text), so turn N continues exactly the sequence the model has seen.  A model whose stored chat
template is not Gemma's turn format (gemma_native.templates) re-reads the conversation through
that template on every turn instead.
"""

from __future__ import annotations

import re
from typing import Iterator

from ._text import GenerationResult
from .errors import InvalidArgumentError, TokenizerError
from .templates import is_gemma_template
from .tokenizer import END_OF_TURN, START_OF_TURN

# A path component naming an instruction-tuned checkpoint: gemma-2b-it, recurrentgemma-9b-it,
# *-instruct, *-chat (the usual Hugging Face and GGUF file names).
_TUNED_NAME = re.compile(r"(^|[-_.])(it|instruct|chat)([-_.]|$)", re.IGNORECASE)


def looks_instruction_tuned(model) -> bool | None:
    """True when the model's path names an instruction-tuned checkpoint (``-it``,
    ``-instruct``, ``-chat``), False when it names a model without such a marker, None when
    there is no path (random weights)."""
    if not model.path:
        return None
    parts = re.split(r"[/\\]", str(model.path))
    # a Hugging Face cache folder: models--org--name/snapshots/<hash>
    parts = [p.replace("--", "/").split("/")[-1] for p in parts if p]
    return any(_TUNED_NAME.search(p) for p in parts)


BASE_MODEL_WARNING = (
    "this looks like a base (pretrained) model: it continues text, it was not trained to "
    "follow a conversation, so chat replies may echo the prompt or ramble.  Chat with an "
    "instruction-tuned ('-it') model, or use `generate` for plain continuation.")


class ChatSession:
    """A conversation with ``model`` that keeps its state between turns.

    ``send(text)`` replies to one user turn (a GenerationResult, or an iterator of text pieces
    with ``stream=True``); ``reset(system=None)`` starts over.  A system prompt is folded into
    the first user turn, as ``Model.chat`` does.  Sampling parameters are those of ``params``
    and keyword arguments (SamplingParams fields), for every turn.  Interrupting a streamed
    reply (closing the iterator, or Ctrl-C) keeps what was generated so far as the reply.
    """

    def __init__(self, model, system: str | None = None, params=None, **kw):
        if model.tokenizer is None:
            raise TokenizerError("chat needs a tokenizer (tokenizer.model)")
        self.model = model
        self.params = model._params(params, kw)
        self.reset(system)

    def reset(self, system: str | None = None) -> None:
        """Forgets the conversation (and sets the system prompt for the next one)."""
        if system is not None and not isinstance(system, str):
            raise InvalidArgumentError("system must be a string")
        self.system = system.strip() if system else None
        self.state = self.model.new_state()
        self.messages: list[dict] = []
        if self.system:
            self.messages.append({"role": "system", "content": self.system})
        self._unfed: list[int] = []  # the last reply's final token, sampled but not fed yet
        self._closed = True  # whether that reply ended with <end_of_turn>
        self._eot = self.model.tokenizer.piece_to_id(END_OF_TURN)
        self._stateful = is_gemma_template(self.model.chat_template)

    def _turn_ids(self, text: str) -> list:
        if not self._stateful:  # the whole conversation through the model's own template
            return self.model.chat_prompt_ids(self.messages + [{"role": "user",
                                                                "content": text}])
        tok = self.model.tokenizer
        body = f"{START_OF_TURN}user\n{text}{END_OF_TURN}\n{START_OF_TURN}model\n"
        if self.state.pos == 0:
            if self.system:
                body = f"{START_OF_TURN}user\n{self.system}\n\n{text}{END_OF_TURN}\n" \
                       f"{START_OF_TURN}model\n"
            return tok.encode(body, add_bos=True)
        head = "\n" if self._closed else f"{END_OF_TURN}\n"
        return self._unfed + tok.encode(head + body, add_bos=False)

    def send(self, text: str, stream: bool = False):
        """The model's reply to the user turn ``text``."""
        if not isinstance(text, str):
            raise InvalidArgumentError("a chat turn is a string")
        text = text.strip()
        if not text:
            raise InvalidArgumentError("empty chat turn")
        if not self._stateful:
            # no known way to continue a non-Gemma template's text: each turn reads the whole
            # conversation again, from a new state
            self.state = self.model.new_state()
        ids = self._turn_ids(text)
        room = self.model._core.max_context - self.state.pos
        if len(ids) >= room:
            raise InvalidArgumentError(
                f"the conversation no longer fits the model's context "
                f"({self.state.pos} tokens so far, this turn needs {len(ids)} more of "
                f"{self.model._core.max_context}); reset() starts a new one")
        pieces = self._reply(ids, text)
        if stream:
            return pieces
        out = "".join(pieces)
        return GenerationResult(self._last_ids, out, self._last_reason, ids)

    def _reply(self, ids: list, text: str) -> Iterator[str]:
        pos0 = self.state.pos
        toks: list[int] = []
        texts: list[str] = []
        self._last_ids, self._last_reason = toks, "length"

        def seen(tok, finished):
            toks.append(tok)
            if finished:
                self._last_reason = "stop"

        pieces = self.model._stream_ids(ids, self.params, self.state, seen)
        try:
            for piece in pieces:
                texts.append(piece)
                yield piece
        finally:
            pieces.close()
            self._record(pos0, len(ids), text, toks, "".join(texts))

    def _record(self, pos0: int, n_ids: int, text: str, toks: list, reply: str) -> None:
        if self.state.pos == pos0:  # interrupted while reading the turn: nothing was fed
            return
        self.messages.append({"role": "user", "content": text})
        role = "model" if self._stateful else "assistant"
        self.messages.append({"role": role, "content": reply})
        # The loop feeds every chosen token but the last (the reply ends on it, or was
        # interrupted before feeding it): the next turn starts by feeding it, then closes this
        # turn with <end_of_turn> unless that token was one.
        fed = self.state.pos - pos0 - n_ids
        self._unfed = toks[fed:]
        self._closed = bool(toks) and toks[-1] == self._eot
