"""tools/gpu_check.sh, the script a session lent a GPU runs first, must work end to end here
too: it builds the package, and without a GPU runs every step in its CPU form (the emulator's
smoke run, the transformers comparison as a dry run) and reports the GPU-only ones as skipped."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT

ROOT = str(REPO_ROOT)


@pytest.mark.slow
def test_gpu_check_runs_cleanly(tmp_path):
    if shutil.which("timeout") is None:
        pytest.skip("coreutils' timeout is needed by the script")
    try:
        import pybind11  # noqa: F401  (the script builds without network: --no-build-isolation)
        import scikit_build_core  # noqa: F401
    except ImportError as e:
        pytest.skip(f"building needs {e.name} installed")
    env = dict(os.environ, PYTHON=sys.executable, GPU_CHECK_WORK=str(tmp_path / "work"))
    env.pop("OUT", None)
    p = subprocess.run(["bash", os.path.join(ROOT, "tools", "gpu_check.sh"),
                        str(tmp_path / "out")], capture_output=True, text=True, env=env,
                       timeout=900)
    log = (tmp_path / "out" / "gpu_check.log").read_text()
    assert p.returncode == 0, log[-4000:]
    summary = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    status = {s["step"]: s["status"] for s in summary["steps"]}
    assert status["build"] == "ok" and status["backend_info"] == "ok", status
    if not summary["gpu"]:
        assert status["pytest_gpu"] == "skipped"
        assert status["cuda_ops_emulator_smoke"] == "ok"
        expected = ["vs_transformers_cpu_dry_run", "vs_transformers_gemma3_cpu_dry_run"]
    else:
        assert status["pytest_gpu"] == status["cuda_ops"] == "ok", status
        expected = ["vs_transformers", "vs_transformers_gemma3"]
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
        assert all(status[step] == "ok" for step in expected), status
    except ImportError:
        assert status["vs_transformers"] == "skipped"
    info = summary["backend_info"]  # what the freshly built package reports
    assert info["cpu_isa"] in info["available_isas"] and info["cuda"]["compiled"] in (True, False)
