"""Where a model named to ``gemma_native.load`` lives on this machine.

A name is, in this order:

* an existing file or folder: used as it is, except a Hugging Face cache folder of one
  repository (``models--ORG--NAME``, holding ``refs/`` and ``snapshots/``), which stands for
  the snapshot its ``refs/main`` (or ``revision``) names, or its only snapshot;
* a Hugging Face Hub id, ``ORG/NAME`` (a folder with ``config.json``) or
  ``ORG/NAME/FILE.gguf`` (one GGUF file of a repository): fetched through ``huggingface_hub``
  (the ``hub`` extra) into its cache, or taken from the cache alone when ``HF_HUB_OFFLINE=1``;
* anything else is a missing path.
"""

from __future__ import annotations

import os
import re

from ..errors import InvalidArgumentError, ModelNotFoundError

# ORG/NAME or ORG/NAME/FILE.gguf, with the Hub's characters (no leading '.', '/' or '~').
_HUB_ID = re.compile(r"^([A-Za-z0-9][\w.-]*)/([\w.-]+)(?:/([\w.-]+\.gguf))?$")
# The files a model folder needs (the weights of a folder, not every file of the repository).
_FOLDER_FILES = ["config.json", "*.safetensors", "model.safetensors.index.json",
                 "tokenizer.model", "tokenizer_config.json", "generation_config.json"]


def resolve(path: str, revision: str | None = None) -> str:
    """The local file or folder for ``path`` (see the module docstring)."""
    if revision is not None and (not isinstance(revision, str) or not revision):
        raise InvalidArgumentError(f"revision must be a non-empty string, got {revision!r}")
    if os.path.exists(path):
        if os.path.isdir(os.path.join(path, "snapshots")):
            return _cache_snapshot(path, revision)
        return path
    m = _HUB_ID.match(path)
    if m is None or path.startswith(("./", "../")):
        raise ModelNotFoundError(f"no such model path: {path}")
    return _from_hub(f"{m.group(1)}/{m.group(2)}", m.group(3), revision, path)


def _cache_snapshot(root: str, revision: str | None) -> str:
    snaps = os.path.join(root, "snapshots")
    have = sorted(d for d in os.listdir(snaps) if os.path.isdir(os.path.join(snaps, d)))
    want = None
    ref = os.path.join(root, "refs", revision or "main")
    if os.path.isfile(ref):
        with open(ref, encoding="utf-8") as f:
            want = f.read().strip()
    elif revision is not None:
        want = revision  # a commit hash
    if want is not None and want in have:
        return os.path.join(snaps, want)
    if want is None and len(have) == 1:
        return os.path.join(snaps, have[0])
    hint = (f"; snapshots here: {', '.join(have)}: pass {os.path.join(snaps, '<hash>')}"
            if have else "; it holds no snapshot")
    what = f"revision {revision!r}" if revision else "refs/main"
    raise ModelNotFoundError(f"{root} is a Hugging Face cache folder, but {what} names no "
                             f"snapshot in it{hint}")


def _from_hub(repo: str, filename: str | None, revision: str | None, name: str) -> str:
    try:
        import huggingface_hub as hub
    except ImportError:
        raise ModelNotFoundError(
            f"no such model path: {name}.  It looks like a Hugging Face Hub id: to load models "
            f"by name install the hub extra (pip install 'gemma_native[hub]'), or download "
            f"the folder (or .gguf file) and pass its path") from None
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES",
                                                                         "TRUE")
    kw = dict(revision=revision, local_files_only=offline)
    cache = os.environ.get("HF_HUB_CACHE")
    if cache:
        kw["cache_dir"] = cache
    try:
        if filename is not None:
            return hub.hf_hub_download(repo, filename, **kw)
        folder = hub.snapshot_download(repo, allow_patterns=_FOLDER_FILES, **kw)
    except Exception as e:  # noqa: BLE001 - the hub's many error types, one message
        where = "in the local cache (HF_HUB_OFFLINE is set)" if offline else \
            "on the Hugging Face Hub"
        raise ModelNotFoundError(
            f"could not get {name!r} {where}: {type(e).__name__}: {e}".rstrip()) from None
    if not os.path.isfile(os.path.join(folder, "config.json")):
        ggufs = sorted(f for f in os.listdir(folder) if f.endswith(".gguf"))
        hint = (f"; for a GGUF file name it: {repo}/<file>.gguf" +
                (f" (e.g. {repo}/{ggufs[0]})" if ggufs else ""))
        raise ModelNotFoundError(f"{name}: the repository has no config.json{hint}")
    return folder
