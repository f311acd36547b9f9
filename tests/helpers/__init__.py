"""Helpers shared by the tests; plain modules, not tests.

* ``tinyckpt``: tiny random RecurrentGemma checkpoints written with numpy only.
* ``refmodels``: the official ``recurrentgemma`` (torch) and ``transformers`` reference models
  on tiny configs, and their conversion to Hugging Face folders.
* ``spm_fixture``: tiny SentencePiece models trained on the spot.
* ``ggml_ref``: ggml's own quantized kernels through ctypes (needs llama-cpp-python).
* ``gguf_f32``: an F32 copy of a GGUF file (needs the ``gguf`` package).
* ``arrays``: seeded random arrays and token ids.
* ``optional``: what a test needs that may be missing (a CUDA GPU, the demo model) and how it
  skips without it.
* ``gguf_builder``: small GGUF files built byte by byte (valid and malformed).
* ``fuzz_load_common``, ``fuzz_load_gguf``, ``fuzz_load_hf``, ``fuzz_load_runner``: the loader
  fuzz campaigns (seed files, mutations, the worker subprocesses and their report).
* ``opcheck``, ``raises``: comparison and error-checking helpers of the op tests.

The paths below locate the checkout's own files (fixtures, benchmarks, tools).
"""

from __future__ import annotations

from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = TESTS_DIR.parent
FIXTURES_DIR = TESTS_DIR / "fixtures"
