"""What a service or a notebook does on its first day, and what must hold there: fork after
compute, one state in two threads, several threads on one model (CPU and cuda-emu), a sequence
that reaches the context length, memory that follows use rather than the configured sizes,
Ctrl-C in the middle of a long prompt, the thread count a container allows, and weights read
into memory so that model files may be replaced under a running process.

Anything that could hang runs in a subprocess with a timeout, so a regression fails the test
instead of stopping the suite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest

import gemma_native as gn
from gemma_native import _core

from tests.helpers import optional, tinyckpt
from tests.helpers.arrays import random_ids


def run_py(code: str, timeout: float = 120, env: dict | None = None) -> dict:
    """Runs code in a fresh interpreter (the same environment: it imports the same
    gemma_native); it must print one JSON line last."""
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                       text=True, timeout=timeout, env=e)
    assert p.returncode == 0, (p.returncode, p.stdout[-2000:], p.stderr[-4000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# 4. fork
# ---------------------------------------------------------------------------------------------


def test_fork_after_compute():
    """The parent computes first (its thread pool exists, with workers the child will not
    have); then a multiprocessing "fork" pool and a bare os.fork() compute in the children and
    get the parent's bits."""
    out = run_py("""
        import json, multiprocessing as mp, os
        import numpy as np, gemma_native as gn
        gn.set_num_threads(2)
        m = gn.random_model("gemma3-tiny", seed=1)
        ids = np.arange(1, 40) % m.config.vocab_size
        want = m.logits(ids)

        def child(i):
            return m.logits(ids).tobytes() == want.tobytes()

        with mp.get_context("fork").Pool(2) as pool:
            pooled = pool.map(child, range(4))
        pid = os.fork()
        if pid == 0:
            os._exit(0 if child(0) else 3)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"pool": pooled, "fork_status": status}))
    """, timeout=120)
    assert out == {"pool": [True] * 4, "fork_status": 0}


# ---------------------------------------------------------------------------------------------
# 5. threads: one state in two threads is refused; many threads on one model are fine
# ---------------------------------------------------------------------------------------------


def _overlap(model, prompt_len):
    """Runs a long forward on one state in a thread and meanwhile, from this thread, tries to
    use the same state.  Returns (refusals, forwards of ours that got in, the thread's logits,
    the state)."""
    state = model.new_state()
    prompt = random_ids(prompt_len, model.config.vocab_size, seed=2)
    box = {}
    t = threading.Thread(target=lambda: box.update(out=model.forward(prompt, state)))
    t.start()
    refused, ours = 0, 0
    while t.is_alive():
        try:
            state.to_numpy()  # read-only: harmless before the thread starts or after it ends
            state.clone()
        except gn.InvalidArgumentError as e:
            assert "in use by another call" in str(e), e
            refused += 1
            try:  # the thread is inside its forward: a second forward must be refused too
                model.forward([1], state)
                ours += 1  # it finished in between: ours ran after it
            except gn.InvalidArgumentError as e2:
                assert "in use by another call" in str(e2), e2
                refused += 1
        time.sleep(0.001)
    t.join()
    return refused, ours, box["out"], state


@pytest.mark.parametrize("preset", ["gemma3-tiny", "recurrentgemma-tiny"])
def test_one_state_in_two_threads_is_refused_not_corrupted(preset):
    extra = {"max_position_embeddings": 1 << 17} if preset.startswith("gemma") else {}
    model = gn.random_model(preset, dtype="float32", seed=4, **extra)
    n = 256
    while True:  # a prompt long enough that the two threads overlap
        refused, ours, got, state = _overlap(model, n)
        if refused or n >= 1 << 16:
            break
        n *= 4
    assert refused > 0, "never managed to overlap the two threads"
    # the thread's call and the state are exactly what the calls make one after another
    fresh = model.new_state()
    want = model.forward(random_ids(n, model.config.vocab_size, seed=2), fresh)
    for _ in range(ours):
        model.forward([1], fresh)
    np.testing.assert_array_equal(got, want)
    assert state.pos == fresh.pos
    np.testing.assert_array_equal(state.to_numpy(), fresh.to_numpy())


@pytest.mark.parametrize("preset", ["gemma3-tiny", "recurrentgemma-tiny"])
def test_many_threads_one_model(preset):
    model = gn.random_model(preset, dtype="float32", seed=5)
    prompts = [random_ids(30 + 7 * i, model.config.vocab_size, seed=i) for i in range(6)]
    want = [model.generate(list(map(int, p)), max_tokens=6, stop_token_ids=()).token_ids
            for p in prompts]
    got = [None] * len(prompts)

    def work(i):
        got[i] = model.generate(list(map(int, prompts[i])), max_tokens=6,
                                stop_token_ids=()).token_ids

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == want


# ---------------------------------------------------------------------------------------------
# 6. the emulated CUDA device: repeated generates, several threads
# ---------------------------------------------------------------------------------------------


def test_cuda_emu_generate_repeatedly_and_from_threads():
    """A replayed decode graph must read this call's token ids, never a freed array of an
    earlier call (the bits of 1.0f showed up as a token id); threads take turns on the device."""
    m = gn.random_model("recurrentgemma-tiny", dtype="float32", seed=6, device="cuda-emu")
    cpu = gn.random_model("recurrentgemma-tiny", dtype="float32", seed=6)
    prompt = [3, 1, 4, 1, 5]
    want = cpu.generate(prompt, max_tokens=3, stop_token_ids=()).token_ids
    for _ in range(12):
        junk = np.full(4096, 1.0, np.float32)  # freed arrays full of 1.0f, as in the report
        del junk
        assert m.generate(prompt, max_tokens=3, stop_token_ids=()).token_ids == want
    errors, results = [], []

    def work():
        try:
            results.append(m.generate(prompt, max_tokens=3, stop_token_ids=()).token_ids)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [want] * 4


# ---------------------------------------------------------------------------------------------
# 7. the context length
# ---------------------------------------------------------------------------------------------


def test_generation_reaching_the_context_keeps_its_tokens():
    ctx = 24
    m = gn.random_model("gemma3-tiny", dtype="float32", seed=7, max_position_embeddings=ctx)
    long_p = list(map(int, random_ids(20, m.config.vocab_size, seed=1)))
    short_p = list(map(int, random_ids(5, m.config.vocab_size, seed=2)))
    res = m.generate([long_p, short_p], max_tokens=10, stop_token_ids=())
    # 20 prompt tokens: tokens chosen at positions 20..24, i.e. 5 (the last one is not fed)
    assert len(res[0].token_ids) == ctx - 20 + 1 and res[0].finish_reason == "length"
    assert len(res[1].token_ids) == 10 and res[1].finish_reason == "length"
    alone = m.generate(long_p, max_tokens=10, stop_token_ids=())
    assert alone.token_ids == res[0].token_ids
    assert m.generate(short_p, max_tokens=10, stop_token_ids=()).token_ids == res[1].token_ids
    exact = m.generate(list(map(int, random_ids(ctx, m.config.vocab_size, seed=3))), max_tokens=5,
                       stop_token_ids=())
    assert len(exact.token_ids) == 1 and exact.finish_reason == "length"
    with pytest.raises(gn.InvalidArgumentError, match="context length is 24"):
        m.generate(list(map(int, random_ids(ctx + 1, m.config.vocab_size))), max_tokens=1)
    # a forward past the context is refused and leaves the state as it was
    s = m.new_state()
    m.forward(long_p, s)
    before = s.to_numpy()
    with pytest.raises(gn.InvalidArgumentError, match="context length exceeded"):
        m.forward(short_p, s)
    assert s.pos == 20
    np.testing.assert_array_equal(s.to_numpy(), before)


# ---------------------------------------------------------------------------------------------
# 8. state memory follows use; absurd sizes are refused at load
# ---------------------------------------------------------------------------------------------


def test_gemma_state_grows_with_use():
    m = gn.random_model("gemma3-tiny", dtype="float32", seed=8, sliding_window=1 << 20,
                        max_position_embeddings=1 << 22)
    c = m.config
    row_bytes = 2 * c.num_kv_heads * c.head_dim * 4  # K and V of one position, one layer
    s = m.new_state()
    assert s.nbytes == 0
    m.forward([1, 2], s)
    assert s.nbytes == 16 * row_bytes * c.num_layers  # the first allocation: 16 positions
    m.forward(list(range(1, 40)), s)  # 41 positions needed: max(41, 2 x 16)
    assert s.nbytes == 41 * row_bytes * c.num_layers
    # growing never moves a position: chunked (growing at every call) == whole
    t = random_ids(200, c.vocab_size, seed=9)
    whole = m.logits(t)
    a = m.new_state()
    pieces = np.concatenate([m.forward(t[i:i + 33], a, all_positions=True)
                             for i in range(0, 200, 33)])
    np.testing.assert_array_equal(pieces, whole)


def test_sliding_ring_grows_then_wraps():
    """Window 16: a ring of 16 grown in steps, then wrapped: chunked == whole == token by token,
    and saved/restored at every kind of position."""
    m = gn.random_model("gemma3-tiny", dtype="float32", seed=10)
    t = random_ids(70, m.config.vocab_size, seed=11)
    whole = m.logits(t)
    for chunk in (1, 5, 16, 17, 70):
        s = m.new_state()
        got = np.concatenate([m.forward(t[i:i + chunk], s, all_positions=True)
                              for i in range(0, 70, chunk)])
        np.testing.assert_array_equal(got, whole, err_msg=f"chunk {chunk}")
    for cut in (0, 3, 15, 16, 17, 40):
        s = m.new_state()
        if cut:
            m.forward(t[:cut], s)
        r = m.new_state()
        r.load_numpy(s.to_numpy(), s.pos)
        np.testing.assert_array_equal(m.forward(t[cut:], r, all_positions=True), whole[cut:])


def test_many_short_rows_cost_little_memory():
    """256 two-token rows on a Gemma 3 with a 2^20 window and 2^22 context: peak RSS stays
    near the model's (it was 15 MiB of zero-filled ring per row on the 270M)."""
    out = run_py("""
        import json, resource
        import gemma_native as gn
        m = gn.random_model("gemma3-tiny", seed=12, sliding_window=1 << 20,
                            max_position_embeddings=1 << 22)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        res = m.generate([[5, 6]] * 256, max_tokens=2, stop_token_ids=())
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"grew_kib": after - before, "n": len(res)}))
    """)
    assert out["n"] == 256
    assert out["grew_kib"] < 200 * 1024, out  # measured ~30 MiB


@pytest.mark.parametrize("preset,overrides,match", [
    ("gemma3-tiny", {"max_position_embeddings": (1 << 24) + 1}, "context length"),
    ("gemma3-tiny", {"max_position_embeddings": 1 << 40}, "context length"),
    ("recurrentgemma-tiny", {"attention_window_size": 1 << 20}, "state would take"),
])
def test_absurd_sizes_are_refused_at_load(preset, overrides, match):
    with pytest.raises((gn.ModelFormatError, gn.UnsupportedModelError), match=match):
        gn.random_model(preset, seed=0, **overrides)


# ---------------------------------------------------------------------------------------------
# 9. Ctrl-C during a long prefill
# ---------------------------------------------------------------------------------------------

# The child installs Python's Ctrl-C handler itself: a test run started as a background job of a
# non-interactive shell (`.ci/run &`) ignores SIGINT, children inherit that, and Python then
# installs no KeyboardInterrupt handler, so the signal would never reach the library.
_INTERRUPT_CHILD = """
    import json, signal, sys, time
    import numpy as np, gemma_native as gn
    signal.signal(signal.SIGINT, signal.default_int_handler)
    gn.set_num_threads({threads})
    m = gn.random_model("{preset}", dtype="bfloat16", seed=13)
    rng = np.random.default_rng(0)
    head = rng.integers(0, m.config.vocab_size, 50)
    long = rng.integers(0, m.config.vocab_size, {n})
    s = m.new_state()
    m.forward(head, s)
    saved = s.to_numpy()
    print("START", flush=True)
    t0 = time.monotonic()
    try:
        m.forward(long, s)
        print(json.dumps({{"interrupted": False, "seconds": time.monotonic() - t0}}))
    except KeyboardInterrupt:
        t1 = time.monotonic()
        pos = s.pos
        same = np.array_equal(s.to_numpy(), saved)
        fresh = m.new_state()
        m.forward(head, fresh)
        cont = np.array_equal(m.forward([7, 8], s), m.forward([7, 8], fresh))
        print(json.dumps({{"interrupted": True, "at": t1, "rolled_back": bool(same),
                           "continues": bool(cont), "pos": pos}}))
"""


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("preset", ["gemma3-270m", "recurrentgemma-tiny"])
def test_ctrl_c_interrupts_a_long_prefill_and_rolls_back(preset, threads):
    n = 5000 if preset == "gemma3-270m" else 100000  # both ~10 s of prefill at 2 threads here
    code = textwrap.dedent(_INTERRUPT_CHILD.format(preset=preset, n=n, threads=threads))
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "START"
        time.sleep(0.5)
        sent = time.monotonic()
        p.send_signal(signal.SIGINT)
        line = p.stdout.readline()
        out, err = p.communicate(timeout=120)
    finally:
        p.kill()
    res = json.loads(line)
    assert res["interrupted"], (res, err[-2000:])
    assert res["rolled_back"] and res["continues"] and res["pos"] == 50, res
    # time.monotonic is system-wide: the child noticed within ~0.5 s of the signal (bound
    # generous for loaded machines; a prefill that ignores it runs for many seconds)
    assert res["at"] - sent < 2.0, res["at"] - sent


# ---------------------------------------------------------------------------------------------
# 10. how many threads by default
# ---------------------------------------------------------------------------------------------


def test_default_threads_follow_the_affinity_mask():
    out = run_py("""
        import json, os
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        import gemma_native as gn
        info = gn.backend_info()
        print(json.dumps({"default": info["default_num_threads"],
                          "threads": info["num_threads"], "cpus": info["cpus"]}))
    """)
    assert out["default"] == 1 and out["threads"] == 1 and out["cpus"]["affinity"] == 1, out


def _write(root, rel, text):
    path = os.path.join(root, rel.lstrip("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def test_cgroup_quota_v1_and_v2(tmp_path):
    root = str(tmp_path)
    v2_mounts = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"
    _write(root, "/sys/fs/cgroup/cpu.max", "max 100000\n")
    _write(root, "/sys/fs/cgroup/app/cpu.max", "250000 100000\n")
    _write(root, "/sys/fs/cgroup/app/job/cpu.max", "max 100000\n")
    assert _core._cgroup_cpu_limit("0::/app/job\n", v2_mounts, root) == 2.5  # parent's quota
    assert _core._cgroup_cpu_limit("0::/\n", v2_mounts, root) == 0.0  # no quota
    v1_mounts = ("32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
                 "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n")
    _write(root, "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "50000\n")
    _write(root, "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n")
    _write(root, "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n")
    _write(root, "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    cg = "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n"
    assert _core._cgroup_cpu_limit(cg, v1_mounts, root) == 0.5
    # a container that sees its own cgroup as the root of the mount
    inside = "32 31 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu\n"
    _write(root, "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "300000\n")
    assert _core._cgroup_cpu_limit("3:cpu,cpuacct:/docker/abc\n", inside, root) == 3.0
    assert _core._cgroup_cpu_limit("", "", root) == 0.0


def test_thread_count_bounds_and_oversubscription_warning():
    usable = gn.backend_info()["cpus"]["usable"]
    try:
        with pytest.warns(RuntimeWarning, match="oversubscribes"):
            gn.set_num_threads(usable + 1)
        assert gn.backend_info()["num_threads"] == usable + 1
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            gn.set_num_threads(usable)
        for bad in (2**31, -1, 1025, True, 2.0, "2"):
            with pytest.raises(gn.InvalidArgumentError, match="number of threads"):
                gn.set_num_threads(bad)
    finally:
        gn.set_num_threads(None)
    assert gn.backend_info()["num_threads"] == gn.backend_info()["default_num_threads"]


def test_resizing_the_pool_between_calls_never_hangs_or_mixes_calls():
    """New workers once started from generation 0 and ran an empty pass for a call they were
    not part of: after a few resizes every worker slept while the caller waited (a hang of the
    attention chunking test in CI).  1000 resizes between parallel calls, in a child process so
    that a hang fails here instead of stalling the run."""
    code = textwrap.dedent("""
        import warnings
        import numpy as np
        import gemma_native as gn
        from gemma_native import ops
        warnings.simplefilter("ignore")
        rng = np.random.default_rng(0)
        x = rng.standard_normal((64, 256), dtype=np.float32)
        w = rng.standard_normal((512, 256), dtype=np.float32)
        ref = ops.linear(x, w)
        for i in range(1000):
            gn.set_num_threads(1 + i % 3)
            for _ in range(3):
                assert np.array_equal(ops.linear(x, w), ref), i
        print("done")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "done", r.stderr[-2000:]


# ---------------------------------------------------------------------------------------------
# 11. weights read into memory: the files may change under a running model
# ---------------------------------------------------------------------------------------------


def _corrupt(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:  # overwrite in place, then truncate, as `cp` would
        f.write(b"\0" * size)
        f.truncate(size // 3)


def test_mmap_false_survives_files_replaced_in_place(tmp_path):
    folder = tinyckpt.write_tiny_checkpoint(str(tmp_path / "hf"), dtype="bfloat16")
    m = gn.load(folder, mmap=False)
    t = [1, 2, 3, 4, 5]
    want = m.logits(t)
    for name in os.listdir(folder):
        if name.endswith(".safetensors"):
            _corrupt(os.path.join(folder, name))
    np.testing.assert_array_equal(m.logits(t), want)
    copy = tmp_path / "m.gguf"
    with open(optional.demo_gguf_path(), "rb") as src, open(copy, "wb") as dst:
        dst.write(src.read())
    g = gn.load(str(copy), mmap=False)
    want = g.logits([2, 818, 5279])
    _corrupt(str(copy))
    np.testing.assert_array_equal(g.logits([2, 818, 5279]), want)
    with pytest.raises(gn.InvalidArgumentError, match="mmap"):
        gn.load(folder, mmap="no")
