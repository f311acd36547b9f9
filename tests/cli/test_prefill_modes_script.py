"""benchmarks/prefill_modes.sh (the issue-14 prefill matrix for a CPU kind) runs end to end on
the tiny preset: one bench report per mode, the one-pass variants run with no pass limit.  Its
numbers are not checked (timings)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "prefill_modes.sh"


def test_prefill_modes_script_runs_every_mode(tmp_path):
    if not SCRIPT.exists():
        pytest.skip("benchmarks/ is not next to the tests")
    bindir = str(Path(sys.executable).parent)
    path = bindir + os.pathsep + os.environ.get("PATH", "")
    if shutil.which("gemma-native", path=path) is None or shutil.which("sh") is None:
        pytest.skip("needs the gemma-native command (an installed package) and sh")
    env = dict(os.environ, PATH=path, MODEL="random:recurrentgemma-tiny", QUICK="--quick",
               OUT=str(tmp_path))
    env.pop("GEMMA_NATIVE_MAX_PASS_TOKENS", None)
    r = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    modes = {"exact": "exact", "bf16": "bfloat16", "int8": "int8", "bf16_one_pass": "bfloat16",
             "int8_one_pass": "int8"}
    for name, mode in modes.items():
        rep = json.loads((tmp_path / f"{name}.json").read_text())
        assert rep["backend"]["max_pass_tokens"] == (0 if "one_pass" in name else 512), name
        assert [p["tokens"] for p in rep["ours"]["prefill"]] == [512, 2048], name
        assert all(p["tokens_per_s"] > 0 for p in rep["ours"]["prefill"]), name
        got = rep["ours"]["compute_mode"]
        # the bf16 mode runs exactly on CPUs without a bf16 unit, and says so
        assert got.startswith(mode) or (mode == "bfloat16" and "'bfloat16' asked" in got), (
            name, got)
    assert "model name" in r.stdout or not Path("/proc/cpuinfo").exists()
