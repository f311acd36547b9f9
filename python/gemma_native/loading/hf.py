"""Loading a Hugging Face checkpoint folder (config.json + safetensors weights + tokenizer).

:func:`load_hf_folder` accepts

* a folder holding ``config.json`` and weights, looked for in this order:
  1. ``model.safetensors`` (only that file is read);
  2. ``model.safetensors.index.json`` -- its ``weight_map`` (tensor name -> shard file)
     names the shards;
  3. every ``*.safetensors`` file directly in the folder (sorted by name);
* a single ``.safetensors`` file, with ``config.json`` next to it (only that file is read);
* a ``*.safetensors.index.json`` file, with ``config.json`` next to it.

The index is validated strictly: ``weight_map`` must be a non-empty object of
str -> str; shard names must be relative and must not contain ``..`` (symlinked shards, as
in the Hugging Face cache, are fine: the check is on the name, not the link target); every
shard must exist (ModelNotFoundError naming it); every tensor the index lists must be in the
shard it names; a tensor held by two shards, or a tensor a shard holds that the index does
not list, raises ModelFormatError.  Tensors are returned in index order for sharded
checkpoints, in file then header order otherwise.

All tensors are memory-mapped by :func:`~gemma_native.loading.safetensors.read_safetensors`;
nothing is copied.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import PureWindowsPath
from typing import Any

from ..errors import ModelFormatError, ModelNotFoundError
from .safetensors import Tensor, _a, read_safetensors

__all__ = ["HFCheckpoint", "load_hf_folder"]

CONFIG_FILE = "config.json"
SINGLE_WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
TOKENIZER_FILE = "tokenizer.model"


@dataclass
class HFCheckpoint:
    """A loaded checkpoint folder.

    ``path`` is the absolute folder path, ``files`` the safetensors files read (in the order
    read), ``tokenizer_path`` the folder's ``tokenizer.model`` or ``None``.
    """

    path: str
    config: dict[str, Any]
    tensors: dict[str, Tensor]
    tokenizer_path: str | None
    files: list[str]


def _read_json_object(fname: str, what: str) -> dict[str, Any]:
    try:
        with open(fname, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ModelNotFoundError(f"{what} not found: {fname}") from None
    except IsADirectoryError:
        raise ModelFormatError(f"{what} {fname} is a directory, not a file") from None
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ModelFormatError(f"{what} {fname} is not valid UTF-8 ({exc.reason})") from None
    except RecursionError:
        raise ModelFormatError(f"{what} {fname} is nested too deeply") from None
    except ValueError as exc:
        raise ModelFormatError(f"{what} {fname} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ModelFormatError(f"{what} {fname} holds {_a(value)}, not an object")
    return value


def _check_shard_name(index_file: str, shard: str) -> None:
    bad = None
    if not shard or "\x00" in shard:
        bad = "is empty or holds a NUL byte"
    elif (
        os.path.isabs(shard)
        or shard.startswith(("/", "\\"))
        or PureWindowsPath(shard).drive
        or PureWindowsPath(shard).is_absolute()
    ):
        bad = "is an absolute path"
    elif ".." in re.split(r"[\\/]", shard):
        bad = "contains '..'"
    if bad is not None:
        raise ModelFormatError(
            f"index {index_file}: shard file name {shard!r} {bad}; shards must lie inside the folder"
        )


def _load_sharded(folder: str, index_file: str) -> tuple[dict[str, Tensor], list[str]]:
    index = _read_json_object(index_file, "safetensors index")
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict):
        raise ModelFormatError(
            f"index {index_file}: 'weight_map' is "
            f"{'missing' if weight_map is None else _a(weight_map)}, not an object"
        )
    if not weight_map:
        raise ModelFormatError(f"index {index_file}: 'weight_map' is empty")

    shards: dict[str, str] = {}  # shard name as written -> path on disk, first-use order
    by_path: dict[str, str] = {}  # normalised path -> first spelling (for ./a vs a)
    for tensor_name, shard in weight_map.items():
        if not isinstance(shard, str):
            raise ModelFormatError(
                f"index {index_file}: tensor {tensor_name!r} maps to "
                f"{_a(shard)}, not a shard file name"
            )
        if shard in shards:
            continue
        _check_shard_name(index_file, shard)
        shard_path = os.path.join(folder, shard)
        if not os.path.isfile(shard_path):
            raise ModelNotFoundError(
                f"shard {shard!r} listed in index {index_file} not found: {shard_path}"
            )
        shards[shard] = shard_path
        by_path.setdefault(os.path.normpath(shard_path), shard)

    found: dict[str, tuple[str, Tensor]] = {}  # tensor name -> (canonical shard, tensor)
    files: list[str] = []
    for canonical in by_path.values():
        shard_path = shards[canonical]
        files.append(shard_path)
        for name, tensor in read_safetensors(shard_path).items():
            if name in found:
                raise ModelFormatError(
                    f"tensor {name!r} is held by two shards: {found[name][0]!r} and "
                    f"{canonical!r} (index {index_file})"
                )
            found[name] = (canonical, tensor)

    tensors: dict[str, Tensor] = {}
    for name, shard in weight_map.items():
        canonical = by_path[os.path.normpath(shards[shard])]
        if name not in found:
            raise ModelFormatError(
                f"tensor {name!r} listed in index {index_file} is not in its shard {shard!r}"
            )
        holder, tensor = found[name]
        if holder != canonical:
            raise ModelFormatError(
                f"tensor {name!r}: index {index_file} maps it to shard {shard!r} but it is in "
                f"shard {holder!r}"
            )
        tensors[name] = tensor
    unlisted = [name for name in found if name not in weight_map]
    if unlisted:
        name = unlisted[0]
        raise ModelFormatError(
            f"tensor {name!r} in shard {found[name][0]!r} is not listed in index {index_file}"
            + (f" (nor are {len(unlisted) - 1} more)" if len(unlisted) > 1 else "")
        )
    return tensors, files


def _load_files(paths: list[str]) -> dict[str, Tensor]:
    tensors: dict[str, Tensor] = {}
    for fname in paths:
        for name, tensor in read_safetensors(fname).items():
            if name in tensors:
                raise ModelFormatError(
                    f"tensor {name!r} is held by two files: {tensors[name].file} and {fname}"
                )
            tensors[name] = tensor
    return tensors


def load_hf_folder(path: str | os.PathLike[str]) -> HFCheckpoint:
    """Load ``config.json``, the safetensors weights (memory-mapped) and find the tokenizer.

    ``path`` is a checkpoint folder, a ``.safetensors`` file or a ``.safetensors.index.json``
    file (with ``config.json`` beside it).  Raises ModelNotFoundError for a missing path,
    config, shard or weights, ModelFormatError for invalid JSON or inconsistent weights,
    UnsupportedModelError for tensors of a dtype the reader does not support.
    """
    given = os.fspath(path)
    if isinstance(given, bytes):
        given = os.fsdecode(given)
    if not os.path.exists(given):
        raise ModelNotFoundError(f"model path not found: {given}")

    explicit_file = explicit_index = None
    if os.path.isdir(given):
        folder = os.path.abspath(given)
    elif os.path.isfile(given):
        folder = os.path.dirname(os.path.abspath(given))
        if given.endswith(".safetensors.index.json"):
            explicit_index = os.path.abspath(given)
        elif given.endswith(".safetensors"):
            explicit_file = os.path.abspath(given)
        else:
            raise ModelFormatError(
                f"{given}: expected a model folder, a .safetensors file or a "
                ".safetensors.index.json file"
            )
    else:
        raise ModelFormatError(f"{given} is neither a folder nor a regular file")

    config = _read_json_object(os.path.join(folder, CONFIG_FILE), "model config")

    single = os.path.join(folder, SINGLE_WEIGHTS_FILE)
    index = os.path.join(folder, INDEX_FILE)
    if explicit_file is not None:
        files = [explicit_file]
        tensors = _load_files(files)
    elif explicit_index is not None:
        tensors, files = _load_sharded(folder, explicit_index)
    elif os.path.isfile(single):
        files = [single]
        tensors = _load_files(files)
    elif os.path.isfile(index):
        tensors, files = _load_sharded(folder, index)
    else:
        files = sorted(
            os.path.join(folder, entry)
            for entry in os.listdir(folder)
            if entry.endswith(".safetensors") and os.path.isfile(os.path.join(folder, entry))
        )
        if not files:
            raise ModelNotFoundError(
                f"no weights in {folder}: looked for {SINGLE_WEIGHTS_FILE}, {INDEX_FILE} "
                "and *.safetensors"
            )
        tensors = _load_files(files)

    tokenizer = os.path.join(folder, TOKENIZER_FILE)
    return HFCheckpoint(
        path=folder,
        config=config,
        tensors=tensors,
        tokenizer_path=tokenizer if os.path.isfile(tokenizer) else None,
        files=files,
    )
