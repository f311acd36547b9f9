"""Load test of `gemma-native serve` on loopback: C concurrent streaming clients x R requests.

Starts the server in a subprocess (its own threads and GIL), then runs the same greedy
requests (mixed prompt lengths) twice: with one client, then with C clients at once.
Reports per pass: requests/s, aggregate completion tokens/s, time to first token and
inter-token latency (p50 / p99), and the C-client / 1-client aggregate ratio; checks that every
response of the concurrent pass equals the single-client one for its prompt (nothing lost,
nothing mixed up), and exits 1 if not.

    python benchmarks/serve_load.py [MODEL] [--clients 8] [--requests 2] [--max-tokens 32]
        [--threads N] [--dtype bfloat16] [--json out.json]

MODEL: as for `gemma-native serve` (default random:recurrentgemma-2b).  --ray-replicas N serves
through Ray Serve instead (every replica loads the model; the mean decode batch is then that of
the replica /metrics happened to reach).  Bounded: every request
has a max_tokens, and the whole run a --timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prompt_ids(i: int) -> list:
    """Token-id prompts of mixed lengths (8 .. 200 tokens), deterministic per index; ids below
    250, inside every preset's vocabulary."""
    n = (8, 40, 120, 200, 16, 64)[i % 6]
    return [2] + [(7919 * (i + 1) * (j + 3)) % 240 + 10 for j in range(n - 1)]


def one_request(url, ids, max_tokens, out, timeout):
    t0 = time.perf_counter()
    stamps, text_ids = [], []
    body = {"prompt": ids, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "logprobs": 0}
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=timeout) as r:
        if r.status_code != 200:
            out.append({"error": f"HTTP {r.status_code}: {r.read()[:200]!r}"})
            return
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            c = json.loads(line[6:])["choices"][0]
            lp = c.get("logprobs")
            if lp and lp["tokens"]:
                stamps.append(time.perf_counter())
                text_ids.append(lp["tokens"][0])
    end = time.perf_counter()
    itl = [b - a for a, b in zip(stamps, stamps[1:])]
    out.append({"ttft": (stamps[0] - t0) if stamps else None, "itl": itl,
                "tokens": len(stamps), "pieces": text_ids, "time": end - t0})


def run_pass(url, clients, jobs, max_tokens, timeout):
    """jobs: list of (index, ids); clients threads take them in order."""
    results = {}
    lock = threading.Lock()
    queue = list(jobs)

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                i, ids = queue.pop(0)
            out = []
            one_request(url, ids, max_tokens, out, timeout)
            results[i] = out[0]

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return results, wall


def pct(xs, q):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def summarize(results, wall):
    toks = sum(r.get("tokens", 0) for r in results.values())
    itl = [x for r in results.values() for x in r.get("itl", [])]
    return {"requests": len(results), "wall_s": wall, "requests_per_s": len(results) / wall,
            "tokens_per_s": toks / wall, "completion_tokens": toks,
            "ttft_p50_s": pct([r.get("ttft") for r in results.values()], 50),
            "ttft_p99_s": pct([r.get("ttft") for r in results.values()], 99),
            "itl_p50_s": pct(itl, 50), "itl_p99_s": pct(itl, 99)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="?", default="random:recurrentgemma-2b")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=2, help="requests per client")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--activations", default="int8")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds for the whole run")
    ap.add_argument("--ray-replicas", type=int, default=0,
                    help="serve through Ray Serve with this many replicas (needs the ray extra)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    port = free_port()
    cmd = [sys.executable, "-m", "gemma_native.cli", "serve", args.model, "--port", str(port),
           "--model-name", "bench", "--max-batch", str(max(1, args.clients)),
           "--max-queue", str(args.clients * args.requests + 8), "--activations",
           args.activations, "--log-level", "warning"]
    if args.ray_replicas:
        cmd += ["--ray", "--replicas", str(args.ray_replicas)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.dtype:
        cmd += ["--dtype", args.dtype]
    log = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a full pipe would block it
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + args.timeout
    try:
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                print(log.read()[-5000:], file=sys.stderr)
                sys.exit("the server did not start")
            time.sleep(0.5)
        n = args.clients * args.requests
        jobs = [(i, prompt_ids(i)) for i in range(n)]
        left = deadline - time.monotonic()
        single, wall1 = run_pass(url, 1, jobs, args.max_tokens, left)
        left = deadline - time.monotonic()
        many, wallc = run_pass(url, args.clients, jobs, args.max_tokens, left)
        errors = [r["error"] for r in list(single.values()) + list(many.values()) if "error" in r]
        mismatched = [i for i in range(n) if "error" not in many[i]
                      and many[i]["pieces"] != single[i]["pieces"]]
        s1, sc = summarize(single, wall1), summarize(many, wallc)
        metrics = httpx.get(url + "/metrics").text
        steps = rows = 0
        for line in metrics.splitlines():
            if line.startswith("gemma_native_decode_steps_total "):
                steps = float(line.split()[1])
            if line.startswith("gemma_native_decode_batch_rows_total "):
                rows = float(line.split()[1])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    report = {"model": args.model, "clients": args.clients, "requests": n,
              "ray_replicas": args.ray_replicas,
              "max_tokens": args.max_tokens, "cpu": cpu, "cores": os.cpu_count(),
              "one_client": s1, "concurrent": sc,
              "aggregate_ratio": sc["tokens_per_s"] / max(s1["tokens_per_s"], 1e-12),
              "mean_decode_batch": rows / steps if steps else 0.0,
              "errors": errors, "mismatched": mismatched}
    where = f"Ray Serve, {args.ray_replicas} replicas" if args.ray_replicas else "one engine"
    print(f"model {args.model} ({where}), CPU {cpu}, {os.cpu_count()} cores; {n} greedy "
          f"streaming requests, max_tokens {args.max_tokens}")
    for name, s in (("1 client", s1), (f"{args.clients} clients", sc)):
        print(f"  {name:>10}: {s['requests_per_s']:.3f} req/s, {s['tokens_per_s']:.2f} tok/s, "
              f"TTFT p50/p99 {s['ttft_p50_s']:.3f}/{s['ttft_p99_s']:.3f} s, "
              f"inter-token p50/p99 {s['itl_p50_s'] * 1e3:.1f}/{s['itl_p99_s'] * 1e3:.1f} ms")
    print(f"  aggregate tokens/s, {args.clients} clients vs 1: {report['aggregate_ratio']:.2f}x "
          f"(mean decode batch over both passes {report['mean_decode_batch']:.2f})")
    print(f"  errors: {len(errors)}, responses differing from the single-client pass: "
          f"{len(mismatched)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 1 if errors or mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
