"""The Model facade: logits, stateful forward, generate / stream / chat over the native core."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import Iterator, Sequence

import numpy as np

from . import _core, _logits
from .errors import InvalidArgumentError, TokenizerError
from ._text import GenerationResult as GenerationResult, _TextStream
from .templates import chat_prompt
from .tokenizer import END_OF_TURN, Tokenizer


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each next token.

    temperature 0 (the default) is greedy decoding; otherwise logits are divided by
    ``temperature``, optionally restricted to the ``top_k`` most likely tokens and to the
    smallest set whose probability reaches ``top_p``, and sampled with a generator seeded by
    ``seed`` (None: a fresh random seed).  Every row of a batch uses the same seed, so a batch
    gives the same tokens as running its prompts one by one.
    ``stop`` strings end generation and never appear in the text; ``stop_token_ids`` default to
    the model's end-of-sequence and end-of-turn ids (pass ``()`` to generate exactly
    ``max_tokens`` tokens).

    Before sampling, the logits may be changed (in this order): ``logit_bias`` ({token id:
    bias in [-100, 100]}) is added; ``repetition_penalty`` (> 0, 1 = off; the Hugging Face
    rule) divides positive / multiplies negative logits of every id seen in the prompt or the
    output; ``presence_penalty`` and ``frequency_penalty`` (in [-2, 2], the OpenAI rule)
    subtract presence + frequency x count from every generated id; ``min_p`` (in [0, 1), 0 =
    off; sampling only) drops ids less likely than min_p times the most likely one.

    ``skip_special_tokens`` (default True) leaves control and marker tokens (``<eos>``,
    ``<end_of_turn>``, ``<start_of_image>`` ...; ``Tokenizer.special_ids``) out of the text;
    False writes them as their piece text.  Token ids are reported either way.
    """

    max_tokens: int = 64
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple = ()
    stop_token_ids: tuple | None = None
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict | None = None
    skip_special_tokens: bool = True

    def __post_init__(self):
        def bad(msg):
            raise InvalidArgumentError(msg)

        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, (int, np.integer)) \
                or self.max_tokens < 0:
            bad(f"max_tokens must be an integer >= 0, got {self.max_tokens!r}")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float, np.floating)) or not math.isfinite(t) \
                or t < 0:
            bad(f"temperature must be a finite number >= 0, got {t!r}")
        if t > 1e4:
            bad(f"temperature {t} is absurd (use <= 1e4)")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, (int, np.integer)) \
                or self.top_k < 0 or self.top_k > 2**31 - 1:
            bad(f"top_k must be an integer >= 0 (0 disables it), got {self.top_k!r}")
        p = self.top_p
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not (0 < p <= 1):
            bad(f"top_p must be in (0, 1], got {p!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(
                self.seed, (int, np.integer)) or not 0 <= self.seed < 2**64):
            bad(f"seed must be an integer in [0, 2**64) or None, got {self.seed!r}")
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        for s in stop:
            if not isinstance(s, str) or not s:
                bad(f"stop strings must be non-empty strings, got {s!r}")
        object.__setattr__(self, "stop", stop)
        if self.stop_token_ids is not None:
            if isinstance(self.stop_token_ids, (str, bytes)) or not hasattr(
                    self.stop_token_ids, "__iter__"):
                bad(f"stop_token_ids must be a sequence of integers, got {self.stop_token_ids!r}")
            ids = tuple(self.stop_token_ids)
            for i in ids:
                if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
                    bad(f"stop_token_ids must be integers, got {i!r}")
            object.__setattr__(self, "stop_token_ids", tuple(int(i) for i in ids))

        def number(name, lo, hi, lo_open=False, hi_open=False):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(v) or v < lo or v > hi or (lo_open and v == lo) \
                    or (hi_open and v == hi):
                rng = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
                bad(f"{name} must be a number in {rng}, got {v!r}")
            object.__setattr__(self, name, float(v))

        number("min_p", 0.0, 1.0, hi_open=True)
        number("presence_penalty", -2.0, 2.0)
        number("frequency_penalty", -2.0, 2.0)
        number("repetition_penalty", 0.0, 100.0, lo_open=True)
        if self.logit_bias is not None:
            if not isinstance(self.logit_bias, dict):
                bad(f"logit_bias must be a dict {{token id: bias}}, got {self.logit_bias!r}")
            clean = {}
            for key, val in self.logit_bias.items():
                try:
                    tok = int(key)  # JSON object keys are strings
                except (TypeError, ValueError):
                    tok = -1
                if isinstance(key, bool) or tok < 0 or str(key).strip() != str(tok):
                    bad(f"logit_bias keys must be token ids (integers >= 0), got {key!r}")
                if isinstance(val, bool) or not isinstance(val, (int, float, np.integer,
                                                                 np.floating)) \
                        or not math.isfinite(val) or not -100 <= val <= 100:
                    bad(f"logit_bias[{key!r}] must be a number in [-100, 100], got {val!r}")
                clean[tok] = float(val)
            object.__setattr__(self, "logit_bias", clean or None)
        if not isinstance(self.skip_special_tokens, (bool, np.bool_)):
            bad(f"skip_special_tokens must be True or False, got {self.skip_special_tokens!r}")
        object.__setattr__(self, "skip_special_tokens", bool(self.skip_special_tokens))


class State:
    """What a sequence carries between calls.

    RecurrentGemma: a fixed-size state (recurrent state, conv taps, local-attention ring) that
    does not grow with the number of tokens consumed.  Gemma transformers: the KV cache (a ring
    of the window for sliding layers, growing for global layers).  ``clone()`` copies it, so a
    prompt can be processed once and continued several ways.  Not thread-safe.
    """

    def __init__(self, model: "Model", core_state):
        self._model = model
        self._core = core_state

    @property
    def pos(self) -> int:
        """Number of tokens consumed so far."""
        return self._core.pos

    @property
    def nbytes(self) -> int:
        return self._core.nbytes

    def clone(self) -> "State":
        return State(self._model, self._core.clone())

    __copy__ = clone

    def __deepcopy__(self, memo):
        return self.clone()

    def to_numpy(self) -> np.ndarray:
        """A copy of the state's memory as one float32 vector, e.g. to save it with its
        ``pos``.  RecurrentGemma: fixed size.  Gemma: per layer K then V, the first
        ``min(pos, window)`` ring slots of sliding layers and the first ``pos`` positions of
        global ones."""
        return self._core.save()

    def load_numpy(self, data: np.ndarray, pos: int):
        """Restores memory saved by to_numpy() together with its position."""
        if isinstance(pos, bool) or not isinstance(pos, (int, np.integer)) or not \
                0 <= pos < 2**31 - 1:
            raise InvalidArgumentError(f"pos must be an integer in [0, 2**31 - 1), got {pos!r}")
        data = np.asarray(data)
        want = (self._core.saved_floats(int(pos)),)  # Gemma: the length depends on pos
        if data.dtype != np.float32 or data.shape != want:
            raise InvalidArgumentError(f"state data must be float32 of shape {want} for pos "
                                       f"{pos}, got {data.dtype} {data.shape}")
        self._core.restore(np.ascontiguousarray(data), int(pos))

    def __repr__(self):
        return f"State(pos={self.pos}, nbytes={self.nbytes})"


class Model:
    """A loaded model.  Create with :func:`gemma_native.load` (or ``random_model`` in tests)."""

    def __init__(self, config, core, tokenizer: Tokenizer | None, path: str | None = None,
                 weight_dtype: str | None = None, activations: str = "int8"):
        self.config = config
        self.tokenizer = tokenizer
        self.path = path
        self.weight_dtype = weight_dtype
        self.activations = activations  # the compute mode asked for (load's activations=)
        self.weights_nbytes = 0  # bytes of weight arrays the model uses (mapped or in memory)
        # The engine dtypes / layouts of those arrays, e.g. ['BF16R32', 'bfloat16', 'float32']
        # (BF16R32, Q8_0R16: the CPU kernels' packed layouts of the linear matrices).
        self.weight_layouts: list[str] = []
        self.chat_template: str | None = None  # the Jinja template stored with the model
        self._core = core

    @property
    def compute_mode(self) -> str:
        """The arithmetic that runs, in words: 'exact float32', 'int8 activations (quantized
        weights)' (GGUF blocks, llama.cpp's arithmetic), 'int8 activations (Q8_0R16 weights:
        whole-block int32 sums)' (dtype="int8"), 'bfloat16 (amx; decode steps exact)', or exact with the reason when
        activations='bfloat16' was asked on a CPU without a bf16 matrix unit."""
        from ._modes import describe

        return describe(self.activations, self.weight_dtype)

    def __repr__(self):
        return (f"Model({self.config.architecture}, layers={self.config.num_layers}, "
                f"width={self.config.width}, vocab={self.config.vocab_size}, "
                f"weights={self.weight_dtype}, path={self.path!r})")

    # ----------------------------------------------------------------------------- token ids
    def _ids_array(self, ids, what="token ids") -> np.ndarray:
        try:
            arr = np.asarray(ids)
        except Exception as e:  # ragged lists and the like
            raise InvalidArgumentError(
                f"{what} must be a list of integers or a 2-D array: {e}") from None
        if arr.size == 0:
            raise InvalidArgumentError(f"{what} are empty: need at least one token")
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer)):
            raise InvalidArgumentError(f"{what} must be integers, got dtype {arr.dtype}")
        bad = (arr < 0) | (arr >= self.config.vocab_size)
        if bad.any():
            first = arr[bad].flat[0]
            raise InvalidArgumentError(
                f"token id {int(first)} is outside the vocabulary [0, {self.config.vocab_size})")
        return arr.astype(np.int32)

    def encode(self, text: str, add_bos: bool = True) -> list:
        if self.tokenizer is None:
            raise TokenizerError("this model has no tokenizer (no tokenizer.model beside the "
                                 "weights); pass token ids instead of text")
        return self.tokenizer.encode(text, add_bos=add_bos)

    # ----------------------------------------------------------------------------- forward
    def logits(self, ids) -> np.ndarray:
        """float32 logits at every position of a prompt: ids [T] -> [T, V], [B, T] -> [B, T, V].

        Position 0 is the first id (no BOS is added).  Soft-capped like the reference."""
        arr = self._ids_array(ids)
        if arr.ndim not in (1, 2):
            raise InvalidArgumentError(f"ids must be [T] or [B, T], got shape {arr.shape}")
        batch = arr[None] if arr.ndim == 1 else arr
        states = [self._core.new_state() for _ in range(batch.shape[0])]
        out = self._core.forward(np.ascontiguousarray(batch), states, True)
        return out[0] if arr.ndim == 1 else out

    def new_state(self) -> State:
        return State(self, self._core.new_state())

    def forward(self, ids, state: State, all_positions: bool = False) -> np.ndarray:
        """Feeds ids [T] to a state; returns the logits of the last token [V] (or [T, V])."""
        if not isinstance(state, State) or state._model is not self:
            raise InvalidArgumentError("state must come from this model's new_state()")
        arr = self._ids_array(ids)
        if arr.ndim != 1:
            raise InvalidArgumentError(f"forward takes one sequence of ids [T], got {arr.shape}")
        return self.forward_batch(arr[None], [state], all_positions)[0]

    def forward_batch(self, ids, states: Sequence[State], all_positions: bool = False) -> np.ndarray:
        """Feeds row b of ids [B, T] to states[b], all in one call (one pass over the weights);
        returns the logits of each row's last token [B, V] (or [B, T, V]).  The states must be
        distinct and come from this model; a row gives the same logits as forward() on it alone."""
        if isinstance(states, State) or not isinstance(states, (list, tuple)):
            raise InvalidArgumentError("states must be a list of State objects")
        for s in states:
            if not isinstance(s, State) or s._model is not self:
                raise InvalidArgumentError("every state must come from this model's new_state()")
        if not isinstance(all_positions, (bool, np.bool_)):
            raise InvalidArgumentError(f"all_positions must be True or False, got "
                                       f"{all_positions!r}")
        arr = self._ids_array(ids)
        if arr.ndim != 2 or arr.shape[0] != len(states):
            raise InvalidArgumentError(f"ids must be [B, T] with B = len(states) = {len(states)}, "
                                       f"got shape {arr.shape}")
        return self._core.forward(np.ascontiguousarray(arr), [s._core for s in states],
                                  bool(all_positions))

    def perplexity(self, text_or_ids, *, add_bos: bool = True, chunk: int = 64) -> float:
        """exp(mean negative log-likelihood) of every token after the first, each predicted
        from all the tokens before it (fed through one state, ``chunk`` tokens at a time so
        the [chunk, vocab] logits stay small).  Text is tokenized (with BOS unless add_bos is
        false); ids are used as given."""
        if isinstance(text_or_ids, str):
            ids = self.encode(text_or_ids, add_bos=add_bos)
        else:
            ids = [int(i) for i in self._ids_array(text_or_ids).reshape(-1)]
        if len(ids) < 2:
            raise InvalidArgumentError("perplexity needs at least two tokens")
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise InvalidArgumentError(f"chunk must be an integer >= 1, got {chunk!r}")
        state = self.new_state()
        nll, count = 0.0, 0
        for i in range(0, len(ids) - 1, chunk):
            part = ids[i:i + chunk]
            logits = self.forward(part, state, all_positions=True).astype(np.float64)
            nxt = ids[i + 1:i + 1 + len(part)]
            logits = logits[:len(nxt)]
            top = logits.max(axis=1, keepdims=True)
            lse = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
            nll += float((lse - logits[np.arange(len(nxt)), nxt]).sum())
            count += len(nxt)
        return float(np.exp(nll / count))

    # ----------------------------------------------------------------------------- generation
    def _params(self, params, kw) -> SamplingParams:
        if params is None:
            return SamplingParams(**kw)
        if not isinstance(params, SamplingParams):
            raise InvalidArgumentError("params must be a gemma_native.SamplingParams")
        return replace(params, **kw) if kw else params

    def _prompt_ids(self, prompt, add_bos) -> list:
        if not isinstance(prompt, (str, list, tuple, np.ndarray)):
            raise InvalidArgumentError(f"a prompt is a str or a list of integer token ids, got "
                                       f"{type(prompt).__name__}")
        if isinstance(prompt, str):
            if not prompt and not add_bos:
                raise InvalidArgumentError("empty prompt: no text and no BOS (add_bos=False)")
            ids = self.encode(prompt, add_bos=add_bos)
        else:
            ids = [int(i) for i in self._ids_array(prompt, "prompt").reshape(-1)]
            if np.asarray(prompt).ndim != 1:
                raise InvalidArgumentError("a prompt of ids must be a flat list of integers")
        if not ids:
            raise InvalidArgumentError("empty prompt: need at least one token")
        self._check_fits(ids)
        return ids

    def _check_fits(self, ids):
        if len(ids) > self._core.max_context:
            raise InvalidArgumentError(
                f"the prompt has {len(ids)} tokens but the model's context length is "
                f"{self._core.max_context}")

    def _stop_ids(self, p: SamplingParams) -> set:
        if p.stop_token_ids is not None:
            return set(p.stop_token_ids)
        ids = {self.config.eos_token_id, *getattr(self.config, "extra_stop_ids", ())}
        if self.tokenizer is not None:
            ids.add(self.tokenizer.eos_id)
            eot = self.tokenizer.piece_to_id(END_OF_TURN)
            if eot is not None:
                ids.add(eot)
        return {i for i in ids if i is not None and i >= 0}

    def _run(self, prompts: list, p: SamplingParams, states=None) -> Iterator[tuple]:
        """Core loop: yields (row, token_id) as tokens are chosen.  The consumer answers each
        with True when that row is finished (stop token or string); rows also finish at
        max_tokens, and when their sequence reaches the model's context length (the token
        chosen from the last position's logits is kept: finish_reason "length").  Prompts are
        prefilled one by one (their lengths differ), then all live rows share one batched
        decode step per token.  ``states`` (State objects, one per prompt): continue those
        instead of new ones."""
        seed = p.seed if p.seed is not None else int.from_bytes(os.urandom(8), "little")
        n = len(prompts)
        if p.max_tokens == 0:
            return
        max_context = self._core.max_context
        states = [self._core.new_state() for _ in range(n)] if states is None else \
            [s._core for s in states]
        last = np.zeros((n, self.config.vocab_size), np.float32)
        for b, ids in enumerate(prompts):
            last[b] = self._core.forward(np.asarray([ids], np.int32), [states[b]], False)[0]
        counts = np.zeros(n, np.uint64)
        active = list(range(n))
        process = _logits.needs_processing(p)
        history = [_logits.TokenHistory(ids) for ids in prompts] if process else None
        while active:
            rows = np.asarray(active)
            k = len(active)
            if process:
                for b in active:
                    last[b] = _logits.process(last[b], p, history[b])
            chosen = _core.sample(np.ascontiguousarray(last[rows]),
                                  np.full(k, p.temperature, np.float32),
                                  np.full(k, p.top_k, np.int32), np.full(k, p.top_p, np.float32),
                                  np.full(k, seed, np.uint64), counts[rows].copy())
            counts[rows] += 1
            still = []
            for b, tok in zip(active, chosen.tolist()):
                if process:
                    history[b].add(tok)
                finished = yield (b, tok)
                if not finished and counts[b] < p.max_tokens and states[b].pos < max_context:
                    still.append((b, tok))
            active = [b for b, _ in still]
            if active:
                toks = np.asarray([[tok] for _, tok in still], np.int32)
                out = self._core.forward(toks, [states[b] for b in active], False)
                last[np.asarray(active)] = out

    def generate(self, prompt, params: SamplingParams | None = None, *, add_bos: bool = True,
                 **kw):
        """Generates from a prompt (text or list of ids) or a batch (list of prompts).

        Text prompts are tokenized with a leading BOS (``add_bos``); id prompts are used as
        given.  Keyword arguments are SamplingParams fields (max_tokens, temperature, top_k,
        top_p, seed, stop, stop_token_ids, min_p, the penalties, logit_bias).  Returns a
        GenerationResult, or a list of them for a batch.
        """
        p = self._params(params, kw)
        if not isinstance(prompt, (str, list, tuple, np.ndarray)):
            raise InvalidArgumentError(f"prompt must be a str, a list of integer token ids, or "
                                       f"a list of those; got {type(prompt).__name__}")
        if isinstance(prompt, np.ndarray):
            single = prompt.ndim == 1
        else:
            single = isinstance(prompt, str) or (
                isinstance(prompt, (list, tuple)) and len(prompt) > 0 and all(
                    isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in prompt))
        prompts = [prompt] if single else list(prompt)
        if not prompts:
            raise InvalidArgumentError("no prompts given")
        results = self._collect([self._prompt_ids(q, add_bos) for q in prompts], p)
        return results[0] if single else results

    def _collect(self, prompt_ids: list, p: SamplingParams) -> list:
        if p.stop and self.tokenizer is None:
            raise TokenizerError("stop strings need a tokenizer; use stop_token_ids")
        n = len(prompt_ids)
        toks = [[] for _ in range(n)]
        texts = [[] for _ in range(n)]
        reasons = ["length"] * n
        streams = [_TextStream(self, p) for _ in range(n)]
        gen = self._run(prompt_ids, p)
        try:
            b, tok = next(gen)
            while True:
                toks[b].append(tok)
                piece, hit = streams[b].push(tok)
                texts[b].append(piece)
                if hit:
                    reasons[b] = "stop"
                b, tok = gen.send(hit)
        except StopIteration:
            pass
        has_text = self.tokenizer is not None
        return [GenerationResult(toks[b], "".join(texts[b]) + streams[b].finish() if has_text
                                 else None, reasons[b], list(prompt_ids[b])) for b in range(n)]

    def stream(self, prompt, params: SamplingParams | None = None, *, add_bos: bool = True,
               **kw) -> Iterator[str]:
        """Yields text pieces of one continuation as they are generated: always whole UTF-8
        characters, and never any part of a stop string."""
        if self.tokenizer is None:
            raise TokenizerError("streaming text needs a tokenizer; use generate() with ids")
        p = self._params(params, kw)
        ids = self._prompt_ids(prompt, add_bos)
        return self._stream_ids(ids, p)

    def _stream_ids(self, ids, p, state: State | None = None, seen=None):
        """Text pieces of the continuation of ``ids``.  ``state``: continue it (it holds the
        tokens before ``ids``); ``seen(token_id, finished)`` is called for every chosen id."""
        stream = _TextStream(self, p)
        gen = self._run([ids], p, states=None if state is None else [state])
        try:
            _, tok = next(gen)
            while True:
                piece, hit = stream.push(tok)
                if seen is not None:
                    seen(tok, hit)
                if piece:
                    yield piece
                _, tok = gen.send(hit)
        except StopIteration:
            pass
        finally:
            gen.close()
        tail = stream.finish()
        if tail:
            yield tail

    def chat(self, messages: Sequence[dict], params: SamplingParams | None = None, *,
             stream: bool = False, **kw):
        """Replies to a conversation (:meth:`chat_prompt_ids`).  Stops at <end_of_turn> /
        <eos>.  Returns a GenerationResult, or an iterator of text pieces when stream=True."""
        ids = self.chat_prompt_ids(messages)
        self._check_fits(ids)
        p = self._params(params, kw)
        if stream:
            return self._stream_ids(ids, p)
        return self._collect([ids], p)[0]

    def chat_prompt_ids(self, messages: Sequence[dict]) -> list:
        """The prompt asking for the next reply to ``messages``: in the Gemma turn format
        (roles user/model, a leading system message folded into the first user turn), or
        through the model's own chat template when it has one that is not Gemma's
        (``chat_template``, rendered with Jinja2; see gemma_native.templates)."""
        if self.tokenizer is None:
            raise TokenizerError("chat needs a tokenizer (tokenizer.model)")
        return chat_prompt(self.chat_template, messages, self.tokenizer)

    def chat_session(self, system: str | None = None, params: SamplingParams | None = None,
                     **kw):
        """A :class:`~gemma_native.chat.ChatSession`: a conversation that keeps this model's
        state between turns, so each turn reads only its own tokens (``chat()`` re-reads the
        whole conversation)."""
        from .chat import ChatSession

        return ChatSession(self, system, params, **kw)
