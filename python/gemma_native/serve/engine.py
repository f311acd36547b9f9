"""The serving engine: one scheduler thread runs one Model for every request (continuous
batching).

Each turn of the scheduler loop:
  1. admits queued requests while the batch has room (a request with ``n`` choices takes n
     slots);
  2. drops sequences that were cancelled (client gone) or ran past their deadline;
  3. feeds one chunk (``prefill_chunk`` tokens) of the oldest prompt still being read, so a
     long prompt is spread over several turns and running streams keep getting tokens;
     when a prompt is done, its state is cloned for choices 2..n;
  4. samples one token for every sequence that has logits, in one call, and feeds all the
     sequences that go on to the model as one batch (one pass over the weights).
The CPU kernels sum every row the same way whatever the batch, so a response does not depend
on what else is being served: greedy output equals ``Model.generate`` for the same prompt.

Events reach the caller through the ``on_event`` callback given to :meth:`Engine.submit`,
called on the scheduler thread (the HTTP layer hands them to its event loop).
"""

from __future__ import annotations

import collections
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from .. import _core, _logits
from ..errors import GemmaNativeError, InvalidArgumentError
from .._text import _TextStream
from ..model import Model, SamplingParams


class QueueFullError(GemmaNativeError, RuntimeError):
    """The engine's queue is full; try again later."""


class DrainingError(GemmaNativeError, RuntimeError):
    """The engine is shutting down and accepts no new requests."""


@dataclass
class Event:
    """What a sequence did: kind "token" (a token, its text piece, optional log-probabilities)
    or "finish" (finish_reason: stop, length, cancelled, timeout, error)."""

    kind: str
    index: int
    token_id: int = -1
    text: str = ""
    logprob: float | None = None
    top_logprobs: list | None = None
    finish_reason: str | None = None
    error: str | None = None


@dataclass
class Request:
    prompt_ids: list
    params: SamplingParams
    n: int
    on_event: object
    logprobs: int | None = None  # None: none; k >= 0: the token's and the k most likely
    deadline: float | None = None
    id: int = 0
    submitted: float = field(default_factory=time.monotonic)
    first_token: float | None = None
    completion_tokens: int = 0
    finished: int = 0
    _cancelled: bool = False

    def cancel(self) -> None:
        """Ends every choice of the request at the next scheduler turn (finish "cancelled")."""
        self._cancelled = True

    @property
    def done(self) -> bool:
        return self.finished >= self.n


class _Seq:
    __slots__ = ("req", "index", "state", "pending", "logits", "counter", "seed", "text",
                 "history", "ntok")

    def __init__(self, req, index, state, seed):
        self.req, self.index, self.state, self.seed = req, index, state, seed
        self.pending = list(req.prompt_ids) if index == 0 else []
        self.logits = None
        self.counter = 0
        self.ntok = 0
        self.text = None
        self.history = None


class Metrics:
    """Counters and histograms for /metrics (read without a lock: single int/float updates)."""

    BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

    def __init__(self):
        self.requests = collections.Counter()  # by finish: ok / cancelled / timeout / error
        self.prompt_tokens = 0  # fed to the model
        self.cached_prompt_tokens = 0  # skipped thanks to the prefix cache
        self.completion_tokens = 0
        self.decode_steps = 0
        self.batch_rows = 0
        self.ttft = self._hist()
        self.latency = self._hist()
        self.started = time.monotonic()

    def _hist(self):
        return {"buckets": [0] * len(self.BUCKETS), "sum": 0.0, "count": 0}

    def observe(self, h, v):
        for i, b in enumerate(self.BUCKETS):
            if v <= b:
                h["buckets"][i] += 1
        h["sum"] += v
        h["count"] += 1


class PrefixCache:
    """States of prompt prefixes, least recently used first out, bounded in bytes.

    While a prompt is read, the state after every whole chunk (``prefill_chunk`` tokens: the
    prefix lengths are multiples of it) is stored under those tokens.  A new prompt starts
    from the state of its longest stored prefix shorter than itself (at least one token is
    always fed, for the logits).  A shared system prompt is so read once.  Chunked reading
    gives the same bits as reading at once, so a hit changes nothing in the output."""

    def __init__(self, capacity_bytes: int):
        self.capacity = capacity_bytes
        self.used = 0
        self.hits = 0
        self.misses = 0
        self._items: collections.OrderedDict = collections.OrderedDict()  # key -> core state

    def __len__(self) -> int:
        return len(self._items)

    def lookup(self, ids, chunk: int):
        """(number of prompt tokens covered, a private copy of the state) or None."""
        if not self.capacity:
            return None
        n = (len(ids) - 1) // chunk * chunk
        while n > 0:
            key = tuple(ids[:n])
            state = self._items.get(key)
            if state is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return n, state.clone()
            n -= chunk
        self.misses += 1
        return None

    def store(self, ids, state) -> None:
        key = tuple(ids)
        if key in self._items:
            self._items.move_to_end(key)
            return
        size = state.nbytes
        if size > self.capacity:
            return
        while self.used + size > self.capacity and self._items:
            _, old = self._items.popitem(last=False)
            self.used -= old.nbytes
        self._items[key] = state.clone()
        self.used += size


class Engine:
    """Runs a Model for many concurrent requests.  ``max_batch``: sequences decoded together;
    ``max_queue``: requests waiting beyond that (more raise QueueFullError);
    ``prefill_chunk``: prompt tokens fed per scheduler turn; ``prefix_cache_mib``: memory for
    states of prompt prefixes (0: no cache), see PrefixCache."""

    def __init__(self, model: Model, *, max_batch: int = 8, max_queue: int = 64,
                 prefill_chunk: int = 256, request_timeout: float | None = None,
                 prefix_cache_mib: float = 0.0):
        for name, v in (("max_batch", max_batch), ("max_queue", max_queue),
                        ("prefill_chunk", prefill_chunk)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidArgumentError(f"{name} must be an integer >= 1, got {v!r}")
        self.model = model
        self.max_batch, self.max_queue, self.prefill_chunk = max_batch, max_queue, prefill_chunk
        self.request_timeout = request_timeout
        if isinstance(prefix_cache_mib, bool) or not isinstance(prefix_cache_mib, (int, float)) \
                or not prefix_cache_mib >= 0:
            raise InvalidArgumentError(f"prefix_cache_mib must be a number >= 0, got "
                                       f"{prefix_cache_mib!r}")
        self.prefix_cache = PrefixCache(int(prefix_cache_mib * 2**20))
        self.metrics = Metrics()
        self._queue: collections.deque = collections.deque()
        self._seqs: list[_Seq] = []
        self._cond = threading.Condition()
        self._stop = False
        self.draining = False
        self._next_id = 0
        self._thread = threading.Thread(target=self._loop, name="gemma-native-engine",
                                        daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------ public
    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def active(self) -> int:
        return len(self._seqs)

    def submit(self, prompt_ids, params: SamplingParams, on_event, *, n: int = 1,
               logprobs: int | None = None, timeout: float | None = None) -> Request:
        """Queues a request; returns it (``cancel()`` ends it).  Raises QueueFullError /
        DrainingError / InvalidArgumentError at once, never later."""
        if self.draining or self._stop:
            raise DrainingError("the server is shutting down")
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.max_batch:
            raise InvalidArgumentError(f"n must be an integer in [1, {self.max_batch}], got {n!r}")
        ids = self.model._prompt_ids(list(prompt_ids), add_bos=False)
        if params.logit_bias:
            big = max(params.logit_bias)
            if big >= self.model.config.vocab_size:
                raise InvalidArgumentError(f"logit_bias names token id {big}, outside the "
                                           f"vocabulary (size {self.model.config.vocab_size})")
        if params.stop and self.model.tokenizer is None:
            raise InvalidArgumentError("stop strings need a model with a tokenizer")
        timeout = self.request_timeout if timeout is None else timeout
        req = Request(ids, params, n, on_event, logprobs,
                      time.monotonic() + timeout if timeout else None)
        with self._cond:
            if len(self._queue) >= self.max_queue:
                raise QueueFullError(f"the queue is full ({self.max_queue} requests waiting)")
            self._next_id += 1
            req.id = self._next_id
            self._queue.append(req)
            self._cond.notify()
        return req

    def drain(self, timeout: float) -> bool:
        """Stops accepting requests and waits up to ``timeout`` seconds for the running and
        queued ones to finish; True if they all did."""
        self.draining = True
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self._queue and not self._seqs:
                return True
            time.sleep(0.01)
        return not self._queue and not self._seqs

    def close(self) -> None:
        """Cancels what is left and stops the scheduler thread."""
        self.draining = True
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout=30)

    # ----------------------------------------------------------------------------- the loop
    def _emit(self, req: Request, ev: Event) -> None:
        try:
            req.on_event(ev)
        except Exception:  # a broken consumer must not stop the engine
            req.cancel()

    def _finish(self, seq: _Seq, reason: str, error: str | None = None) -> None:
        req = seq.req
        if seq.text is not None and reason in ("stop", "length"):
            tail = seq.text.finish()
            if tail:
                self._emit(req, Event("token", seq.index, -1, tail))
        indices = [seq.index]
        if seq.index == 0 and seq.text is None:  # ended while its prompt was read: no clones yet
            indices = list(range(req.n))
        for i in indices:
            self._emit(req, Event("finish", i, finish_reason=reason, error=error))
        req.finished += len(indices)
        if req.done:
            now = time.monotonic()
            kind = {"stop": "ok", "length": "ok"}.get(reason, reason)
            self.metrics.requests[kind] += 1
            self.metrics.observe(self.metrics.latency, now - req.submitted)

    def _admit(self) -> None:
        reqs = {id(s.req): s.req for s in self._seqs}.values()
        used = sum(r.n - r.finished for r in reqs)  # choices not cloned yet hold their slots
        with self._cond:
            while self._queue and used + self._queue[0].n <= self.max_batch:
                used += self._queue[0].n
                req = self._queue.popleft()
                p = req.params
                seed = p.seed if p.seed is not None else int.from_bytes(os.urandom(8), "little")
                seq = _Seq(req, 0, None, seed)
                hit = self.prefix_cache.lookup(req.prompt_ids, self.prefill_chunk)
                if hit is not None:
                    n_cached, state = hit
                    seq.state = state
                    seq.pending = seq.pending[n_cached:]
                    self.metrics.cached_prompt_tokens += n_cached
                else:
                    seq.state = self.model._core.new_state()
                self._seqs.append(seq)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stop and not self._queue and not self._seqs:
                    self._cond.wait()
                if self._stop:
                    break
            try:
                self._turn()
            except Exception as e:  # noqa: BLE001 - reported to every running request
                msg = f"{type(e).__name__}: {e}"
                for seq in list(self._seqs):
                    self._finish(seq, "error", msg)
                self._seqs.clear()
        for seq in list(self._seqs):
            self._finish(seq, "cancelled")
        self._seqs.clear()
        while self._queue:
            req = self._queue.popleft()
            for i in range(req.n):
                self._emit(req, Event("finish", i, finish_reason="cancelled"))

    def _turn(self) -> None:
        self._admit()
        now = time.monotonic()
        keep = []
        for seq in self._seqs:
            req = seq.req
            if req._cancelled:
                self._finish(seq, "cancelled")
            elif req.deadline is not None and now > req.deadline:
                self._finish(seq, "timeout")
            else:
                keep.append(seq)
        self._seqs = keep

        # 3. one chunk of the oldest prompt still being read
        for seq in self._seqs:
            if seq.pending:
                chunk, seq.pending = seq.pending[:self.prefill_chunk], \
                    seq.pending[self.prefill_chunk:]
                out = self.model._core.forward(np.asarray([chunk], np.int32), [seq.state], False)
                self.metrics.prompt_tokens += len(chunk)
                done = len(seq.req.prompt_ids) - len(seq.pending)
                if self.prefix_cache.capacity and done % self.prefill_chunk == 0:
                    self.prefix_cache.store(seq.req.prompt_ids[:done], seq.state)
                if not seq.pending:
                    self._prompt_done(seq, out[0])
                break

        # 4. one token for every sequence with logits, then one batched forward
        ready = [s for s in self._seqs if s.logits is not None]
        if not ready:
            return
        rows = np.stack([s.logits for s in ready])
        for i, s in enumerate(ready):
            if _logits.needs_processing(s.req.params):
                rows[i] = _logits.process(rows[i], s.req.params, s.history)
        ps = [s.req.params for s in ready]
        chosen = _core.sample(
            np.ascontiguousarray(rows), np.asarray([p.temperature for p in ps], np.float32),
            np.asarray([p.top_k for p in ps], np.int32),
            np.asarray([p.top_p for p in ps], np.float32),
            np.asarray([s.seed for s in ready], np.uint64),
            np.asarray([s.counter for s in ready], np.uint64)).tolist()
        self.metrics.decode_steps += 1
        self.metrics.batch_rows += len(ready)
        go_on = []
        max_context = self.model._core.max_context
        for i, (s, tok) in enumerate(zip(ready, chosen)):
            req = s.req
            s.counter += 1
            s.ntok += 1
            req.completion_tokens += 1
            self.metrics.completion_tokens += 1
            if req.first_token is None:
                req.first_token = time.monotonic()
                self.metrics.observe(self.metrics.ttft, req.first_token - req.submitted)
            if s.history is not None:
                s.history.add(tok)
            lp = top = None
            if req.logprobs is not None:
                lp, top = _logits.logprobs(rows[i], tok, req.logprobs)
            piece, hit = s.text.push(tok)
            self._emit(req, Event("token", s.index, tok, piece, lp, top))
            if hit:
                self._finish(s, "stop")
            elif s.ntok >= req.params.max_tokens or s.state.pos >= max_context:
                self._finish(s, "length")
            elif req._cancelled:
                self._finish(s, "cancelled")
            else:
                go_on.append((s, tok))
        ended = {id(s) for s in ready} - {id(s) for s, _ in go_on}
        self._seqs = [s for s in self._seqs if id(s) not in ended]
        for s in ready:
            s.logits = None
        if go_on:
            out = self.model._core.forward(np.asarray([[t] for _, t in go_on], np.int32),
                                           [s.state for s, _ in go_on], False)
            for (s, _), row in zip(go_on, out):
                s.logits = row

    def _prompt_done(self, seq: _Seq, logits: np.ndarray) -> None:
        req = seq.req
        p = req.params
        if p.max_tokens == 0:
            self._seqs.remove(seq)
            self._finish(seq, "length")
            return
        process = _logits.needs_processing(p)
        seq.logits = logits
        seq.text = _TextStream(self.model, p)
        seq.history = _logits.TokenHistory(req.prompt_ids) if process else None
        at = self._seqs.index(seq)
        for i in range(1, req.n):  # choices 2..n: the prompt's state, cloned
            c = _Seq(req, i, seq.state.clone(), (seq.seed + i) % 2**64)
            c.logits = logits.copy()
            c.text = _TextStream(self.model, p)
            c.history = seq.history.clone() if process else None
            self._seqs.insert(at + i, c)
