"""The SIMT emulator catches the bugs it is there to catch, and every CUDA kernel runs clean on
it under ThreadSanitizer (docs/cuda.md, 'How it is verified without a GPU').

The C++ programs in tests/cuda/cuda_emu/ are compiled here with g++ from the checkout's sources:
planted.cc holds kernels with planted bugs (a missing __syncthreads, an out-of-bounds shared and
global index, a partial-warp shuffle); tsan_driver.cc runs every op of csrc/ops/cuda/op_list.h.
Without g++ or the sanitizer runtimes these tests skip, unless GEMMA_NATIVE_REQUIRE_SANITIZERS=1
(set by CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gemma_native import ops

from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT
CSRC = ROOT / "csrc"
HERE = Path(__file__).resolve().parent / "cuda_emu"
EMU_SOURCES = [CSRC / "ops/cuda/emu/simt_emu.cc"]
OPS_SOURCES = [CSRC / "ops/cuda/emu/ops_emu.cc", CSRC / "ops/checks.cc"]
REQUIRED = os.environ.get("GEMMA_NATIVE_REQUIRE_SANITIZERS") == "1"
TSAN_ENV = {**os.environ, "TSAN_OPTIONS": "halt_on_error=1 exitcode=66 second_deadlock_stack=1"}


def _skip(why):
    if REQUIRED:
        pytest.fail(f"GEMMA_NATIVE_REQUIRE_SANITIZERS=1 but {why}")
    pytest.skip(why)


def _compile(out: Path, sources, sanitizer: str | None):
    cxx = shutil.which("g++")
    if cxx is None:
        _skip("g++ is not installed")
    if not CSRC.is_dir():
        _skip("the C++ sources are not next to the tests (installed package only)")
    flags = ["-std=c++17", "-O1", "-g", "-pthread", f"-I{CSRC}", f"-I{CSRC / 'include'}"]
    if sanitizer:
        flags.append(f"-fsanitize={sanitizer}")
    cmd = [cxx, *flags, *map(str, sources), "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        if sanitizer and ("tsan" in r.stderr or "asan" in r.stderr):
            _skip(f"the {sanitizer} sanitizer runtime is missing: {r.stderr[-300:]}")
        raise AssertionError(f"compiling {out.name} failed:\n{r.stderr[-3000:]}")
    return out


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    d = tmp_path_factory.mktemp("cuda_emu")
    cache = {}

    def get(name, sources, sanitizer=None):
        key = (name, sanitizer)
        if key not in cache:
            cache[key] = _compile(d / f"{name}_{sanitizer or 'plain'}", sources, sanitizer)
        return cache[key]

    return get


def _planted(build, sanitizer=None):
    return build("planted", [HERE / "planted.cc", *EMU_SOURCES], sanitizer)


def _run(exe, *args, env=None):
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=600)


def test_correct_block_sum_is_clean_under_tsan(build):
    r = _run(_planted(build, "thread"), "sync_ok", env=TSAN_ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "ThreadSanitizer" not in r.stderr
    assert r.stdout.split() == ["result", str(sum(range(64)))]


def test_missing_syncthreads_is_a_data_race_under_tsan(build):
    r = _run(_planted(build, "thread"), "sync_missing", env=TSAN_ENV)
    assert r.returncode == 66, (r.returncode, r.stdout, r.stderr[-2000:])
    assert "WARNING: ThreadSanitizer: data race" in r.stderr
    assert "block_sum_kernel<false>" in r.stderr


def test_shared_out_of_bounds_is_an_emulator_fault(build):
    r = _run(_planted(build), "shared_oob")
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert "thread (63,0,0): shared array index 64 outside [0, 64)" in r.stdout


def test_global_out_of_bounds_is_caught_by_asan(build):
    r = _run(_planted(build, "address"), "global_oob")
    assert r.returncode != 0
    assert "AddressSanitizer: heap-buffer-overflow" in r.stderr
    assert "global_oob_kernel" in r.stderr
    # ... and the same program without the bug is clean under ASan.
    ok = _run(_planted(build, "address"), "sync_ok")
    assert ok.returncode == 0 and "AddressSanitizer" not in ok.stderr, ok.stderr[-2000:]


def test_partial_warp_shuffle_is_an_emulator_fault(build):
    r = _run(_planted(build), "partial_warp")
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert "mask 0xffffffff but the live lanes are 0x0000ffff" in r.stdout


def test_divergent_barriers_are_reported_as_deadlock(build):
    r = _run(_planted(build), "divergent_sync")  # fibers mode: found at once, not by a timeout
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert "deadlock" in r.stdout


def test_fibers_and_threads_modes_agree(monkeypatch):
    """The in-process emulator runs fibers by default; OS threads on request (what the
    sanitizer builds always use).  Both must give the same kernel results."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 333)).astype(np.float32)
    w = rng.standard_normal(333).astype(np.float32)
    monkeypatch.setenv("GEMMA_NATIVE_EMU_MODE", "fibers")
    a = ops.rmsnorm(x, w, device=ops.EMULATOR)
    monkeypatch.setenv("GEMMA_NATIVE_EMU_MODE", "threads")
    b = ops.rmsnorm(x, w, device=ops.EMULATOR)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, ops.rmsnorm(x, w), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("sanitizer", ["thread", "address"])
def test_every_cuda_kernel_is_clean_under_sanitizers(build, sanitizer):
    """TSan: no data race in any kernel; ASan: no read or write outside any buffer."""
    exe = build("tsan_driver", [HERE / "tsan_driver.cc", *EMU_SOURCES, *OPS_SOURCES], sanitizer)
    r = _run(exe, env=TSAN_ENV if sanitizer == "thread" else None)
    assert "Sanitizer" not in r.stderr, r.stderr[-4000:]
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr[-3000:])
    ran = {line.split()[1] for line in r.stdout.splitlines() if line.startswith("ran ")}
    assert ran == set(ops.emulated_ops())
