"""A strict, memory-mapping reader (and a small writer) for the safetensors format.

File layout (https://github.com/huggingface/safetensors)::

    u64 little endian N | N bytes of UTF-8 JSON header | data region

The header is a JSON object mapping tensor names to
``{"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}`` where the offsets are
relative to the start of the data region, plus an optional ``"__metadata__"`` object of
string -> string.

Reading
-------
:func:`read_safetensors` validates the whole header before touching any data and returns
``{name: Tensor}`` in the order the entries appear in the header.  Every problem with the
file raises :class:`~gemma_native.errors.ModelFormatError` (or
:class:`~gemma_native.errors.UnsupportedModelError` for a well-formed entry of a dtype this
package does not handle, :class:`~gemma_native.errors.ModelNotFoundError` for a missing
file); the message names the file and, where it applies, the tensor.

``Tensor.data`` is a read-only numpy view of a read-only ``mmap.mmap`` of the file: nothing
is copied and pages are read lazily by the OS.  The view's ``.base`` chain ends at the mmap,
so the mapping stays alive for as long as any returned array (or a view of it) does; the
file handle itself is closed before :func:`read_safetensors` returns.  One exception: a
tensor whose absolute file offset is not a multiple of its element size (never the case for
files written by the ``safetensors`` package or by :func:`write_safetensors`) is copied into
an aligned, read-only array, because native kernels may assume aligned pointers.  Pass
``copy_unaligned=False`` to get an unaligned zero-copy view instead (numpy handles those,
``data.flags.aligned`` is then ``False``).

Do not truncate or rewrite a file in place while arrays mapped from it are alive: on POSIX
touching a page past the new end of the file kills the process with SIGBUS.  Replacing the
file (write elsewhere, then ``os.replace``, as :func:`write_safetensors` does) is safe.

Dtypes: ``F32`` -> ``"float32"``, ``BF16`` -> ``"bfloat16"`` (exposed as ``np.uint16`` raw
bits), ``F16`` -> ``"float16"``; the parser also accepts ``F64``, ``I64``, ``I32``, ``I8``,
``U8`` and ``BOOL`` (``"float64"``, ``"int64"``, ``"int32"``, ``"int8"``, ``"uint8"``,
``"bool"``) so that callers can see and reject them.  Anything else raises
``UnsupportedModelError``.

Strictness beyond the format's minimum: duplicate JSON keys anywhere in the header, and the
non-JSON constants ``NaN``/``Infinity``, are rejected.  Gaps between tensors and trailing
bytes after the last tensor are tolerated (the reference implementation rejects them; they
are harmless), overlapping byte ranges are not.  Unknown extra keys inside a tensor entry
are ignored, as the reference implementation does.

Metadata: :func:`read_safetensors_metadata` returns the ``__metadata__`` dict (``{}`` when
absent) without mapping the data; :func:`read_safetensors_with_metadata` returns
``(tensors, metadata)`` in one pass.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Mapping, Union

import numpy as np

from ..errors import (
    DTypeError,
    InvalidArgumentError,
    ModelFormatError,
    UnsupportedModelError,
)
from ._files import open_regular_file

__all__ = [
    "MAX_HEADER_BYTES",
    "SUPPORTED_DTYPES",
    "Tensor",
    "read_safetensors",
    "read_safetensors_metadata",
    "read_safetensors_with_metadata",
    "write_safetensors",
]

#: Largest header accepted, as the reference implementation does (100 MiB).
MAX_HEADER_BYTES = 100 * 1024 * 1024

# safetensors code -> (our dtype name, numpy storage dtype, little endian)
_CODES: dict[str, tuple[str, np.dtype]] = {
    "F64": ("float64", np.dtype("<f8")),
    "F32": ("float32", np.dtype("<f4")),
    "BF16": ("bfloat16", np.dtype("<u2")),
    "F16": ("float16", np.dtype("<f2")),
    "I64": ("int64", np.dtype("<i8")),
    "I32": ("int32", np.dtype("<i4")),
    "I8": ("int8", np.dtype("i1")),
    "U8": ("uint8", np.dtype("u1")),
    "BOOL": ("bool", np.dtype("?")),
}
_NAME_TO_CODE: dict[str, str] = {name: code for code, (name, _) in _CODES.items()}

#: Dtype names that can appear in :attr:`Tensor.dtype`.
SUPPORTED_DTYPES: tuple[str, ...] = tuple(name for name, _ in _CODES.values())

_MAX_NDIM = 64 if np.lib.NumpyVersion(np.__version__) >= "2.0.0" else 32
_ENTRY_KEYS = ("dtype", "shape", "data_offsets")


@dataclass(frozen=True, eq=False)
class Tensor:
    """One tensor of a safetensors file.

    ``data`` is a read-only array of shape ``shape``; for ``dtype == "bfloat16"`` its numpy
    dtype is ``uint16`` (the raw bits), otherwise the numpy dtype named by ``dtype``.
    Equality and hashing are by identity (comparing arrays element-wise is not what ``==``
    on a record should do).
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    data: np.ndarray
    file: str

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def as_float32(self) -> np.ndarray:
        """A new float32 array with the tensor's values (bfloat16 bits are widened exactly)."""
        if self.dtype == "bfloat16":
            wide = self.data.astype(np.uint32) << np.uint32(16)
            return wide.view(np.float32)
        return self.data.astype(np.float32)


class _HeaderError(ValueError):
    """Internal: raised by JSON hooks, converted to ModelFormatError."""


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _HeaderError(f"duplicate key {key!r} in the JSON header")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise _HeaderError(f"non-JSON constant {name} in the header")


@dataclass(frozen=True)
class _Entry:
    name: str
    code: str
    shape: tuple[int, ...]
    begin: int
    end: int


def _fail(fname: str, message: str, tensor: str | None = None) -> ModelFormatError:
    where = f"{fname}: tensor {tensor!r}" if tensor is not None else fname
    return ModelFormatError(f"invalid safetensors file {where}: {message}")


_KIND = {dict: "object", list: "list", str: "string", int: "integer", float: "number",
         bool: "boolean", type(None): "null"}


def _a(value: Any) -> str:
    """'a list', 'an integer', 'null' ... : the JSON kind of a value, for messages."""
    kind = _KIND.get(type(value), type(value).__name__)
    if kind == "null":
        return kind
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def _is_int(value: Any) -> bool:
    return type(value) is int  # excludes bool, which is a subclass of int


def _parse_header_bytes(fname: str, raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(fname, f"header is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        header = json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except _HeaderError as exc:
        raise _fail(fname, str(exc)) from None
    except RecursionError:
        raise _fail(fname, "header JSON is nested too deeply") from None
    except MemoryError:
        raise _fail(fname, "header JSON is too large to parse") from None
    except ValueError as exc:  # json.JSONDecodeError, or int() digit limits
        raise _fail(fname, f"header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise _fail(fname, f"header is {_a(header)}, not an object")
    return header


def _validate_header(
    fname: str, header: dict[str, Any], data_len: int
) -> tuple[list[_Entry], dict[str, str] | None]:
    """Check every entry against the format and the data region's length."""
    metadata: dict[str, str] | None = None
    entries: list[_Entry] = []
    unsupported: list[str] = []
    for name, spec in header.items():
        if name == "__metadata__":
            if not isinstance(spec, dict):
                raise _fail(fname, f"__metadata__ is {_a(spec)}, not an object")
            for key, value in spec.items():
                if not isinstance(value, str):
                    raise _fail(
                        fname,
                        f"__metadata__[{key!r}] is {_a(value)}, not a string",
                    )
            metadata = dict(spec)
            continue
        if not isinstance(spec, dict):
            raise _fail(fname, f"entry is {_a(spec)}, not an object", name)
        missing = [key for key in _ENTRY_KEYS if key not in spec]
        if missing:
            raise _fail(fname, f"entry lacks {', '.join(missing)}", name)

        code = spec["dtype"]
        if not isinstance(code, str):
            raise _fail(fname, f"dtype is {_a(code)}, not a string", name)

        shape = spec["shape"]
        if not isinstance(shape, list):
            raise _fail(fname, f"shape is {_a(shape)}, not a list", name)
        for dim in shape:
            if not _is_int(dim) or dim < 0:
                raise _fail(fname, f"shape {_short(shape)} holds {_short(dim)}, not a non-negative int", name)
        if len(shape) > _MAX_NDIM:
            unsupported.append(f"tensor {name!r} has {len(shape)} dimensions (numpy allows {_MAX_NDIM})")

        offsets = spec["data_offsets"]
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_int, offsets)):
            raise _fail(fname, f"data_offsets {_short(offsets)} is not a list of two ints", name)
        begin, end = offsets
        if begin < 0 or end < begin:
            raise _fail(fname, f"data_offsets {offsets} are not 0 <= begin <= end", name)
        if end > data_len:
            raise _fail(
                fname,
                f"data_offsets {offsets} extend beyond the data region ({data_len} bytes)",
                name,
            )

        if code not in _CODES:
            unsupported.append(
                f"tensor {name!r} has dtype {code[:40]!r} (supported: {', '.join(_CODES)})"
            )
        else:
            itemsize = _CODES[code][1].itemsize
            count = math.prod(shape)  # Python ints: no overflow
            nonzero = math.prod(d for d in shape if d)
            if nonzero * itemsize > sys.maxsize:
                raise _fail(fname, f"shape {_short(shape)} is too large", name)
            if count * itemsize != end - begin:
                raise _fail(
                    fname,
                    f"shape {_short(shape)} of {code} needs {count * itemsize} bytes but "
                    f"data_offsets {offsets} hold {end - begin}",
                    name,
                )
        entries.append(_Entry(name, code, tuple(shape), begin, end))

    spans = sorted((e for e in entries if e.end > e.begin), key=lambda e: (e.begin, e.end))
    for prev, cur in zip(spans, spans[1:]):
        if cur.begin < prev.end:
            raise _fail(
                fname,
                f"bytes [{cur.begin}, {cur.end}) overlap tensor {prev.name!r} "
                f"[{prev.begin}, {prev.end})",
                cur.name,
            )
    if unsupported:
        raise UnsupportedModelError(f"unsupported safetensors file {fname}: {unsupported[0]}")
    return entries, metadata


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _open(fname: str):
    return open_regular_file(fname, "safetensors", _fail)


def _read_header(fname: str, f, size: int) -> tuple[int, dict[str, Any]]:
    """Return (offset of the data region, parsed header)."""
    if size < 8:
        raise _fail(fname, f"file is {size} bytes, shorter than the 8-byte header length")
    prefix = f.read(8)
    if len(prefix) != 8:
        raise _fail(fname, "file shrank while being read")
    (header_len,) = struct.unpack("<Q", prefix)
    if header_len == 0:
        raise _fail(fname, "header length is 0")
    if header_len > MAX_HEADER_BYTES:
        raise _fail(fname, f"header length {header_len} exceeds the {MAX_HEADER_BYTES}-byte limit")
    if 8 + header_len > size:
        raise _fail(
            fname, f"header length {header_len} runs past the end of the {size}-byte file"
        )
    try:
        raw = f.read(header_len)
    except MemoryError:
        raise _fail(fname, "header is too large to read") from None
    if len(raw) != header_len:
        raise _fail(fname, "file shrank while being read")
    return 8 + header_len, _parse_header_bytes(fname, raw)


def _parse(
    path: str | os.PathLike[str], *, map_data: bool, copy_unaligned: bool = True
) -> tuple[dict[str, Tensor], dict[str, str]]:
    fname = os.fspath(path)
    if isinstance(fname, bytes):
        fname = os.fsdecode(fname)
    f, size = _open(fname)
    with f:
        data_start, header = _read_header(fname, f, size)
        entries, metadata = _validate_header(fname, header, size - data_start)
        if not map_data:
            return {}, metadata or {}
        try:
            mm = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)
        except (ValueError, OSError) as exc:
            raise _fail(fname, f"cannot memory-map the file ({exc})") from None
    base = np.frombuffer(mm, dtype=np.uint8)  # read-only; keeps `mm` alive via .base

    tensors: dict[str, Tensor] = {}
    for e in entries:
        name, np_dtype = _CODES[e.code]
        start = data_start + e.begin
        raw = base[start : data_start + e.end]
        try:
            if start % np_dtype.itemsize == 0 or not copy_unaligned:
                arr = raw.view(np_dtype).reshape(e.shape)
            else:
                arr = np.empty(e.shape, dtype=np_dtype)
                arr.reshape(-1).view(np.uint8)[:] = raw
                arr.flags.writeable = False
        except (ValueError, OverflowError, MemoryError, TypeError) as exc:
            raise _fail(fname, f"cannot view the data as {name} {list(e.shape)} ({exc})", e.name) from None
        tensors[e.name] = Tensor(e.name, name, e.shape, arr, fname)
    return tensors, metadata or {}


def read_safetensors(
    path: str | os.PathLike[str], *, copy_unaligned: bool = True
) -> dict[str, Tensor]:
    """Read a safetensors file into ``{name: Tensor}`` (header order), memory-mapped.

    Raises ModelNotFoundError (no such file), ModelFormatError (corrupt, truncated or
    inconsistent file) or UnsupportedModelError (a dtype outside :data:`SUPPORTED_DTYPES`).
    """
    return _parse(path, map_data=True, copy_unaligned=copy_unaligned)[0]


def read_safetensors_with_metadata(
    path: str | os.PathLike[str], *, copy_unaligned: bool = True
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Like :func:`read_safetensors`, also returning ``__metadata__`` (``{}`` if absent)."""
    return _parse(path, map_data=True, copy_unaligned=copy_unaligned)


def read_safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``__metadata__`` of a file (``{}`` if absent); the header is fully validated."""
    return _parse(path, map_data=False)[1]


# --------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------

ArrayLike = Union[np.ndarray, "tuple[np.ndarray, str]", Tensor]


def _code_for_name(dtype_name: Any) -> str:
    if isinstance(dtype_name, str):
        if dtype_name in _NAME_TO_CODE:
            return _NAME_TO_CODE[dtype_name]
        if dtype_name.upper() in _CODES:
            return dtype_name.upper()
    raise DTypeError(
        f"unknown safetensors dtype {dtype_name!r}; use one of {', '.join(SUPPORTED_DTYPES)}"
    )


def _code_for_array(name: str, dtype: np.dtype) -> str:
    for code, (_dname, storage) in _CODES.items():
        if code != "BF16" and dtype.kind == storage.kind and dtype.itemsize == storage.itemsize:
            return code
    hint = " (for bfloat16 bits pass (array, 'bfloat16'))" if dtype.itemsize == 2 else ""
    raise DTypeError(f"tensor {name!r}: cannot store numpy dtype {dtype} in safetensors{hint}")


def _prepare(name: str, value: Any) -> tuple[str, np.ndarray]:
    """Return (code, C-contiguous little-endian array in the storage dtype)."""
    if isinstance(value, Tensor):
        arr, code = value.data, _code_for_name(value.dtype)
    elif isinstance(value, tuple):
        if len(value) != 2:
            raise InvalidArgumentError(f"tensor {name!r}: expected (array, dtype_name), got a {len(value)}-tuple")
        arr, code = value[0], _code_for_name(value[1])
    else:
        arr, code = value, None
    if not isinstance(arr, (np.ndarray, np.generic)):
        raise InvalidArgumentError(f"tensor {name!r}: expected a numpy array, got {type(arr).__name__}")
    arr = np.asarray(arr)
    if code is None:
        code = _code_for_array(name, arr.dtype)
    storage = _CODES[code][1]
    kinds = ("u", "i") if code == "BF16" else (storage.kind,)
    if arr.dtype.kind not in kinds or arr.dtype.itemsize != storage.itemsize:
        raise DTypeError(
            f"tensor {name!r}: a numpy {arr.dtype} array cannot be stored as {_CODES[code][0]}"
        )
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and sys.byteorder == "big"):
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    # (ascontiguousarray would turn a 0-d array into shape (1,))
    arr = np.require(arr, requirements="C").view(storage).reshape(arr.shape)
    return code, arr


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_safetensors(
    path: str | os.PathLike[str],
    tensors: Mapping[str, ArrayLike],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write ``tensors`` to a safetensors file readable by any safetensors implementation.

    Values are numpy arrays (dtype inferred: float64/32/16, int64/32/8, uint8, bool),
    ``(array, dtype_name)`` tuples (e.g. ``(uint16_bits, "bfloat16")``; the array's dtype
    must match the named one -- nothing is cast), or :class:`Tensor` objects.  The header
    lists tensors in the mapping's order; the data is laid out by decreasing element size
    so every tensor is aligned, with no gaps.  The file is written to a temporary name and
    moved into place, so readers holding a mapping of the old file are unaffected.
    """
    if not isinstance(tensors, Mapping):
        raise InvalidArgumentError(f"tensors must be a mapping of name -> array, got {type(tensors).__name__}")
    if metadata is not None:
        if not isinstance(metadata, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise InvalidArgumentError("metadata must be a mapping of str -> str")

    prepared: list[tuple[str, str, np.ndarray]] = []
    for name, value in tensors.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise InvalidArgumentError(f"invalid tensor name {name!r}")
        code, arr = _prepare(name, value)
        prepared.append((name, code, arr))

    layout = sorted(prepared, key=lambda item: -item[2].dtype.itemsize)  # stable
    offsets: dict[str, tuple[int, int]] = {}
    pos = 0
    for name, _, arr in layout:
        offsets[name] = (pos, pos + arr.nbytes)
        pos += arr.nbytes

    header: dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = dict(metadata)
    for name, code, arr in prepared:
        header[name] = {"dtype": code, "shape": list(arr.shape), "data_offsets": list(offsets[name])}
    blob = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    blob += b" " * (-len(blob) % 8)

    fname = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(fname))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(blob)))
            f.write(blob)
            for _, _, arr in layout:
                if arr.nbytes:
                    f.write(arr.reshape(-1).view(np.uint8).data)
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp creates files as 0600
        os.replace(tmp, fname)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
