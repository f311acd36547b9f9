"""What generation hands back: the result of one continuation, and the turning of its token
ids into text (shared by Model.generate / stream, ChatSession and the server's engine, so all
of them give the same text for the same tokens)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .tokenizer import IncrementalDecoder, StopMatcher


@dataclass
class GenerationResult:
    """One generated continuation: new tokens only (the prompt is not repeated)."""

    token_ids: list
    text: str | None
    finish_reason: str  # "stop" (stop token or string) or "length" (max_tokens reached)
    prompt_token_ids: list = field(default_factory=list)

    def __str__(self):
        return self.text if self.text is not None else str(self.token_ids)


class _TextStream:
    """Turns one row's token ids into text pieces: UTF-8-safe, stop strings held back and cut.
    generate() and stream() both use it, so their texts are identical."""

    def __init__(self, model, p):
        self.stop_ids = model._stop_ids(p)
        tok = model.tokenizer
        self.decoder = IncrementalDecoder(tok, p.skip_special_tokens) if tok is not None \
            else None
        self.vocab = tok.vocab_size if tok is not None else 0
        self.matcher = StopMatcher(list(p.stop)) if p.stop and tok is not None else None

    def push(self, token_id: int) -> tuple:
        """Returns (text piece, finished)."""
        hit = token_id in self.stop_ids
        if self.decoder is None or token_id >= self.vocab:
            return "", hit  # rows past the tokenizer's vocabulary (padding) carry no text
        piece = self.decoder.push(token_id)
        if self.matcher is not None:
            piece, hit_s = self.matcher.push(piece)
            hit = hit or hit_s
        return piece, hit

    def finish(self) -> str:
        """Text still held back at the end (nothing after a stop string)."""
        if self.decoder is None or (self.matcher is not None and self.matcher.stopped):
            return ""
        tail = self.decoder.flush()
        if self.matcher is not None:
            tail, _ = self.matcher.push(tail)
            if not self.matcher.stopped:
                tail += self.matcher.flush()
        return tail
