"""benchmarks/ops_gemm.py (GEMM / GEMV speed next to the machine's limits) runs end to end on
small shapes and reports what its docstring promises: every weight layout, the cores' peaks
before and after the GEMMs with the higher one used, and a read rate beside every GEMV sweep.
Its numbers are not checked beyond being positive (timings)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "ops_gemm.py"


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=600)


def test_ops_gemm_reports_every_layout_and_its_limits():
    if not SCRIPT.exists():
        pytest.skip("benchmarks/ is not next to the tests")
    r = _run("--threads", "1", "--shapes", "32,256,512;48,512,256", "--gemv-shape", "512,256",
             "--gemv-mib", "2", "--json")
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    gemms = [x for x in rep["results"] if x["kind"] == "gemm"]
    assert [(x["n"], x["k"], x["m"]) for x in gemms] == [(32, 256, 512), (48, 512, 256)]
    for x in gemms:
        for key in ("gn_f32", "gn_bf16", "gn_bf16r32", "gn_q8_0", "gn_q8_0r16", "numpy_f32"):
            assert x[key] > 0, (key, x)
    gemvs = [x for x in rep["results"] if x["kind"] == "gemv"]
    assert sorted({x["dtype"] for x in gemvs}) == ["bf16", "bf16r32", "f32", "q8_0", "q8_0r16"]
    assert all(x["n"] in (1, 2, 4) and x["gbs"] > 0 and x["read_gbs_beside"] > 0 for x in gemvs)
    assert len(gemvs) == 15
    before, after = rep["core_peaks_before"], rep["core_peaks_after"]
    assert before.keys() == after.keys()
    # the FMA loop of the kernel set's width, the higher of the two runs; none where the CPU
    # lacks that width (off x86-64, or an emulated AVX-512 set on an AVX2 CPU)
    key = "fp32_fma_512" if rep["cpu_isa"].startswith("avx512") else "fp32_fma_256"
    if key in before:
        assert rep["fp32_peak_gflops"] == max(before[key], after[key]) > 0
    else:
        assert math.isnan(rep["fp32_peak_gflops"])
    assert "GEMM 32x256 @ 256x512" in r.stdout and "GEMV bf16r32 N=4 512x256" in r.stdout


@pytest.mark.parametrize("args, message", [
    (("--shapes", "32,256"), "--shapes takes N,K,M triples"),
    (("--shapes", "32,100,64"), "multiple of 32"),
    (("--shapes", "32,x,64"), "not comma-separated integers"),
    (("--gemv-shape", "512,256,3"), "--gemv-shape takes one M,K pair"),
    (("--gemv-mib", "0"), "--gemv-mib must be positive"),
])
def test_ops_gemm_rejects_bad_arguments(args, message):
    if not SCRIPT.exists():
        pytest.skip("benchmarks/ is not next to the tests")
    r = _run(*args)
    assert r.returncode == 2 and message in r.stderr, (r.returncode, r.stderr[-2000:])
