"""The source passes ruff with the configuration in pyproject.toml (CI installs ruff; without it
the test skips)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT


def test_ruff_is_clean():
    pytest.importorskip("ruff")
    if not (REPO_ROOT / "pyproject.toml").is_file():
        pytest.skip("not a source checkout")
    cmd = [sys.executable, "-m", "ruff", "check", "--no-cache", str(REPO_ROOT)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
