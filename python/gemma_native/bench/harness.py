"""What is timed, and where: each engine (ours or a peer) is built and measured in a fresh
interpreter, one at a time, so that its memory is its own and its peak RSS can be read.

The protocol: the parent runs ``python -m gemma_native.bench --_worker SPEC_JSON``; SPEC names
the engine, the parts to measure, the settings, a result file and a progress file.  The child
appends progress lines to the progress file (the parent echoes them to stderr), writes its
result as JSON to the result file and exits 0.  Anything else -- a crash, a non-zero exit, the
timeout -- becomes ``{"engine": ..., "failed": "<why>: <tail of its output>"}``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from .engines import ENGINES
from .probes import now, proc_status_bytes

WORKER_FLAG = "--_worker"


def tokens(n: int, vocab: int, seed: int) -> np.ndarray:
    """n random token ids in [3, min(vocab, 256000)) (past the special ids), int64."""
    hi = max(4, min(int(vocab), 256000))
    return np.random.default_rng(seed).integers(3, hi, size=n).astype(np.int64)


def config_dict(config) -> dict:
    """A model config (a dataclass) as a JSON-friendly dict (tuples become lists)."""
    d = dataclasses.asdict(config)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def _timed(fn):
    t0 = now()
    out = fn()
    return out, now() - t0


def _decode_rate(eng, state, batch, n, seed):
    """Times n - 1 decode steps of `batch` rows after one untimed warm-up step."""
    toks = tokens(n * batch, eng.vocab, seed).reshape(n, batch)
    eng.decode(state, toks[0])
    t0 = now()
    for i in range(1, n):
        eng.decode(state, toks[i])
    dt = now() - t0
    return {"steps": n - 1, "seconds": dt, "tokens_per_s": batch * (n - 1) / dt,
            "steps_per_s": (n - 1) / dt}


def run_engine(spec: dict) -> dict:
    """Builds one engine and measures the asked parts (runs in the child process).  A part that
    raises is recorded under "errors" (NotImplementedError: under "skipped") and the others
    still run."""
    parts, cfg = spec["parts"], spec["settings"]
    res = {"engine": spec["engine"], "errors": {}, "skipped": {}}
    t_start = now()

    def note(what):
        if spec.get("progress_file"):
            with open(spec["progress_file"], "a") as f:
                f.write(f"[bench]   {spec['engine']} +{now() - t_start:.0f}s: {what}\n")

    note("building the model")
    eng, res["load_seconds"] = _timed(lambda: ENGINES[spec["engine"]](spec))
    res.update(version=eng.version, threads=eng.threads, weights_bytes=eng.weights_bytes,
               rss_after_load_bytes=proc_status_bytes("VmRSS"))
    if spec["engine"] == "ours":
        res["config"] = config_dict(eng.cfg)
        res["weight_dtype"] = eng.model.weight_dtype
        res["compute_mode"] = eng.model.compute_mode
        res["weight_layouts"] = eng.model.weight_layouts
    V = eng.vocab

    def guard(key, fn):
        note(key.replace("_", " "))
        try:
            fn()
        except NotImplementedError as e:
            res["skipped"][key] = str(e)
        except Exception as e:  # a peer failing must not sink the whole run
            res["errors"][key] = f"{type(e).__name__}: {e}"

    if "ttft" in parts:
        def ttft():
            ids = tokens(cfg["ttft"], V, 1)[None]
            eng.prefill(ids[:, :8])  # warm-up
            _, dt = _timed(lambda: eng.prefill(ids))
            res["ttft"] = {"prompt_tokens": cfg["ttft"], "seconds": dt}
        guard("ttft", ttft)
    if "prefill" in parts:
        res["prefill"] = []
        for n in cfg["prefill"]:
            def pre(n=n):
                ids = tokens(n, V, 2)[None]
                times = _best_of(lambda: eng.prefill(ids), PREFILL_RUNS, PREFILL_BUDGET_S)
                dt = min(times)
                res["prefill"].append({"tokens": n, "seconds": dt, "tokens_per_s": n / dt,
                                       "runs": len(times)})
            guard(f"prefill_{n}", pre)
    probe = None  # the decode rounds' read probe; its buffer stays until the end (see below)
    if "decode" in parts and spec["engine"] == "ours":
        def dec_rounds():
            nonlocal probe
            probe = _ReadProbe(cfg["probe_bytes"])
            res["decode"] = _decode_rounds(eng, cfg, probe)
        guard("decode", dec_rounds)
    elif "decode" in parts:
        res["decode"] = []
        for b in cfg["batches"]:
            def dec(b=b):
                st = eng.prefill(tokens(cfg["decode_prompt"] * b, V, 3).reshape(b, -1))
                r = _decode_rate(eng, st, b, cfg["decode_tokens"] + 1, 4)
                res["decode"].append({"batch": b, **r})
            guard(f"decode_b{b}", dec)
    if "position" in parts:
        _measure_positions(eng, cfg, res, guard)
    res["rss_end_bytes"] = proc_status_bytes("VmRSS")
    res["rss_peak_self_bytes"] = peak = proc_status_bytes("VmHWM")
    if probe is not None and peak is not None and probe.rss_bytes is not None:
        # The probe's buffer is the bench's, not the engine's: it was resident from its
        # allocation to here, so every RSS sample since then holds exactly its bytes more.
        res["rss_peak_with_probe_bytes"] = peak
        res["rss_peak_before_probe_bytes"] = probe.hwm_before_bytes
        res["read_probe_rss_bytes"] = probe.rss_bytes
        res["rss_peak_self_bytes"] = max(probe.hwm_before_bytes, peak - probe.rss_bytes)
    return res


# Our decode is timed in rounds: each round runs a chunk of steps of every batch size in turn,
# and a short read of a probe buffer (cfg["probe_bytes"], larger than the caches) comes before
# the first chunk and after each one.  On shared machines the memory's own read rate moved
# 42-79 GB/s within seconds in one process (the AMD EPYC Zen 5 VM), so a decode rate compares
# fairly only with the read rate measured beside it, and batch b only with batch 1 of the same
# rounds; the totals (tokens_per_s over all timed steps) stay comparable with the peers'.
DECODE_ROUNDS = 4


class _ReadProbe:
    """Called: the machine's read rate now, bytes/s (gn.read_bandwidth of a buffer of nbytes on
    the kernels' threads with reps=2: two plain and two prefetching passes, ~20 ms for 256 MiB).
    It lives in the engine's process, so the process's peak RSS includes its buffer: rss_bytes
    is what the buffer added to VmRSS when it was filled, hwm_before_bytes the peak before it
    (both None off Linux)."""

    def __init__(self, nbytes: int):
        self.hwm_before_bytes = proc_status_bytes("VmHWM")
        rss0 = proc_status_bytes("VmRSS")
        self.buf = np.ones(nbytes // 8, dtype=np.int64).view(np.uint8)
        rss1 = proc_status_bytes("VmRSS")
        ok = None not in (rss0, rss1, self.hwm_before_bytes)
        self.rss_bytes = max(0, rss1 - rss0) if ok else None

    def __call__(self) -> float:
        import gemma_native as gn

        return gn.read_bandwidth(self.buf, reps=2)


def _decode_rounds(eng, cfg, probe):
    """Decode of every batch in cfg["batches"], interleaved in rounds (above): one result per
    batch with its totals and its chunks (steps, seconds, read rate before and after)."""
    batches, n = cfg["batches"], cfg["decode_tokens"]
    rounds = max(1, min(DECODE_ROUNDS, n))
    per = [n // rounds + (1 if r < n % rounds else 0) for r in range(rounds)]
    states, toks = {}, {}
    for b in batches:
        states[b] = eng.prefill(tokens(cfg["decode_prompt"] * b, eng.vocab, 3).reshape(b, -1))
        toks[b] = tokens((n + 1) * b, eng.vocab, 4).reshape(n + 1, b)
        eng.decode(states[b], toks[b][0])  # untimed warm-up step
    chunks = {b: [] for b in batches}
    before = probe()
    for r, k in enumerate(per):
        first = 1 + sum(per[:r])
        for b in batches:
            t0 = now()
            for i in range(first, first + k):
                eng.decode(states[b], toks[b][i])
            dt = now() - t0
            after = probe()
            chunks[b].append({"steps": k, "seconds": dt, "read_before_bytes_per_s": before,
                              "read_after_bytes_per_s": after})
            before = after
    out = []
    for b in batches:
        dt = sum(c["seconds"] for c in chunks[b])
        out.append({"batch": b, "steps": n, "seconds": dt, "tokens_per_s": b * n / dt,
                    "steps_per_s": n / dt, "chunks": chunks[b]})
    return out


# A prefill is timed up to PREFILL_RUNS times, the same for every engine, while the runs so far
# took less than PREFILL_BUDGET_S, and the fastest run counts: on shared machines one run of a
# sub-second prefill moved by up to 1.5x between neighbouring runs, and the first run of a size
# also pays for its buffers.  A prefill that takes seconds runs once.
PREFILL_RUNS = 3
PREFILL_BUDGET_S = 3.0


def _best_of(fn, runs, budget_s):
    """Seconds of each call of fn: at least one, at most `runs`, stopping once they add up to
    budget_s."""
    times = []
    while len(times) < runs and sum(times) < budget_s:
        times.append(_timed(fn)[1])
    return times


def _measure_positions(eng, cfg, res, guard):
    """Decode speed at a near and a far position (the far one capped below the engine's
    largest position)."""
    res["position"] = []
    near, far = cfg["positions"]
    if eng.max_pos is not None and far > eng.max_pos - cfg["decode_tokens"] - 8:
        far = eng.max_pos - cfg["decode_tokens"] - 8
    source = tokens(max(far, max(cfg["prefill"] + [near])), eng.vocab, 5)

    def pos_near():
        st = eng.prefill(source[None, :near])
        r = _decode_rate(eng, st, 1, cfg["decode_tokens"] + 1, 6)
        res["position"].append({"position": near, "how": "prefilled", **r})
    guard(f"position_{near}", pos_near)

    def pos_far():
        # engines whose far state is built from a real prefill start from the largest one
        first = max(cfg["prefill"] + [near]) if eng.far_from_largest else near
        st = eng.prefill(source[None, :first])
        st = eng.place(st, far, source)
        if st is None:
            raise NotImplementedError(eng.far_note)
        r = _decode_rate(eng, st, 1, cfg["decode_tokens"] + 1, 6)
        res["position"].append({"position": far, "how": eng.far_note, **r})
    guard(f"position_{far}", pos_far)


def worker(spec_json: str) -> None:
    """The child's side: measures and writes the result file named in the spec."""
    spec = json.loads(spec_json)
    res = run_engine(spec)
    with open(spec["out"], "w") as f:
        json.dump(res, f, default=str)


def _echo_progress(path, shown, show):
    """Prints what the child added to its progress file since the last call; returns the new
    offset."""
    if not show or not os.path.exists(path):
        return shown
    with open(path) as f:
        f.seek(shown)
        new = f.read()
    if new:
        sys.stderr.write(new)
        sys.stderr.flush()
    return shown + len(new.encode())


def run_child(spec: dict, timeout: float):
    """Runs run_engine(spec) in a fresh interpreter; returns (result, peak RSS bytes or None)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        prog = os.path.join(tmp, "progress.txt")
        spec = dict(spec, out=out, progress_file=prog)
        show = spec.get("show_progress")
        with open(os.path.join(tmp, "log.txt"), "w+") as log:
            p = subprocess.Popen([sys.executable, "-m", "gemma_native.bench", WORKER_FLAG,
                                  json.dumps(spec)], stdout=log, stderr=subprocess.STDOUT)
            deadline = now() + timeout
            shown, usage = 0, None
            while True:  # wait4 gives this child's own resource usage (ru_maxrss, KiB)
                shown = _echo_progress(prog, shown, show)
                pid, status, usage = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    p.returncode = os.waitstatus_to_exitcode(status)
                    break
                if now() > deadline:
                    p.kill()
                    _, status, usage = os.wait4(p.pid, 0)
                    p.returncode = -9
                    break
                time.sleep(0.05)
            _echo_progress(prog, shown, show)
            peak = usage.ru_maxrss * 1024 if usage is not None else None
            if p.returncode == 0 and os.path.exists(out):
                with open(out) as f:
                    res = json.load(f)
                # Linux carries ru_maxrss across fork+exec (it starts at the parent's RSS), so
                # the child's own VmHWM (reset by exec) is the figure; ru_maxrss goes beside it.
                res["rusage_maxrss_bytes"] = peak
                return res, res.get("rss_peak_self_bytes") or peak
            log.seek(0)
            tail = log.read()[-1500:]
        why = "timed out" if p.returncode == -9 else f"exit code {p.returncode}"
        return {"engine": spec["engine"], "failed": f"{why}: {tail.strip()}"}, None
