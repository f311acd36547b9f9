"""Models by name: a Hugging Face cache folder, and Hub ids resolved through huggingface_hub
from a cache laid out here (HF_HUB_OFFLINE=1: nothing is downloaded)."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest

import gemma_native as gn
from gemma_native.errors import InvalidArgumentError, ModelNotFoundError
from gemma_native.loading.hub import resolve

HASH_A = "a" * 40
HASH_B = "b" * 40


def _cache(tmp_path, folder, repo="org--tiny-it", refs=None, snapshots=(HASH_A,)):
    """A Hugging Face cache holding ``folder``'s files as each snapshot of one repository."""
    root = tmp_path / "hub" / f"models--{repo}"
    for h in snapshots:
        shutil.copytree(folder, root / "snapshots" / h)
    (root / "refs").mkdir(parents=True)
    for name, h in (refs if refs is not None else {"main": snapshots[0]}).items():
        (root / "refs" / name).write_text(h)
    return root


@pytest.fixture(scope="module")
def folder(tiny_checkpoint):
    return tiny_checkpoint(seed=5)


def _same_model(a, b):
    ids = [2, 7, 9, 4]
    np.testing.assert_array_equal(a.logits(ids), b.logits(ids))


def test_a_cache_folder_stands_for_its_snapshot(tmp_path, folder):
    root = _cache(tmp_path, folder, snapshots=(HASH_A, HASH_B),
                  refs={"main": HASH_B, "v1": HASH_A})
    m = gn.load(str(root))
    assert m.path.endswith(HASH_B)
    _same_model(m, gn.load(folder))
    assert gn.load(str(root), revision="v1").path.endswith(HASH_A)
    assert gn.load(str(root), revision=HASH_A).path.endswith(HASH_A)
    with pytest.raises(ModelNotFoundError, match="snapshots here"):
        gn.load(str(root), revision="nope")
    with pytest.raises(InvalidArgumentError, match="revision"):
        gn.load(str(root), revision="")


def test_a_cache_folder_without_refs_and_one_snapshot(tmp_path, folder):
    root = _cache(tmp_path, folder, refs={})
    assert gn.load(str(root)).path.endswith(HASH_A)
    second = _cache(tmp_path / "two", folder, refs={}, snapshots=(HASH_A, HASH_B))
    with pytest.raises(ModelNotFoundError, match="<hash>"):
        gn.load(str(second))


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path


def test_hub_id_from_the_offline_cache(offline_cache, folder):
    pytest.importorskip("huggingface_hub")
    _cache(offline_cache, folder, repo="org--tiny-it")
    m = gn.load("org/tiny-it")
    assert m.path.endswith(HASH_A)
    _same_model(m, gn.load(folder))
    with pytest.raises(ModelNotFoundError, match="local cache"):
        gn.load("org/not-there")


def test_hub_id_of_a_gguf_file(offline_cache, tmp_path):
    pytest.importorskip("huggingface_hub")
    src = tmp_path / "src"
    src.mkdir()
    (src / "model-q8_0.gguf").write_bytes(b"GGUF")
    _cache(offline_cache, src, repo="org--tiny-gguf")
    path = resolve("org/tiny-gguf/model-q8_0.gguf")
    assert path.endswith(os.path.join(HASH_A, "model-q8_0.gguf")) and os.path.isfile(path)
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve("org/tiny-gguf")


def test_hub_id_without_the_hub_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails
    with pytest.raises(ModelNotFoundError, match=r"gemma_native\[hub\]"):
        gn.load("google/recurrentgemma-2b-it")


@pytest.mark.parametrize("name", ["./org/name", "no-slash", "/abs/org/name", "a/b/c/d"])
def test_other_missing_paths(name):
    with pytest.raises(ModelNotFoundError, match="no such model path"):
        gn.load(name)


def test_loading_reports_progress_through_logging_only(folder, caplog, capsys):
    """Per-layer progress records on the 'gemma_native.load' logger (INFO), nothing printed."""
    import logging

    with caplog.at_level(logging.INFO, logger="gemma_native.load"):
        m = gn.load(folder, dtype="bfloat16")
    steps = [r.progress for r in caplog.records if hasattr(r, "progress")]
    n = m.config.num_layers
    assert [s[:2] for s in steps] == [(i + 1, n) for i in range(n)]
    assert all(s[2] == "converting weights to bfloat16" for s in steps)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
