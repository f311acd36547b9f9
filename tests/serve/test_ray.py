"""`gemma-native serve --ray`: a local Ray instance, 2 replicas of a tiny model, driven through
Ray Serve's HTTP proxy by the official openai client (skipped without the `ray` extra)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
pytest.importorskip("ray.serve")

import gemma_native as gn  # noqa: E402
from tests.helpers.net import free_port, health  # noqa: E402

pytestmark = pytest.mark.slow




def test_two_replicas_through_the_ray_proxy(tiny_checkpoint):
    path = tiny_checkpoint(tokenizer=True, seed=5)
    model = gn.load(path)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gemma_native.cli", "serve", path, "--ray", "--replicas", "2",
         "--replica-cpus", "0.5", "--threads", "1", "--port", str(port), "--model-name", "tiny"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    lines: list = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),
                              daemon=True)
    reader.start()
    try:
        end = time.monotonic() + 180
        while health(url) != 200:
            if proc.poll() is not None:
                reader.join(10)
                pytest.fail(f"the server exited with {proc.returncode}:\n{''.join(lines)}")
            assert time.monotonic() < end, "Ray Serve did not come up in 180 s"
            time.sleep(0.5)
        c = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
        assert [m.id for m in c.models.list().data] == ["tiny"]
        prompts = ["the quick brown fox", "a", "1 2 3 4", "hello hello", "why is the sky"] * 2

        def one(prompt):
            return c.completions.create(model="tiny", prompt=prompt, max_tokens=12,
                                        temperature=0).choices[0].text

        with ThreadPoolExecutor(4) as ex:
            got = list(ex.map(one, prompts))
        assert got == [model.generate(p, max_tokens=12).text for p in prompts]
        pieces = [ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=10,
            temperature=0, stream=True)]
        assert "".join(pieces) == model.chat([{"role": "user", "content": "hi"}],
                                             max_tokens=10).text
        with pytest.raises(openai.BadRequestError):
            c.completions.create(model="tiny", prompt="x", max_tokens=-1)
        end = time.monotonic() + 60  # the banner: start() has returned, Ray's status read
        while not any("replicas running;" in x for x in list(lines)):
            assert time.monotonic() < end, "no banner:\n" + "".join(lines)[-3000:]
            time.sleep(0.1)
        assert any("(2 replicas running;" in x for x in lines)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=120)
        reader.join(10)
        assert rc == 0, "".join(lines)[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
