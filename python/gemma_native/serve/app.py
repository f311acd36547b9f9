"""The OpenAI-compatible HTTP API over an Engine (Starlette ASGI app).

Starlette rather than FastAPI: five routes, each validating its JSON by hand so that every
bad field gets an OpenAI-style 400 naming it (``{"error": {"message", "type", "param",
"code"}}``), with no pydantic models between the wire and the engine; uvicorn serves it.

Routes: POST /v1/completions, POST /v1/chat/completions (both with ``stream``), GET /v1/models,
GET /health, GET /metrics (Prometheus text format).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ..errors import GemmaNativeError, InvalidArgumentError
from ..model import SamplingParams
from .engine import DrainingError, Engine, QueueFullError


@dataclass
class Limits:
    """Per-request limits: body bytes, prompt tokens (None: the model's context), max_tokens."""

    max_body_bytes: int = 1 << 20
    max_prompt_tokens: int | None = None
    max_tokens: int = 4096


class ApiError(Exception):
    def __init__(self, status, message, param=None, etype="invalid_request_error", code=None,
                 headers=None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.etype, self.code, self.headers = etype, code, headers


def _error_response(e: ApiError) -> JSONResponse:
    body = {"error": {"message": e.message, "type": e.etype, "param": e.param, "code": e.code}}
    return JSONResponse(body, status_code=e.status, headers=e.headers)


# ---------------------------------------------------------------------------- field checks
def _bad(param, msg):
    raise ApiError(400, msg, param)


def _opt_number(body, name, lo, hi, default, lo_open=False):
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or v < lo or v > hi or (lo_open and v == lo):
        _bad(name, f"'{name}' must be a number in {'(' if lo_open else '['}{lo}, {hi}], got "
                   f"{json.dumps(v)}")
    return float(v)


def _opt_int(body, name, lo, hi, default):
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or v > hi:
        _bad(name, f"'{name}' must be an integer in [{lo}, {hi}], got {json.dumps(v)}")
    return v


def _opt_bool(body, name, default=False):
    v = body.get(name)
    if v is None:
        return default
    if not isinstance(v, bool):
        _bad(name, f"'{name}' must be true or false, got {json.dumps(v)}")
    return v


class Server:
    """Holds the engine, the served model name and the limits; builds the ASGI app."""

    def __init__(self, engine: Engine, model_name: str, *, api_key: str | None = None,
                 limits: Limits | None = None):
        self.engine, self.model_name, self.api_key = engine, model_name, api_key
        self.limits = limits or Limits()
        self.model = engine.model
        self.created = int(time.time())
        self.http_requests = {}
        self.app = Starlette(routes=[
            Route("/health", self.health, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
        ])

    # ----------------------------------------------------------------------------- helpers
    def _count(self, route, status):
        key = (route, status)
        self.http_requests[key] = self.http_requests.get(key, 0) + 1

    def _auth(self, request: Request):
        if self.api_key is None:
            return
        got = request.headers.get("authorization", "")
        if got != f"Bearer {self.api_key}":
            raise ApiError(401, "missing or wrong API key (Authorization: Bearer KEY)",
                           etype="authentication_error", code="invalid_api_key")

    async def _body(self, request: Request) -> dict:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > self.limits.max_body_bytes:
            raise ApiError(413, f"request body over {self.limits.max_body_bytes} bytes")
        data = bytearray()
        async for part in request.stream():
            data += part
            if len(data) > self.limits.max_body_bytes:
                raise ApiError(413, f"request body over {self.limits.max_body_bytes} bytes")
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(400, f"the body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        model = body.get("model")
        if model is not None and model != self.model_name:
            raise ApiError(404, f"model {model!r} is not served here (this server serves "
                                f"{self.model_name!r})", "model", code="model_not_found")
        return body

    def _params(self, body, default_max_tokens) -> tuple:
        """(SamplingParams, n, stream, include_usage) from the common OpenAI fields."""
        mt = body.get("max_completion_tokens", body.get("max_tokens"))
        name = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        if mt is None:
            mt = min(default_max_tokens, self.limits.max_tokens)
        elif isinstance(mt, bool) or not isinstance(mt, int) or mt < 0:
            _bad(name, f"'{name}' must be an integer >= 0, got {json.dumps(mt)}")
        elif mt > self.limits.max_tokens:
            _bad(name, f"'{name}' is {mt}; this server allows at most {self.limits.max_tokens}")
        stop = body.get("stop")
        if stop is None:
            stop = ()
        elif isinstance(stop, str):
            stop = (stop,)
        elif isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) and s
                                                                for s in stop):
            stop = tuple(stop)
        else:
            _bad("stop", "'stop' must be a non-empty string or a list of up to 4 of them")
        bias = body.get("logit_bias")
        if bias is not None and not isinstance(bias, dict):
            _bad("logit_bias", "'logit_bias' must be an object {token id: bias}")
        seed = body.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            _bad("seed", f"'seed' must be an integer, got {json.dumps(seed)}")
        n = _opt_int(body, "n", 1, self.engine.max_batch, 1)
        stream = _opt_bool(body, "stream")
        so = body.get("stream_options")
        if so is not None and not isinstance(so, dict):
            _bad("stream_options", "'stream_options' must be an object")
        include_usage = bool(so and so.get("include_usage") is True)
        try:
            p = SamplingParams(
                max_tokens=mt,
                temperature=_opt_number(body, "temperature", 0.0, 2.0, 1.0),
                top_p=_opt_number(body, "top_p", 0.0, 1.0, 1.0, lo_open=True),
                top_k=_opt_int(body, "top_k", 0, 2**31 - 1, 0),
                min_p=_opt_number(body, "min_p", 0.0, 0.999999, 0.0),
                presence_penalty=_opt_number(body, "presence_penalty", -2.0, 2.0, 0.0),
                frequency_penalty=_opt_number(body, "frequency_penalty", -2.0, 2.0, 0.0),
                repetition_penalty=_opt_number(body, "repetition_penalty", 0.0, 100.0, 1.0,
                                               lo_open=True),
                logit_bias=bias or None,
                seed=seed % 2**64 if seed is not None else None,
                stop=stop,
                skip_special_tokens=_opt_bool(body, "skip_special_tokens", True),
            )
        except InvalidArgumentError as e:
            raise ApiError(400, str(e), "logit_bias" if "logit_bias" in str(e) else None) \
                from None
        return p, n, stream, include_usage

    def _check_prompt(self, ids):
        limit = self.limits.max_prompt_tokens
        if limit is not None and len(ids) > limit:
            raise ApiError(400, f"the prompt has {len(ids)} tokens; this server allows at most "
                                f"{limit}", "prompt", code="context_length_exceeded")
        ctx = self.model._core.max_context
        if len(ids) > ctx:
            raise ApiError(400, f"the prompt has {len(ids)} tokens but the model's context "
                                f"length is {ctx}", "prompt", code="context_length_exceeded")

    def _piece(self, tok: int) -> str:
        t = self.model.tokenizer
        if t is None or not 0 <= tok < t.vocab_size:
            return str(tok)
        return t.decode([tok])

    def _submit(self, ids, p, n, logprobs, loop, queue):
        def on_event(ev):
            loop.call_soon_threadsafe(queue.put_nowait, ev)

        try:
            return self.engine.submit(ids, p, on_event, n=n, logprobs=logprobs)
        except QueueFullError as e:
            raise ApiError(429, str(e), etype="rate_limit_exceeded",
                           headers={"Retry-After": "1"}) from None
        except DrainingError as e:
            raise ApiError(503, str(e), etype="server_shutting_down") from None
        except InvalidArgumentError as e:
            raise ApiError(400, str(e)) from None

    async def _handle(self, request: Request, route: str, fn):
        try:
            if self.engine.draining:
                raise ApiError(503, "the server is shutting down", etype="server_shutting_down")
            self._auth(request)
            resp = await fn(request)
        except ApiError as e:
            resp = _error_response(e)
        except GemmaNativeError as e:
            resp = _error_response(ApiError(400, str(e)))
        self._count(route, resp.status_code)
        return resp

    # ------------------------------------------------------------------------------ routes
    async def health(self, request: Request):
        if self.engine.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        return JSONResponse({"status": "ok", "model": self.model_name})

    async def models(self, request: Request):
        async def fn(_):
            return JSONResponse({"object": "list", "data": [{
                "id": self.model_name, "object": "model", "created": self.created,
                "owned_by": "gemma_native"}]})
        return await self._handle(request, "/v1/models", fn)

    async def metrics(self, request: Request):
        return PlainTextResponse(self._metrics_text(),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    async def completions(self, request: Request):
        return await self._handle(request, "/v1/completions", self._completions)

    async def chat_completions(self, request: Request):
        return await self._handle(request, "/v1/chat/completions", self._chat)

    async def _completions(self, request: Request) -> Response:
        body = await self._body(request)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
            prompt = prompt[0]  # a batch of one
        if isinstance(prompt, str):
            if self.model.tokenizer is None:
                _bad("prompt", "this model has no tokenizer: send the prompt as token ids")
            if not prompt:
                _bad("prompt", "'prompt' is empty")
            ids = self.model.encode(prompt, add_bos=True)
        elif isinstance(prompt, list) and prompt and all(
                isinstance(i, int) and not isinstance(i, bool) for i in prompt):
            ids = prompt
            v = self.model.config.vocab_size
            bad = [i for i in ids if not 0 <= i < v]
            if bad:
                _bad("prompt", f"token id {bad[0]} is outside the vocabulary (size {v})")
        else:
            _bad("prompt", "'prompt' must be a non-empty string or list of token ids "
                           "(one prompt per request)")
        self._check_prompt(ids)
        p, n, stream, include_usage = self._params(body, 16)
        lp = body.get("logprobs")
        if lp is not None and (isinstance(lp, bool) or not isinstance(lp, int)
                               or not 0 <= lp <= 20):
            _bad("logprobs", "'logprobs' must be an integer in [0, 20]")
        if body.get("echo") is True:
            _bad("echo", "'echo' is not supported")
        return await self._run(request, ids, p, n, stream, include_usage, lp, chat=False)

    async def _chat(self, request: Request) -> Response:
        body = await self._body(request)
        if self.model.tokenizer is None:
            raise ApiError(400, "chat needs a model with a tokenizer", "messages")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            _bad("messages", "'messages' must be a non-empty list")
        clean = []
        for i, m in enumerate(messages):
            if not isinstance(m, dict):
                _bad(f"messages[{i}]", f"messages[{i}] must be an object")
            content = m.get("content")
            if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
                parts = []
                for c in content:
                    if not isinstance(c, dict) or c.get("type") != "text" or \
                            not isinstance(c.get("text"), str):
                        _bad(f"messages[{i}].content", "only text content parts are supported")
                    parts.append(c["text"])
                content = "".join(parts)
            role = m.get("role")
            if role == "developer":
                role = "system"
            clean.append({"role": role, "content": content})
        try:
            ids = self.model.chat_prompt_ids(clean)
        except InvalidArgumentError as e:
            raise ApiError(400, str(e), "messages") from None
        self._check_prompt(ids)
        p, n, stream, include_usage = self._params(
            body, max(1, self.model._core.max_context - len(ids)))
        lp = None
        if _opt_bool(body, "logprobs"):
            lp = _opt_int(body, "top_logprobs", 0, 20, 0)
        elif body.get("top_logprobs") is not None:
            _bad("top_logprobs", "'top_logprobs' needs 'logprobs': true")
        return await self._run(request, ids, p, n, stream, include_usage, lp, chat=True)

    # ------------------------------------------------------------------------ the responses
    def _logprob_entry(self, ev, chat):
        if ev.logprob is None:
            return None
        tok = self._piece(ev.token_id)
        if chat:
            return {"token": tok, "logprob": ev.logprob, "bytes": list(tok.encode()),
                    "top_logprobs": [{"token": self._piece(i), "logprob": v,
                                      "bytes": list(self._piece(i).encode())}
                                     for i, v in ev.top_logprobs]}
        return {"token": tok, "logprob": ev.logprob,
                "top": {self._piece(i): v for i, v in ev.top_logprobs}}

    async def _run(self, request, ids, p, n, stream, include_usage, lp, chat):
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        req = self._submit(ids, p, n, lp, loop, queue)
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        usage = lambda: {"prompt_tokens": len(ids), "completion_tokens": req.completion_tokens,  # noqa: E731
                         "total_tokens": len(ids) + req.completion_tokens}
        if stream:
            return StreamingResponse(self._sse(request, req, queue, rid, created, n, chat,
                                               include_usage, usage),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        texts = [[] for _ in range(n)]
        lps = [[] for _ in range(n)]
        reasons = [None] * n
        ended = 0  # finish events seen here (req.done flips on the engine thread, earlier)
        try:
            while ended < n:
                try:
                    ev = await asyncio.wait_for(queue.get(), timeout=0.5)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        req.cancel()
                    continue
                if ev.kind == "token":
                    texts[ev.index].append(ev.text)
                    if ev.logprob is not None:
                        lps[ev.index].append(self._logprob_entry(ev, chat))
                else:
                    ended += 1
                    reasons[ev.index] = ev.finish_reason
                    if ev.finish_reason == "error":
                        raise ApiError(500, f"generation failed: {ev.error}",
                                       etype="server_error")
        finally:
            if not req.done:
                req.cancel()
        choices = []
        for i in range(n):
            text = "".join(texts[i])
            if chat:
                choices.append({"index": i, "message": {"role": "assistant", "content": text},
                                "logprobs": {"content": lps[i]} if lp is not None else None,
                                "finish_reason": reasons[i]})
            else:
                choices.append({"index": i, "text": text, "finish_reason": reasons[i],
                                "logprobs": self._completion_logprobs(lps[i])
                                if lp is not None else None})
        return JSONResponse({"id": rid, "object": "chat.completion" if chat else
                             "text_completion", "created": created, "model": self.model_name,
                             "choices": choices, "usage": usage()})

    @staticmethod
    def _completion_logprobs(entries, offset=0):
        out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for e in entries:
            out["tokens"].append(e["token"])
            out["token_logprobs"].append(e["logprob"])
            out["top_logprobs"].append(e["top"])
            out["text_offset"].append(offset)
            offset += len(e["token"])
        return out

    async def _sse(self, request, req, queue, rid, created, n, chat, include_usage, usage):
        obj = "chat.completion.chunk" if chat else "text_completion"

        def chunk(choices, **extra):
            d = {"id": rid, "object": obj, "created": created, "model": self.model_name,
                 "choices": choices, **extra}
            return f"data: {json.dumps(d)}\n\n"

        try:
            if chat:
                yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""},
                              "logprobs": None, "finish_reason": None} for i in range(n)])
            ended = 0  # finish events sent (req.done flips on the engine thread, earlier)
            while ended < n:
                ev = await queue.get()
                if ev.kind == "token":
                    if not ev.text and ev.logprob is None:
                        continue
                    e = self._logprob_entry(ev, chat)
                    if chat:
                        c = {"index": ev.index, "delta": {"content": ev.text},
                             "logprobs": {"content": [e]} if e else None, "finish_reason": None}
                    else:
                        c = {"index": ev.index, "text": ev.text, "finish_reason": None,
                             "logprobs": self._completion_logprobs([e]) if e else None}
                    yield chunk([c])
                else:
                    ended += 1
                    if ev.finish_reason == "error":
                        err = {"error": {"message": f"generation failed: {ev.error}",
                                         "type": "server_error", "param": None, "code": None}}
                        yield f"data: {json.dumps(err)}\n\n"
                        return
                    c = {"index": ev.index, "finish_reason": ev.finish_reason, "logprobs": None}
                    c.update({"delta": {}} if chat else {"text": ""})
                    yield chunk([c])
            if include_usage:
                yield chunk([], usage=usage())
            yield "data: [DONE]\n\n"
        finally:
            if not req.done:  # the client went away (or the server is stopping)
                req.cancel()

    # ---------------------------------------------------------------------------- metrics
    def _metrics_text(self) -> str:
        m, e = self.engine.metrics, self.engine
        up = max(1e-9, time.monotonic() - m.started)
        lines = [
            "# HELP gemma_native_requests_total Finished requests by outcome.",
            "# TYPE gemma_native_requests_total counter",
        ]
        for kind in ("ok", "cancelled", "timeout", "error"):
            lines.append(f'gemma_native_requests_total{{outcome="{kind}"}} {m.requests[kind]}')
        lines += ["# HELP gemma_native_http_responses_total HTTP responses by route and status.",
                  "# TYPE gemma_native_http_responses_total counter"]
        for (route, status), v in sorted(self.http_requests.items()):
            lines.append(f'gemma_native_http_responses_total{{route="{route}",'
                         f'status="{status}"}} {v}')
        lines += [
            "# TYPE gemma_native_queue_depth gauge", f"gemma_native_queue_depth {e.queue_depth}",
            "# TYPE gemma_native_active_sequences gauge",
            f"gemma_native_active_sequences {e.active}",
            "# TYPE gemma_native_prompt_tokens_total counter",
            f"gemma_native_prompt_tokens_total {m.prompt_tokens}",
            "# HELP gemma_native_cached_prompt_tokens_total Prompt tokens not fed: their state "
            "came from the prefix cache.",
            "# TYPE gemma_native_cached_prompt_tokens_total counter",
            f"gemma_native_cached_prompt_tokens_total {m.cached_prompt_tokens}",
            "# TYPE gemma_native_prefix_cache_bytes gauge",
            f"gemma_native_prefix_cache_bytes {e.prefix_cache.used}",
            "# TYPE gemma_native_completion_tokens_total counter",
            f"gemma_native_completion_tokens_total {m.completion_tokens}",
            "# HELP gemma_native_decode_steps_total Batched decode steps; batch_rows / steps is "
            "the mean batch size.",
            "# TYPE gemma_native_decode_steps_total counter",
            f"gemma_native_decode_steps_total {m.decode_steps}",
            "# TYPE gemma_native_decode_batch_rows_total counter",
            f"gemma_native_decode_batch_rows_total {m.batch_rows}",
            "# HELP gemma_native_completion_tokens_per_second Mean since start.",
            "# TYPE gemma_native_completion_tokens_per_second gauge",
            f"gemma_native_completion_tokens_per_second {m.completion_tokens / up:.6g}",
        ]
        for name, h, what in (("time_to_first_token_seconds", m.ttft, "Queue to first token."),
                              ("request_latency_seconds", m.latency, "Queue to last token.")):
            full = f"gemma_native_{name}"
            lines += [f"# HELP {full} {what}", f"# TYPE {full} histogram"]
            for b, c in zip(m.BUCKETS, h["buckets"]):
                lines.append(f'{full}_bucket{{le="{b}"}} {c}')
            lines += [f'{full}_bucket{{le="+Inf"}} {h["count"]}', f"{full}_sum {h['sum']:.6g}",
                      f"{full}_count {h['count']}"]
        return "\n".join(lines) + "\n"


def create_app(engine: Engine, model_name: str, **kw):
    """The ASGI app serving ``engine`` under ``model_name`` (see Server)."""
    return Server(engine, model_name, **kw).app
