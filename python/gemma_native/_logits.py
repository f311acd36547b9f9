"""Logit processing before sampling: logit_bias, repetition / presence / frequency penalties,
min_p; and the log-probabilities reported with tokens.

Shared by ``Model.generate`` / ``stream`` and the server's engine, so a request gives the same
tokens in both.  Everything here is plain float32 / float64 numpy arithmetic (adds,
multiplies, compares, ``log`` of one number), so it gives the same bits on every machine; it
runs only on the rows whose parameters ask for it.
"""

from __future__ import annotations

import math

import numpy as np


def needs_processing(p) -> bool:
    """True when any of the parameters below changes the logits."""
    return bool(p.logit_bias) or p.repetition_penalty != 1.0 or p.presence_penalty != 0.0 \
        or p.frequency_penalty != 0.0 or (p.min_p > 0.0 and p.temperature > 0.0)


class TokenHistory:
    """The tokens a sequence has seen: prompt ids (for repetition_penalty) and the count of
    each generated id (for presence / frequency penalties)."""

    __slots__ = ("prompt", "generated")

    def __init__(self, prompt_ids):
        self.prompt = np.unique(np.asarray(prompt_ids, np.int64))
        self.generated: dict[int, int] = {}

    def add(self, token_id: int) -> None:
        self.generated[token_id] = self.generated.get(token_id, 0) + 1

    def clone(self) -> "TokenHistory":
        h = TokenHistory.__new__(TokenHistory)
        h.prompt = self.prompt
        h.generated = dict(self.generated)
        return h


def process(row: np.ndarray, p, history: TokenHistory) -> np.ndarray:
    """A processed copy of one row of logits [V] (float32), in this order:
    1. ``logit_bias``: added to the named ids;
    2. ``repetition_penalty`` r (the Hugging Face rule): every id seen in the prompt or the
       output has its logit divided by r where positive, multiplied by r where negative;
    3. ``presence_penalty`` / ``frequency_penalty`` (the OpenAI rule): every generated id loses
       presence + frequency x (times generated);
    4. ``min_p`` (sampling only): ids whose probability at this temperature is below min_p
       times the most likely id's are removed (logit -inf)."""
    out = np.array(row, np.float32, copy=True)
    v = out.shape[0]
    if p.logit_bias:
        for tok, bias in p.logit_bias.items():
            if tok >= v:
                from .errors import InvalidArgumentError

                raise InvalidArgumentError(
                    f"logit_bias names token id {tok}, outside the vocabulary (size {v})")
            out[tok] += np.float32(bias)
    if p.repetition_penalty != 1.0:
        seen = history.prompt
        if history.generated:
            seen = np.union1d(seen, np.fromiter(history.generated, np.int64))
        seen = seen[(seen >= 0) & (seen < v)]
        vals = out[seen]
        r = np.float32(p.repetition_penalty)
        out[seen] = np.where(vals > 0, vals / r, vals * r)
    if history.generated and (p.presence_penalty != 0.0 or p.frequency_penalty != 0.0):
        ids = np.fromiter(history.generated.keys(), np.int64)
        counts = np.fromiter(history.generated.values(), np.float32)
        keep = ids < v
        ids, counts = ids[keep], counts[keep]
        out[ids] -= np.float32(p.presence_penalty) + np.float32(p.frequency_penalty) * counts
    if p.min_p > 0.0 and p.temperature > 0.0:
        top = out.max()
        if np.isfinite(top):
            # p_i / p_max = exp((l_i - l_max) / T) >= min_p  <=>  l_i >= l_max + T ln(min_p)
            floor = float(top) + float(p.temperature) * math.log(float(p.min_p))
            # l < floor for a float32 l  <=>  l < c, the smallest float32 >= floor (no float64
            # copy of the row: at 262k ids that copy was most of min_p's cost)
            with np.errstate(over="ignore"):
                c = np.float32(floor)
            if float(c) < floor:
                c = np.nextafter(c, np.float32(np.inf))
            out[out < c] = -np.inf
    return out


def logprobs(row: np.ndarray, token_id: int, top: int):
    """(log-probability of token_id, [(id, logprob)] of the ``top`` most likely ids) under
    softmax(row), computed in float64."""
    x = row.astype(np.float64)
    finite = np.isfinite(x)
    m = x[finite].max() if finite.any() else 0.0
    lse = m + math.log(np.exp(x[finite] - m).sum()) if finite.any() else 0.0
    lp = x - lse
    best = []
    if top > 0:
        idx = np.argpartition(-lp, min(top, lp.shape[0] - 1))[:top]
        # ties broken by the smaller id, so the list is the same on every machine
        idx = sorted(idx.tolist(), key=lambda i: (-lp[i], i))
        best = [(int(i), float(lp[i])) for i in idx]
    return float(lp[token_id]), best
