"""Test helper: the harness of the loader fuzzer, ``gemma_native.load(path)`` on thousands of
corrupted model files (tests/loading/test_fuzz_load_gguf.py and test_fuzz_load_safetensors.py).

Two tiny valid models are the seeds (:func:`write_seeds`): a Gemma 3 GGUF file
(tests/helpers/fuzz_load_gguf.py, which also holds its mutations) and a RecurrentGemma Hugging
Face folder (tests/helpers/fuzz_load_hf.py, likewise).  Each mutant (seeded: case ``i`` of a
campaign is always the same file) goes through the whole path -- file parsing, config parsing,
tensor mapping, native model construction -- and, when ``load`` succeeds, one forward pass
``model.logits([1, 2, 3])`` (:func:`run_case`).  The contract checked: every call either
succeeds or raises a :class:`gemma_native.GemmaNativeError` subclass.  Anything else is a
finding: another exception type (IndexError, a ValueError not from the package, MemoryError
...), a crash (segfault, abort, sanitizer report), a hang, or a load that needs absurd memory.

The mutants run in worker subprocesses (this module run with ``python -m``, the repository root
on their ``PYTHONPATH``), so that a crash or a hang costs one case, not the test session: each
case has an alarm (``CASE_TIMEOUT``) inside the worker and a deadline in the parent, and the
worker's address space is capped (``RLIMIT_AS``; under AddressSanitizer, which needs a huge
address space, ASan's own allocation limits are used instead), so an absurd allocation fails
fast as a MemoryError -- reported as a finding -- instead of taking the machine down.  A failing
campaign (:func:`run_campaign`, :func:`_report`) lists every distinct finding with the case
number, the mutation and where the exception came from; the mutant files are kept under the
pytest tmp folder.  :func:`run_isolated` runs one file the same way (the repro tests).

Under AddressSanitizer (a ``-DGEMMA_NATIVE_SANITIZE=ON`` build imported by a stock Python),
preload libstdc++ together with libasan::

    LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)" \\
    ASAN_OPTIONS=detect_leaks=0 pytest tests/loading/test_fuzz_load_gguf.py \\
        tests/loading/test_fuzz_load_safetensors.py

With libasan alone, libstdc++ is only loaded later (by dlopen of the extension), ASan's
``__cxa_throw`` interceptor finds no real ``__cxa_throw`` and every C++ exception thrown from
libstdc++ or sentencepiece aborts with ``CHECK failed: ... real___cxa_throw != 0``
(google/sanitizers#934) -- a harness problem, not a bug of the package.  The workers add
``allocator_may_return_null=1`` and size limits to ``ASAN_OPTIONS``; a failed throwing
``operator new`` still aborts under ASan (it cannot become std::bad_alloc there), so a huge
native allocation shows up as a Crash finding carrying ASan's out-of-memory report instead of
the MemoryError a normal build raises.  UBSan messages printed by the workers become findings
of the case that printed them.

Needs the ``gguf`` package (the test modules skip without it before importing this).
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass

import numpy as np
import pytest

import gemma_native as gn
from tests.helpers import REPO_ROOT
from tests.helpers.fuzz_load_gguf import GGUFLayout, gguf_mutant, gguf_spec, write_gguf
from tests.helpers.fuzz_load_hf import hf_mutant, write_hf_seed

WORKER_MODULE = "tests.helpers.fuzz_load_runner"  # run by the workers with ``python -m``
WORKERS = 2  # parallel worker processes per campaign
CASE_TIMEOUT = 4.0  # seconds, alarm inside the worker
PARENT_GRACE = 6.0  # seconds more before the parent kills a silent worker
MEM_HEADROOM = 2 << 30  # bytes of address space a worker may add to its baseline
RSS_FINDING = 768 << 20  # peak RSS growth (bytes) reported as absurd memory use
# A fresh state larger than this is reported too (RecurrentGemma's attention_window_size cap,
# 2**20, gives 128 MiB for the tiny seed; the seeds' own states take a few KiB).
STATE_FINDING = 256 << 20


def write_seeds(root) -> dict:
    """Writes both seeds into the folder ``root``: {"gguf": file, "hf": folder}."""
    meta, tensors = gguf_spec()
    gpath = root / "tiny-gemma3.gguf"
    write_gguf(gpath, meta, tensors)
    hpath = write_hf_seed(root / "tiny-recurrentgemma")
    return {"gguf": str(gpath), "hf": str(hpath)}


# ----------------------------------------------------------------------------- one case


class CaseTimeout(BaseException):
    """Raised by the per-case alarm (a BaseException so that library code does not eat it)."""


def _on_alarm(signum, frame):
    raise CaseTimeout()


def _where(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in tb if "gemma_native" in f.filename] or list(tb)
    if not ours:
        return "?"
    f = ours[-1]
    return f"{os.path.basename(f.filename)}:{f.lineno} {f.name}"


def run_case(path: str) -> dict:
    """Loads ``path`` and, on success, runs one forward pass.  The outcome as a dict."""
    signal.setitimer(signal.ITIMER_REAL, CASE_TIMEOUT)
    model = None
    try:
        model = gn.load(path)
        vocab = int(model.config.vocab_size)
        ids = [1, 2, 3] if vocab >= 4 else [k % vocab for k in (1, 2, 3)]
        out = model.logits(ids)
        if not isinstance(out, np.ndarray) or out.shape != (3, vocab):
            return {"res": "bug", "cls": "BadOutput",
                    "msg": f"logits gave {type(out).__name__} {getattr(out, 'shape', None)}",
                    "where": "logits"}
        state_bytes = model.new_state().nbytes
        if state_bytes > STATE_FINDING:
            return {"res": "bug", "cls": "AbsurdMemory", "where": "new_state",
                    "msg": f"a fresh state of this tiny model takes {state_bytes >> 20} MiB"}
        return {"res": "ok", "cls": "", "msg": "", "where": ""}
    except CaseTimeout:
        return {"res": "bug", "cls": "Hang", "msg": f"no answer within {CASE_TIMEOUT} s",
                "where": ""}
    except gn.GemmaNativeError as exc:
        return {"res": "err", "cls": type(exc).__name__, "msg": str(exc)[:300], "where": ""}
    except BaseException as exc:  # noqa: BLE001 -- this is what the fuzzer looks for
        return {"res": "bug", "cls": type(exc).__name__, "msg": str(exc)[:300],
                "where": _where(exc), "tb": traceback.format_exc()[-2000:]}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        del model


# ------------------------------------------------------------------------------- worker


def _under_asan() -> bool:
    try:
        with open("/proc/self/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


def _vm_size() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def worker_main(argv) -> int:
    """``python -m tests.helpers.fuzz_load_runner worker KIND BASE SCRATCH FAILDIR START STOP
    STEP``."""
    kind, base, scratch, faildir = argv[:4]
    start, stop, step = (int(x) for x in argv[4:7])
    gn.set_num_threads(1)
    signal.signal(signal.SIGALRM, _on_alarm)
    if kind == "gguf":
        with open(base, "rb") as f:
            base_bytes = f.read()
        lay = GGUFLayout(base_bytes)
        spec = gguf_spec()
    else:
        with open(os.path.join(base, "config.json")) as f:
            cfg = json.load(f)
        with open(os.path.join(base, "model.safetensors"), "rb") as f:
            st = f.read()
    # warm up (imports, thread pool) before measuring the baseline
    run_case(base)
    rss0 = _limit_memory()
    out = sys.stdout
    for i in range(start, stop, step):
        try:
            if kind == "gguf":
                data, desc = gguf_mutant(i, base_bytes, lay, spec)
                path = os.path.join(scratch, f"m{i}.gguf")
                with open(path, "wb") as f:
                    f.write(data)
            else:
                path = os.path.join(scratch, f"m{i}")
                shutil.rmtree(path, ignore_errors=True)  # left behind by a crashed worker
                desc = hf_mutant(i, cfg, st, path)
        except Exception:  # noqa: BLE001 -- a bug of this harness, reported as such
            out.write(json.dumps({"i": i, "phase": "gen-failed",
                                  "tb": traceback.format_exc()[-1500:]}) + "\n")
            out.flush()
            continue
        out.write(json.dumps({"i": i, "phase": "start", "op": desc}) + "\n")
        out.flush()
        sys.stderr.write(f"#case {i}\n")  # attributes sanitizer messages to their case
        sys.stderr.flush()
        r = run_case(path)
        r.update(i=i, phase="done", op=desc)
        grew = _peak_rss() - rss0
        if r["res"] != "bug" and grew > RSS_FINDING:
            r.update(res="bug", cls="AbsurdMemory", where="",
                     msg=f"peak RSS grew by {grew >> 20} MiB ({r['cls'] or 'loaded'})")
        if r["res"] == "bug":
            keep = os.path.join(faildir, os.path.basename(path))
            if os.path.isdir(path):
                shutil.copytree(path, keep, dirs_exist_ok=True)
            else:
                shutil.copyfile(path, keep)
            r["file"] = keep
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
        out.write(json.dumps(r) + "\n")
        out.flush()
        if grew > RSS_FINDING or r.get("cls") in ("Hang", "MemoryError"):
            # A fresh worker for the next case: the peak RSS never goes down, and a case
            # interrupted by the alarm may have left the process in a bad state.
            return 3
    return 0


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _limit_memory() -> int:
    """Caps the address space (not under ASan); returns the current peak RSS."""
    if not _under_asan():
        limit = _vm_size() + MEM_HEADROOM
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return _peak_rss()


def one_main(argv) -> int:
    """``python -m tests.helpers.fuzz_load_runner one PATH``: one case, its outcome as JSON on
    stdout."""
    gn.set_num_threads(1)
    signal.signal(signal.SIGALRM, _on_alarm)
    rss0 = _limit_memory()
    r = run_case(argv[0])
    grew = _peak_rss() - rss0
    if r["res"] != "bug" and grew > RSS_FINDING:
        r.update(res="bug", cls="AbsurdMemory", where="",
                 msg=f"peak RSS grew by {grew >> 20} MiB ({r['cls'] or 'loaded'})")
    sys.stdout.write(json.dumps(r) + "\n")
    return 0


def run_isolated(path) -> dict:
    """Outcome of :func:`run_case` on ``path`` in a fresh, memory-capped subprocess (a crash
    or a hang there is an outcome, not the end of the test session)."""
    try:
        p = subprocess.run([sys.executable, "-m", WORKER_MODULE, "one", os.fspath(path)],
                           check=False, capture_output=True, env=_worker_env(),
                           timeout=CASE_TIMEOUT + PARENT_GRACE + 30)
    except subprocess.TimeoutExpired:
        return {"res": "bug", "cls": "Hang", "msg": "killed: no answer in time", "where": ""}
    if p.returncode != 0 or not p.stdout.strip():
        return {"res": "bug", "cls": "Crash", "where": "",
                "msg": f"status {p.returncode}: {p.stderr.decode('utf-8', 'replace')[-3000:]}"}
    return json.loads(p.stdout.decode().strip().splitlines()[-1])


# ------------------------------------------------------------------------------- parent


@dataclass
class Campaign:
    kind: str
    total: int
    results: dict  # case -> result dict
    seconds: float


def _worker_env() -> dict:
    env = dict(os.environ)
    if _under_asan():
        # ASan reserves terabytes of address space, so RLIMIT_AS cannot be used: let ASan's
        # allocator refuse big requests (C++ new then throws bad_alloc, malloc returns NULL).
        extra = "allocator_may_return_null=1:max_allocation_size_mb=2048:hard_rss_limit_mb=4096"
        env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":" + extra).lstrip(":")
    env["PYTHONFAULTHANDLER"] = "1"
    # The workers run this module with ``python -m``: the repository root goes first on their
    # path, as pytest's "prepend" import mode puts it on the parent's (tests/README.md), so
    # that ``tests.helpers`` imports there too.
    paths = [str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def run_campaign(kind: str, base: str, workdir, total: int, workers: int = WORKERS) -> Campaign:
    """Runs cases 0..total-1 in ``workers`` subprocesses (case i in worker i % workers),
    restarting a worker after a crash, a hang or an absurd-memory case."""
    workdir = os.fspath(workdir)
    faildir = os.path.join(workdir, "failures")
    os.makedirs(faildir, exist_ok=True)
    results: dict = {}
    t0 = time.monotonic()
    sel = selectors.DefaultSelector()
    env = _worker_env()

    def spawn(w, start):
        scratch = os.path.join(workdir, f"scratch{w}")
        os.makedirs(scratch, exist_ok=True)
        errpath = os.path.join(workdir, f"worker{w}.{start}.stderr")
        err = open(errpath, "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE, "worker", kind, base, scratch, faildir,
             str(start), str(total), str(workers)],
            stdout=subprocess.PIPE, stderr=err, env=env, cwd=workdir)
        err.close()
        state = {"w": w, "proc": proc, "buf": b"", "current": None, "op": None, "last": None,
                 "deadline": time.monotonic() + 60.0, "stderr": errpath}
        sel.register(proc.stdout, selectors.EVENT_READ, state)
        return state

    def finish(state, crashed_reason=None):
        """Reaps a worker; returns the case to restart from (None: nothing more to do)."""
        sel.unregister(state["proc"].stdout)
        proc = state["proc"]
        if crashed_reason is not None:
            proc.kill()
        rc = proc.wait()
        proc.stdout.close()
        cur = state["current"]
        if cur is not None and cur not in results:
            with open(state["stderr"], "rb") as f:
                tail = f.read()[-6000:].decode("utf-8", "replace")
            how = crashed_reason or (f"worker died with signal {-rc}" if rc < 0 else
                                     f"worker exited with status {rc}")
            results[cur] = {"i": cur, "res": "bug", "op": state["op"],
                            "cls": "Hang" if crashed_reason else "Crash", "msg": how,
                            "where": "", "tb": tail}
        if rc == 0 and cur is None:
            return None  # ran to the end
        if state["last"] is None:
            with open(state["stderr"], "rb") as f:
                tail = f.read()[-3000:].decode("utf-8", "replace")
            raise AssertionError(f"fuzz worker failed before its first case (status {rc}):\n"
                                 f"{tail}")
        nxt = state["last"] + workers
        return nxt if nxt < total else None

    live = [spawn(w, w) for w in range(min(workers, total))]
    while live:
        for key, _ in sel.select(timeout=0.5):
            state = key.data
            chunk = os.read(state["proc"].stdout.fileno(), 1 << 16)
            if not chunk:  # the worker ended
                live.remove(state)
                nxt = finish(state)
                if nxt is not None:
                    live.append(spawn(state["w"], nxt))
                continue
            state["buf"] += chunk
            while b"\n" in state["buf"]:
                line, state["buf"] = state["buf"].split(b"\n", 1)
                msg = json.loads(line)
                state["last"] = msg["i"]
                if msg["phase"] == "start":
                    state["current"], state["op"] = msg["i"], msg["op"]
                    state["deadline"] = time.monotonic() + CASE_TIMEOUT + PARENT_GRACE
                elif msg["phase"] == "done":
                    results[msg["i"]] = msg
                    state["current"] = None
                    state["deadline"] = time.monotonic() + 60.0
                else:
                    results[msg["i"]] = {"i": msg["i"], "res": "harness-error",
                                         "tb": msg.get("tb", "")}
        now = time.monotonic()
        for state in list(live):
            if now > state["deadline"]:
                live.remove(state)
                nxt = finish(state, "killed by the parent: no answer in time")
                if nxt is not None:
                    live.append(spawn(state["w"], nxt))
    sel.close()
    _sanitizer_messages(workdir, results)
    return Campaign(kind, total, results, time.monotonic() - t0)


SANITIZER_MARKS = ("runtime error:", "ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "WARNING: AddressSanitizer")


def _sanitizer_messages(workdir: str, results: dict) -> None:
    """Non-fatal sanitizer reports (UBSan's "runtime error: ...") only reach the workers'
    stderr; each one becomes a finding of the case that printed it."""
    for name in sorted(os.listdir(workdir)):
        if not name.endswith(".stderr"):
            continue
        case = None
        with open(os.path.join(workdir, name), "rb") as f:
            for raw in f:
                line = raw.decode("utf-8", "replace").rstrip()
                if line.startswith("#case "):
                    case = int(line[6:])
                elif case is not None and any(m in line for m in SANITIZER_MARKS):
                    r = results.get(case, {"i": case})
                    if r.get("res") == "bug" and r.get("cls") == "Crash":
                        continue  # the crash already carries the report
                    outcome = r.get("cls") or r.get("res")
                    results[case] = dict(r, res="bug", cls="SanitizerReport",
                                         where=line.split(": runtime error")[0][-80:],
                                         msg=f"{line[:300]} (outcome: {outcome})")


def summarize(c: Campaign) -> tuple[str, list]:
    """(one-line statistics, list of findings grouped by (type, location))."""
    counts: dict = {}
    groups: dict = {}
    for r in c.results.values():
        label = r["res"] if r["res"] != "err" else r["cls"]
        counts[label] = counts.get(label, 0) + 1
        if r["res"] == "bug":
            groups.setdefault((r["cls"], r.get("where", "")), []).append(r)
        elif r["res"] == "harness-error":
            groups.setdefault(("HarnessError", r["tb"].strip().splitlines()[-1]), []).append(r)
    missing = c.total - len(c.results)
    stats = (f"{c.kind}: {len(c.results)}/{c.total} cases in {c.seconds:.1f} s; "
             + ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
             + (f"; {missing} never ran" if missing else ""))
    findings = []
    for (cls, where), rs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        rs = sorted(rs, key=lambda r: r["i"])
        ex = rs[0]
        findings.append(
            f"{cls} at {where or '-'}: {len(rs)} case(s), e.g. case {ex['i']} [{ex.get('op')}]"
            f" -> {ex.get('msg', '')[:200]}"
            + (f"\n    file: {ex['file']}" if ex.get("file") else "")
            + (f"\n    also cases {[r['i'] for r in rs[1:6]]}" if len(rs) > 1 else "")
            + (f"\n    {ex['tb'].strip().splitlines()[-1][:300]}" if ex.get("tb") else ""))
    return stats, findings


def _report(c: Campaign):
    stats, findings = summarize(c)
    print(stats)
    missing = c.total - len(c.results)
    if findings or missing:
        pytest.fail(f"{len(findings)} distinct finding(s); {stats}\n" + "\n".join(findings)
                    + ("\n(some cases never ran)" if missing else ""), pytrace=False)


# ------------------------------------------------------------------------- repro helpers


def load_and_forward(path):
    """gn.load + one forward pass; a GemmaNativeError is a fine outcome (returned)."""
    try:
        model = gn.load(path)
        vocab = model.config.vocab_size
        model.logits([1, 2, 3] if vocab >= 4 else [0])
        return model
    except gn.GemmaNativeError as exc:
        return exc


def assert_clean_isolated(path):
    r = run_isolated(path)
    assert r["res"] in ("ok", "err"), (
        f"{r['cls']} at {r.get('where') or '-'}: {r.get('msg', '')}\n{r.get('tb', '')}")


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "worker":
    sys.exit(worker_main(sys.argv[2:]))
if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "one":
    sys.exit(one_main(sys.argv[2:]))
