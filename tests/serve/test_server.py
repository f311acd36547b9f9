"""The OpenAI-compatible server, driven by the official `openai` client over loopback.

A tiny random RecurrentGemma with a tokenizer is served by uvicorn in a background thread of
this process; every expected value comes from the library itself (Model.generate, logits) or
from first principles (log-softmax in float64), never from a constant.
"""

from __future__ import annotations

import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

import gemma_native as gn  # noqa: E402
from tests.helpers.net import free_port, health  # noqa: E402
from gemma_native.serve import Engine  # noqa: E402
from gemma_native.serve.app import Limits, Server  # noqa: E402

NAME = "tiny-test"



class Running:
    """A server on a free loopback port, in a thread; stop() shuts it down."""

    def __init__(self, model, api_key=None, limits=None, **engine_kw):
        self.engine = Engine(model, **engine_kw)
        self.server = Server(self.engine, NAME, api_key=api_key, limits=limits)
        self.port = free_port()
        cfg = uvicorn.Config(self.server.app, host="127.0.0.1", port=self.port,
                             log_level="warning")
        self.uv = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.uv.run, daemon=True)
        self.thread.start()
        end = time.monotonic() + 20
        while not self.uv.started:
            assert time.monotonic() < end, "server did not start"
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}"

    def client(self, key="none", **kw):
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, **kw)

    def stop(self):
        self.uv.should_exit = True
        self.thread.join(10)
        self.engine.close()


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return gn.load(tiny_checkpoint(tokenizer=True, seed=3))


@pytest.fixture(scope="module")
def srv(model):
    r = Running(model, max_batch=4, max_queue=32, prefill_chunk=7,
                limits=Limits(max_body_bytes=64 * 1024, max_prompt_tokens=200,
                              max_tokens=60000))
    yield r
    r.stop()


PROMPTS = ["the quick brown fox", "a", "once upon a time there was a small model that",
           "1 2 3 4 5", "hello hello hello", "why is the sky blue? because"]


def test_models_health_metrics(srv):
    c = srv.client()
    assert [m.id for m in c.models.list().data] == [NAME]
    h = httpx.get(srv.url + "/health")
    assert h.status_code == 200 and h.json()["status"] == "ok"
    text = httpx.get(srv.url + "/metrics").text
    for metric in ("gemma_native_requests_total", "gemma_native_queue_depth",
                   "gemma_native_time_to_first_token_seconds_bucket",
                   "gemma_native_decode_steps_total"):
        assert metric in text


def test_greedy_completions_equal_generate_under_concurrency(srv, model):
    """Six clients at once (batch 4, so some queue), prompts chunked 7 tokens per turn: every
    text equals Model.generate alone."""
    c = srv.client()

    def one(prompt):
        r = c.completions.create(model=NAME, prompt=prompt, max_tokens=20, temperature=0)
        return r.choices[0].text, r.choices[0].finish_reason, r.usage

    with ThreadPoolExecutor(6) as ex:
        got = list(ex.map(one, PROMPTS * 2))
    for prompt, (text, reason, usage) in zip(PROMPTS * 2, got):
        ref = model.generate(prompt, max_tokens=20)
        assert text == ref.text
        assert reason == ref.finish_reason
        assert usage.prompt_tokens == len(model.encode(prompt, add_bos=True))
        assert usage.completion_tokens == len(ref.token_ids)


def test_token_id_prompt(srv, model):
    ids = model.encode("the quick brown fox", add_bos=True)
    r = srv.client().completions.create(model=NAME, prompt=ids, max_tokens=10, temperature=0)
    assert r.choices[0].text == model.generate(ids, max_tokens=10).text


def test_chat_stream_equals_nonstream_and_usage(srv, model):
    c = srv.client()
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]
    full = c.chat.completions.create(model=NAME, messages=msgs, max_tokens=16, temperature=0)
    ref = model.chat(msgs, max_tokens=16)
    assert full.choices[0].message.content == ref.text
    assert full.choices[0].message.role == "assistant"
    pieces, reasons, usage = [], [], None
    for ch in c.chat.completions.create(model=NAME, messages=msgs, max_tokens=16,
                                        temperature=0, stream=True,
                                        stream_options={"include_usage": True}):
        if ch.usage is not None:
            usage = ch.usage
        for choice in ch.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                reasons.append(choice.finish_reason)
    assert "".join(pieces) == ref.text
    assert reasons == [ref.finish_reason]
    assert usage is not None and usage.completion_tokens == len(ref.token_ids)


def test_completion_stream(srv, model):
    pieces = []
    for ch in srv.client().completions.create(model=NAME, prompt="1 2 3 4 5", max_tokens=12,
                                              temperature=0, stream=True):
        pieces.append(ch.choices[0].text)
    assert "".join(pieces) == model.generate("1 2 3 4 5", max_tokens=12).text


def test_logprobs_match_log_softmax_of_the_logits(srv, model):
    prompt = "once upon a time"
    ids = model.encode(prompt, add_bos=True)
    r = srv.client().completions.create(model=NAME, prompt=prompt, max_tokens=3, temperature=0,
                                        logprobs=3)
    lp = r.choices[0].logprobs
    logits = model.logits(ids)[-1].astype(np.float64)  # [T, V]: the last position
    ref = logits - (logits.max() + math.log(np.exp(logits - logits.max()).sum()))
    first = int(np.argmax(logits))
    assert lp.token_logprobs[0] == pytest.approx(ref[first], abs=1e-6)
    top = lp.top_logprobs[0]
    assert len(top) == 3
    assert max(top.values()) == pytest.approx(ref.max(), abs=1e-6)
    # chat form: top_logprobs entries, the chosen token first among them
    rc = srv.client().chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": "hi"}], max_tokens=2, temperature=0,
        logprobs=True, top_logprobs=2)
    content = rc.choices[0].logprobs.content
    assert len(content) == len(model.chat([{"role": "user", "content": "hi"}],
                                          max_tokens=2).token_ids)
    assert content[0].top_logprobs[0].logprob == pytest.approx(content[0].logprob, abs=1e-9)


def test_stop_string_and_seeds(srv, model):
    c = srv.client()
    ref = model.generate("the quick brown fox", max_tokens=24).text
    stop = ref[5:8]
    assert stop and ref.index(stop) >= 0
    r = c.completions.create(model=NAME, prompt="the quick brown fox", max_tokens=24,
                             temperature=0, stop=[stop])
    assert r.choices[0].text == ref[:ref.index(stop)]
    assert r.choices[0].finish_reason == "stop"
    kw = dict(model=NAME, prompt="hello", max_tokens=12, temperature=1.0, seed=1234)
    a, b = c.completions.create(**kw), c.completions.create(**kw)
    assert a.choices[0].text == b.choices[0].text
    assert a.choices[0].text == model.generate("hello", max_tokens=12, temperature=1.0,
                                               seed=1234).text
    # n = 3: choice 0 is the request's seed, the others differ from it (seed + i)
    r3 = c.completions.create(**kw, n=3)
    assert [ch.index for ch in r3.choices] == [0, 1, 2]
    assert r3.choices[0].text == a.choices[0].text
    assert len({ch.text for ch in r3.choices}) > 1


def _post(srv, path, body, headers=None, raw=None):
    return httpx.post(srv.url + path, content=raw if raw is not None else json.dumps(body),
                      headers={"content-type": "application/json", **(headers or {})})


@pytest.mark.parametrize("body,param", [
    ({"prompt": "x", "max_tokens": -1}, "max_tokens"),
    ({"prompt": "x", "max_tokens": 10**6}, "max_tokens"),  # over the limit (60000)
    ({"prompt": "x", "temperature": "hot"}, "temperature"),
    ({"prompt": "x", "temperature": 3.5}, "temperature"),
    ({"prompt": "x", "top_p": 0}, "top_p"),
    ({"prompt": "x", "n": 0}, "n"),
    ({"prompt": "x", "stream": "yes"}, "stream"),
    ({"prompt": "x", "stop": [1, 2]}, "stop"),
    ({"prompt": "x", "logit_bias": {"abc": 1}}, "logit_bias"),
    ({"prompt": "x", "logit_bias": {"5": 1000}}, "logit_bias"),
    ({"prompt": "x", "logit_bias": [1]}, "logit_bias"),
    ({"prompt": "x", "presence_penalty": 9}, "presence_penalty"),
    ({"prompt": "x", "seed": "s"}, "seed"),
    ({"prompt": "x", "skip_special_tokens": "no"}, "skip_special_tokens"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": [1, -4]}, "prompt"),
    ({"prompt": {"a": 1}}, "prompt"),
    ({"prompt": "word " * 400}, "prompt"),
])
def test_bad_completion_requests_get_400_naming_the_field(srv, body, param):
    r = _post(srv, "/v1/completions", {"model": NAME, **body})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param or param in err["message"]
    assert err["type"] == "invalid_request_error"


def test_skip_special_tokens_field(srv, model):
    """The extension field reaches the sampler: a forced <end_of_turn> shows only when asked."""
    eot = model.tokenizer.piece_to_id("<end_of_turn>")
    base = {"model": NAME, "prompt": "a", "max_tokens": 3, "temperature": 0,
            "logit_bias": {str(eot): 100}}
    hidden = _post(srv, "/v1/completions", base).json()["choices"][0]["text"]
    shown = _post(srv, "/v1/completions", {**base, "skip_special_tokens": False}).json()
    assert hidden == "" and shown["choices"][0]["text"] == "<end_of_turn>"


def test_other_errors_and_the_server_keeps_serving(srv, model):
    assert _post(srv, "/v1/completions", None, raw=b"{not json").status_code == 400
    assert _post(srv, "/v1/completions", None, raw=b"[1, 2]").status_code == 400
    r = _post(srv, "/v1/completions", {"model": "other", "prompt": "x"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = _post(srv, "/v1/completions", {"prompt": "x" * 70000})
    assert r.status_code == 413
    r = _post(srv, "/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = _post(srv, "/v1/chat/completions", {"messages": "hi"})
    assert r.status_code == 400
    with pytest.raises(openai.BadRequestError):
        srv.client().completions.create(model=NAME, prompt="x", max_tokens=-3)
    # still serving, and still right
    r = srv.client().completions.create(model=NAME, prompt="a", max_tokens=5, temperature=0)
    assert r.choices[0].text == model.generate("a", max_tokens=5).text


def _long_body(model, **kw):
    """A streaming request that runs for seconds: no stop ids can be sampled (logit_bias -100
    on every stop id) and max_tokens is large (the tiny model decodes ~10k tokens/s)."""
    return {"prompt": "hello", "max_tokens": 50000, "temperature": 0, "stream": True,
            "logit_bias": {str(i): -100 for i in model._stop_ids(gn.SamplingParams())}, **kw}


def _wait(cond, what, timeout=20.0):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_disconnect_frees_the_slot(srv, model):
    before = srv.engine.metrics.requests["cancelled"]
    with httpx.stream("POST", srv.url + "/v1/completions", json=_long_body(model)) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(3)]
        assert any(g.startswith("data: ") for g in got)
        assert srv.engine.active == 1
    _wait(lambda: srv.engine.active == 0, "the cancelled sequence to leave")
    assert srv.engine.metrics.requests["cancelled"] == before + 1


def test_api_key_and_queue_full(model):
    r = Running(model, api_key="sekret", max_batch=1, max_queue=1, prefill_chunk=4,
                limits=Limits(max_tokens=100000))
    hdr = {"Authorization": "Bearer sekret"}
    try:
        with pytest.raises(openai.AuthenticationError):
            r.client("wrong").models.list()
        assert _post(r, "/v1/completions", {"prompt": "x"}).status_code == 401
        assert r.client("sekret").models.list().data[0].id == NAME
        # one long request running, one queued behind it: a third is refused with 429
        with httpx.stream("POST", r.url + "/v1/completions", json=_long_body(model),
                          headers=hdr) as first:
            lines = first.iter_lines()  # kept: a dropped iterator closes the connection
            assert next(lines).startswith("data: ")
            _wait(lambda: r.engine.active == 1, "the first request to run")
            with httpx.stream("POST", r.url + "/v1/completions", json=_long_body(model),
                              headers=hdr):
                _wait(lambda: r.engine.queue_depth == 1, "the second request to queue")
                third = _post(r, "/v1/completions", {"prompt": "hi", "max_tokens": 2}, hdr)
                assert third.status_code == 429
                assert third.headers["retry-after"] == "1"
                assert third.json()["error"]["type"] == "rate_limit_exceeded"
        _wait(lambda: r.engine.active == 0 and r.engine.queue_depth == 0, "both to leave")
        ok = _post(r, "/v1/completions", {"prompt": "a", "max_tokens": 3, "temperature": 0},
                   hdr)
        assert ok.status_code == 200
        assert ok.json()["choices"][0]["text"] == model.generate("a", max_tokens=3).text
    finally:
        r.stop()


def test_sigterm_drains_running_streams_and_exits_0(tiny_checkpoint, model):
    """`gemma-native serve` in a subprocess: SIGTERM mid-stream lets the stream finish (all its
    tokens, then [DONE]), refuses new work, and the process exits with status 0."""
    import signal
    import subprocess
    import sys

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gemma_native.cli", "serve", tiny_checkpoint(tokenizer=True, seed=3),
         "--port", str(port), "--model-name", NAME, "--max-tokens-limit", "100000",
         "--drain-timeout", "60"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: health(url) == 200, "the server to start", timeout=60)
        n_tokens = 3000
        chunks, reasons, done = [], [], []
        with httpx.stream("POST", url + "/v1/completions",
                          json=_long_body(model, max_tokens=n_tokens), timeout=60) as r:
            lines = r.iter_lines()
            for line in lines:
                if line.startswith("data: "):
                    break
            proc.send_signal(signal.SIGTERM)
            _wait(lambda: health(url) != 200, "the server to stop taking requests")
            for line in lines:
                if line == "data: [DONE]":
                    done.append(line)
                elif line.startswith("data: "):
                    c = json.loads(line[6:])["choices"][0]
                    chunks.append(c)
                    if c["finish_reason"]:
                        reasons.append(c["finish_reason"])
        assert reasons == ["length"] and done
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()



def test_prefix_cache_reuses_a_shared_prefix_and_changes_nothing(model):
    """Prompts sharing a 3-chunk prefix: the second and later read only their own tail, and
    every text still equals Model.generate."""
    chunk = 8
    r = Running(model, max_batch=2, prefill_chunk=chunk, prefix_cache_mib=64)
    try:
        system = model.encode("you are a helpful model " * 3, add_bos=True)[:3 * chunk]
        assert len(system) == 3 * chunk
        tails = [model.encode(t, add_bos=False) for t in (" one", " two two", " three three three")]
        c = r.client()
        for i, tail in enumerate(tails):
            ids = system + tail
            before = r.engine.metrics.cached_prompt_tokens
            got = c.completions.create(model=NAME, prompt=ids, max_tokens=8, temperature=0)
            assert got.choices[0].text == model.generate(ids, max_tokens=8).text
            reused = r.engine.metrics.cached_prompt_tokens - before
            assert reused == (0 if i == 0 else 3 * chunk)
        assert r.engine.prefix_cache.hits == 2
        assert r.engine.prefix_cache.used <= 64 * 2**20
        assert "gemma_native_cached_prompt_tokens_total 48" in httpx.get(r.url + "/metrics").text
    finally:
        r.stop()


def test_prefix_cache_evicts_to_its_bound(model):
    state_bytes = model.new_state().nbytes
    eng = Engine(model, prefill_chunk=4, prefix_cache_mib=2.5 * state_bytes / 2**20)
    try:
        done = threading.Event()
        ids = list(range(10, 10 + 4 * 6 + 1))  # 6 whole chunks: 6 states offered to the cache
        eng.submit(ids, gn.SamplingParams(max_tokens=1, stop_token_ids=()),
                   lambda ev: ev.kind == "finish" and done.set())
        assert done.wait(30)
        assert len(eng.prefix_cache) == 2 and eng.prefix_cache.used == 2 * state_bytes
        # the newest prefixes stayed: a prompt sharing 5 chunks starts after them
        hit = eng.prefix_cache.lookup(ids[:4 * 5] + [3], 4)
        assert hit is not None and hit[0] == 4 * 5
        assert eng.prefix_cache.lookup(ids[:4 * 3] + [3], 4) is None
    finally:
        eng.close()
