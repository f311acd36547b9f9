"""benchmarks/cuda_ops.py runs end to end on the SIMT emulator (tiny shapes), so the GPU
benchmark is ready to run the day a GPU is lent; its numbers are not checked (they are the
emulator's).  With a GPU (marked gpu) it runs at the real shapes."""

from __future__ import annotations

import json
import runpy

import pytest

import gemma_native as gn

from tests.helpers import REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "cuda_ops.py"


def _main():
    if not SCRIPT.exists():
        pytest.skip("benchmarks/ is not next to the tests")
    return runpy.run_path(str(SCRIPT), run_name="cuda_ops")["main"]


def test_cuda_ops_benchmark_runs_on_the_emulator(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = _main()(["--device", "cuda-emu", "--tiny", "--iters", "1", "--steps", "2",
                  "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["device"] == "cuda-emu" and r["peak_gb_per_s"] is None
    ran = [o for o in r["ops"] if "error" not in o]
    assert ran, capsys.readouterr().out
    for o in ran:
        assert o["seconds"] > 0 and o["bytes"] > 0 and o["gb_per_s"] > 0
    if "error" not in r["model"]:
        assert r["model"]["graph_replays"] >= 2 and r["model"]["tokens_per_s"] > 0


def test_cuda_ops_benchmark_without_gpu_says_why(capsys):
    if gn.backend_info()["cuda"]["available"]:
        pytest.skip("a GPU is present")
    assert _main()(["--device", "cuda", "--no-model"]) == 2
    assert "not available" in capsys.readouterr().err


@pytest.mark.gpu
def test_cuda_ops_benchmark_on_gpu(tmp_path):
    out = tmp_path / "r.json"
    assert _main()(["--iters", "5", "--steps", "5", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert all("error" not in o for o in r["ops"]), r["ops"]
    assert "error" not in r["model"]


@pytest.mark.parametrize("op,params", [("linear", {"rows": -1}), ("linear", {"cols": 0}),
                                       ("attention_decode", {"slots": -1}),
                                       ("rmsnorm", {"d": 2**40})])
def test_device_bench_rejects_silly_sizes(op, params):
    from gemma_native import _core

    with pytest.raises(gn.InvalidArgumentError, match="must be in"):
        _core.device_bench("cpu", op, params, 1)
    with pytest.raises(gn.InvalidArgumentError, match="unknown op"):
        _core.device_bench("cpu", "nope", {}, 1)
