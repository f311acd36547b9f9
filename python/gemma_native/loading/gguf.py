"""A strict, memory-mapping reader for GGUF files (llama.cpp / ggml), with numpy dequantizers.

File layout (GGUF v2 and v3, little endian; all integers little endian)::

    "GGUF" magic | u32 version | u64 tensor_count | u64 kv_count
    kv_count x  (string key, u32 value_type, value)
    tensor_count x (string name, u32 n_dims, n_dims x u64 ne, u32 ggml_type, u64 offset)
    padding to `general.alignment` (default 32) | tensor data

A string is ``u64 length`` + that many UTF-8 bytes; an array value is ``u32 element_type``,
``u64 count`` and the elements back to back (an element of type ARRAY is itself
``u32 type, u64 count, elements``).  Tensor offsets are relative to the start of the data
region and must be multiples of the alignment; ``ne`` lists dimensions fastest-varying first
(ggml order).

Reading
-------
:func:`read_gguf` validates the whole header before returning a :class:`GGUFFile`; tensor
bytes are not touched.  :attr:`GGUFTensor.raw` is a read-only ``uint8`` numpy view of a
read-only ``mmap.mmap`` of the file (the file handle is closed before :func:`read_gguf`
returns; the mapping lives as long as any view of it).  :attr:`GGUFTensor.shape` is in
PyTorch / numpy order, i.e. ``ne`` reversed: ``token_embd.weight`` with ``ne = [640, 262144]``
has ``shape == (262144, 640)``, and ``dequantize()`` returns an array of that shape whose rows
are the file's rows.

Do not truncate or rewrite a file in place while tensors read from it are alive: on POSIX
touching a page past the new end of the file kills the process with SIGBUS.

Errors
------
* :class:`~gemma_native.errors.ModelNotFoundError` -- the path does not exist.
* :class:`~gemma_native.errors.UnsupportedModelError` -- a well-formed file this reader does
  not handle: GGUF version other than 2 or 3 (version 1 used 32-bit counts; a big-endian file
  is recognised and named as such), or a tensor whose ggml type id is unknown (the message
  names the tensor and the id).  Dequantizing a known type that has no dequantizer here
  (the IQ*/TQ*/MXFP4 families, Q8_1) also raises it.
* :class:`~gemma_native.errors.ModelFormatError` -- everything else: short file, bad magic,
  tensor/kv counts larger than the file could hold, strings or arrays running past the end of
  the file, invalid UTF-8, unknown metadata value types, arrays nested deeper than
  :data:`MAX_ARRAY_DEPTH`, BOOL bytes other than 0/1, duplicate keys or tensor names, empty
  keys or names, ``n_dims`` 0 or > 4, a dimension of 0 or >= 2**63, more than 2**63 - 1
  elements, a row length ``ne[0]`` that is not a multiple of the type's block size, tensor
  offsets not multiples of the alignment, data past the end of the file, overlapping tensors,
  ``general.alignment`` that is not a power-of-two integer.  Messages name the file and, where
  it applies, the key or tensor.

Tolerated (as llama.cpp does or harmlessly): gaps between tensors, tensors stored out of
offset order, trailing bytes, keys that do not follow the ``lower.snake_case`` naming
convention, any integer type for ``general.alignment`` (the spec says UINT32).  Nested arrays
(allowed by the spec, rejected by llama.cpp) are supported up to :data:`MAX_ARRAY_DEPTH`.

Metadata values
---------------
STRING -> ``str``; BOOL -> ``bool``; (U)INT8..(U)INT64 -> ``int``; FLOAT32/FLOAT64 ->
``float`` (exact value of the stored number); ARRAY of STRING -> ``list[str]``; ARRAY of a
numeric type or BOOL -> 1-D numpy array of ``uint8 int8 uint16 int16 uint32 int32 float32
bool uint64 int64 float64`` (a fresh, writable copy, native byte order); ARRAY of ARRAY ->
``list`` of such values.  :attr:`GGUFFile.metadata_types` maps every key to its GGUF type name
(``"UINT32"``, ``"ARRAY[STRING]"``, ``"ARRAY[ARRAY[INT32]]"`` ...); empty nested arrays
carry no element type: ``"ARRAY[ARRAY]"``.

Tensor types and dequantization
-------------------------------
The ggml type ids, block sizes and bytes per block come from the table in
:mod:`gemma_native.loading.ggml` (re-exported here as :data:`GGML_TYPES`), and
:meth:`GGUFTensor.dequantize` uses its numpy dequantizers (:data:`DEQUANTIZABLE_TYPES`),
bit-identical to ggml's scalar reference and to ``gguf.quants.dequantize``.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ModelFormatError, UnsupportedModelError
from ._files import open_regular_file
from .ggml import DEQUANTIZABLE_TYPES, GGML_TYPES, block_size_of, dequantize, ggml_type

__all__ = [
    "DEFAULT_ALIGNMENT",
    "DEQUANTIZABLE_TYPES",
    "GGML_TYPES",
    "MAX_ARRAY_DEPTH",
    "MAX_DIMS",
    "GGUFFile",
    "GGUFTensor",
    "block_size_of",
    "read_gguf",
]

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
#: ggml tensors have at most 4 dimensions.
MAX_DIMS = 4
#: Deepest array nesting accepted (1 = a plain array, 2 = an array of arrays ...).
MAX_ARRAY_DEPTH = 8
_MAX_INT64 = (1 << 63) - 1

# Fixed-size header: magic, version, tensor count, kv count.
_HEADER_BYTES = 4 + 4 + 8 + 8
# Smallest possible encodings, used to reject absurd counts before looping over them.
_MIN_KV_BYTES = 8 + 1 + 4 + 1  # key length, 1-byte key, value type, 1-byte value
_MIN_TENSOR_INFO_BYTES = 8 + 1 + 4 + 8 + 4 + 8  # name length, 1-byte name, n_dims, one ne, type, offset

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

# GGUF metadata value types: id -> (name, numpy dtype of the little-endian encoding or None).
_STRING = 8
_ARRAY = 9
_BOOL = 7
_VALUE_TYPES: dict[int, tuple[str, np.dtype | None]] = {
    0: ("UINT8", np.dtype("<u1")),
    1: ("INT8", np.dtype("<i1")),
    2: ("UINT16", np.dtype("<u2")),
    3: ("INT16", np.dtype("<i2")),
    4: ("UINT32", np.dtype("<u4")),
    5: ("INT32", np.dtype("<i4")),
    6: ("FLOAT32", np.dtype("<f4")),
    _BOOL: ("BOOL", np.dtype("<u1")),
    _STRING: ("STRING", None),
    _ARRAY: ("ARRAY", None),
    10: ("UINT64", np.dtype("<u8")),
    11: ("INT64", np.dtype("<i8")),
    12: ("FLOAT64", np.dtype("<f8")),
}
_SCALAR_STRUCTS: dict[int, struct.Struct] = {
    0: struct.Struct("<B"), 1: struct.Struct("<b"), 2: struct.Struct("<H"),
    3: struct.Struct("<h"), 4: struct.Struct("<I"), 5: struct.Struct("<i"),
    6: struct.Struct("<f"), _BOOL: struct.Struct("<B"), 10: struct.Struct("<Q"),
    11: struct.Struct("<q"), 12: struct.Struct("<d"),
}


# --------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------


def _fail(fname: str, message: str, *, key: str | None = None, tensor: str | None = None) -> ModelFormatError:
    where = fname
    if key is not None:
        where += f": metadata key {_short(key)}"
    if tensor is not None:
        where += f": tensor {_short(tensor)}"
    return ModelFormatError(f"invalid GGUF file {where}: {message}")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(eq=False)
class GGUFTensor:
    """One tensor of a GGUF file.

    ``shape`` is numpy order (ggml ``ne`` reversed); ``raw`` is the read-only ``uint8`` view of
    the tensor's bytes in the file; ``offset`` is the absolute file offset of those bytes.
    Equality and hashing are by identity.
    """

    name: str
    ggml_type: str
    shape: tuple[int, ...]
    raw: np.ndarray
    file: str
    offset: int = 0

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor's (possibly quantized) data in the file."""
        return int(self.raw.nbytes)

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)

    @property
    def ne(self) -> tuple[int, ...]:
        """Dimensions in ggml order (fastest-varying first)."""
        return tuple(reversed(self.shape))

    @property
    def block_size(self) -> int:
        return ggml_type(self.ggml_type).block_size

    @property
    def type_size(self) -> int:
        return ggml_type(self.ggml_type).type_size

    def dequantize(self, dtype: Any = np.float32) -> np.ndarray:
        """A new array of ``shape`` holding the tensor's values as ``dtype``.

        ``dtype`` must be a numpy floating type (float16, float32, float64).  Values are
        computed in float32 as ggml does (F64 tensors keep float64 precision when
        ``dtype`` is float64) and then cast.  Raises UnsupportedModelError for a ggml type
        without a dequantizer here (see :data:`DEQUANTIZABLE_TYPES`).
        """
        return dequantize(self.raw, self.ggml_type, self.shape, dtype,
                          what=f"tensor {self.name!r} of {self.file}")


@dataclass
class GGUFFile:
    """A parsed GGUF file: metadata, tensor directory and memory-mapped tensor bytes.

    ``data_offset`` is the absolute file offset of the data region (tensor offsets in the
    file are relative to it; :attr:`GGUFTensor.offset` is absolute).  ``metadata`` and
    ``tensors`` keep the file's order.
    """

    path: str
    version: int
    metadata: dict[str, object]
    tensors: dict[str, GGUFTensor]
    alignment: int
    data_offset: int
    metadata_types: dict[str, str] = field(default_factory=dict)

    def get(self, key: str, default: Any = None, type: Any = None) -> Any:
        """``metadata[key]`` or ``default`` when the key is absent.

        With ``type`` (a class or a tuple of classes) a present value must match, else
        ModelFormatError naming the file, the key and both types.  Matching is strict about
        ``bool`` (not an ``int``) and lenient in one direction: ``type=float`` accepts an
        integer value and returns it as ``float``.  Use ``list`` for string arrays and
        ``np.ndarray`` for numeric arrays.
        """
        if key not in self.metadata:
            return default
        value = self.metadata[key]
        if type is None:
            return value
        wanted = type if isinstance(type, tuple) else (type,)
        for cls in wanted:
            if cls is int:
                if isinstance(value, int) and not isinstance(value, bool):
                    return value
            elif cls is float:
                if isinstance(value, float):
                    return value
                if isinstance(value, int) and not isinstance(value, bool):
                    return float(value)
            elif isinstance(value, cls):
                return value
        names = " or ".join(getattr(c, "__name__", repr(c)) for c in wanted)
        raise _fail(
            self.path,
            f"has GGUF type {self.metadata_types.get(key, '?')} ({_short(value, 40)}), expected {names}",
            key=key,
        )

    @property
    def architecture(self) -> str | None:
        """``general.architecture`` (None when absent)."""
        return self.get("general.architecture", None, type=str)


# --------------------------------------------------------------------------------------
# Header parser
# --------------------------------------------------------------------------------------


class _Reader:
    """Bounds-checked little-endian cursor over the mapped file."""

    def __init__(self, fname: str, buf: mmap.mmap, size: int) -> None:
        self.fname = fname
        self.buf = buf
        self.size = size
        self.pos = 0

    def need(self, n: int, what: str, **where: str) -> None:
        if n > self.size - self.pos:
            raise _fail(
                self.fname,
                f"{what} needs {n} bytes at offset {self.pos}, past the end of the "
                f"{self.size}-byte file",
                **where,
            )

    def u32(self, what: str, **where: str) -> int:
        self.need(4, what, **where)
        (v,) = _U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return v

    def u64(self, what: str, **where: str) -> int:
        self.need(8, what, **where)
        (v,) = _U64.unpack_from(self.buf, self.pos)
        self.pos += 8
        return v

    def string(self, what: str, **where: str) -> str:
        n = self.u64(f"length of {what}", **where)
        if n > self.size - self.pos:
            raise _fail(
                self.fname,
                f"{what} of {n} bytes at offset {self.pos} runs past the end of the "
                f"{self.size}-byte file",
                **where,
            )
        start = self.pos
        self.pos += n
        try:
            return self.buf[start : start + n].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _fail(
                self.fname, f"{what} at offset {start} is not valid UTF-8 ({exc.reason})", **where
            ) from None

    # ---- metadata values ------------------------------------------------------------

    def value(self, vtype: int, key: str, depth: int = 0) -> tuple[Any, str]:
        """Read one value of type ``vtype``; returns (value, type name)."""
        if vtype == _STRING:
            return self.string("string value", key=key), "STRING"
        if vtype == _ARRAY:
            return self.array(key, depth + 1)
        st = _SCALAR_STRUCTS.get(vtype)
        if st is None:
            raise self.bad_type(vtype, key)
        self.need(st.size, f"{_VALUE_TYPES[vtype][0]} value", key=key)
        (v,) = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        if vtype == _BOOL:
            if v > 1:
                raise _fail(self.fname, f"BOOL value byte is {v}, not 0 or 1", key=key)
            return bool(v), "BOOL"
        return v, _VALUE_TYPES[vtype][0]

    def bad_type(self, vtype: int, key: str) -> ModelFormatError:
        return _fail(
            self.fname,
            f"unknown metadata value type {vtype} at offset {self.pos - 4} "
            f"(known: 0..{max(_VALUE_TYPES)})",
            key=key,
        )

    def array(self, key: str, depth: int) -> tuple[Any, str]:
        if depth > MAX_ARRAY_DEPTH:
            raise _fail(self.fname, f"arrays nested deeper than {MAX_ARRAY_DEPTH} levels", key=key)
        etype = self.u32("array element type", key=key)
        if etype not in _VALUE_TYPES:
            raise self.bad_type(etype, key)
        count = self.u64("array length", key=key)
        name, np_dtype = _VALUE_TYPES[etype]
        min_item = np_dtype.itemsize if np_dtype is not None else (8 if etype == _STRING else 12)
        remaining = self.size - self.pos
        if count > remaining // min_item:
            raise _fail(
                self.fname,
                f"ARRAY[{name}] of {count} elements at offset {self.pos} needs at least "
                f"{count * min_item} bytes, past the end of the {self.size}-byte file",
                key=key,
            )
        if np_dtype is not None:
            nbytes = count * np_dtype.itemsize
            if count == 0:
                return np.zeros(0, dtype=np.bool_ if etype == _BOOL else np_dtype.newbyteorder("=")), f"ARRAY[{name}]"
            arr = np.frombuffer(self.buf, dtype=np_dtype, count=count, offset=self.pos)
            if etype == _BOOL:
                if count and int(arr.max()) > 1:
                    bad = int(np.argmax(arr > 1))
                    raise _fail(
                        self.fname,
                        f"BOOL array element {bad} is {int(arr[bad])}, not 0 or 1",
                        key=key,
                    )
                arr = arr.astype(np.bool_)
            else:
                arr = arr.astype(np_dtype.newbyteorder("="))  # a copy, detached from the mmap
            self.pos += nbytes
            return arr, f"ARRAY[{name}]"
        if etype == _STRING:
            return self.string_array(count, key), "ARRAY[STRING]"
        # array of arrays
        items: list[Any] = []
        inner_names: set[str] = set()
        for _ in range(count):
            item, inner = self.array(key, depth + 1)
            items.append(item)
            inner_names.add(inner)
        inner_name = inner_names.pop() if len(inner_names) == 1 else ""
        return items, f"ARRAY[{inner_name}]" if inner_name else "ARRAY[ARRAY]"

    def string_array(self, count: int, key: str) -> list[str]:
        buf = self.buf
        pos = self.pos
        size = self.size
        unpack = _U64.unpack_from
        out: list[str] = [""] * count
        i = 0
        try:
            for i in range(count):
                if pos + 8 > size:
                    raise _fail(
                        self.fname,
                        f"length of string {i} of the array at offset {pos} is past the end "
                        f"of the {size}-byte file",
                        key=key,
                    )
                n = unpack(buf, pos)[0]
                pos += 8
                if n > size - pos:
                    raise _fail(
                        self.fname,
                        f"string {i} of the array ({n} bytes at offset {pos}) runs past the "
                        f"end of the {size}-byte file",
                        key=key,
                    )
                out[i] = buf[pos : pos + n].decode("utf-8")
                pos += n
        except UnicodeDecodeError as exc:
            raise _fail(
                self.fname, f"string {i} of the array is not valid UTF-8 ({exc.reason})", key=key
            ) from None
        self.pos = pos
        return out


@dataclass
class _Info:
    name: str
    ne: tuple[int, ...]
    type_id: int
    offset: int
    nbytes: int = 0


def _parse_header(fname: str, buf: mmap.mmap, size: int) -> tuple[int, dict, dict, list[_Info], int, int]:
    r = _Reader(fname, buf, size)
    if size < _HEADER_BYTES:
        raise _fail(fname, f"file is {size} bytes, shorter than the {_HEADER_BYTES}-byte GGUF header")
    magic = bytes(buf[0:4])
    if magic != GGUF_MAGIC:
        raise _fail(fname, f"bad magic {magic!r} (expected {GGUF_MAGIC!r}); not a GGUF file")
    r.pos = 4
    version = r.u32("version")
    if version not in SUPPORTED_VERSIONS:
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        if swapped in (1, 2, 3):
            raise UnsupportedModelError(
                f"unsupported GGUF file {fname}: big-endian GGUF (version {swapped}) is not supported"
            )
        raise UnsupportedModelError(
            f"unsupported GGUF file {fname}: GGUF version {version} (supported: "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))})"
        )
    n_tensors = r.u64("tensor count")
    n_kv = r.u64("metadata key/value count")
    remaining = size - r.pos
    if n_kv > remaining // _MIN_KV_BYTES:
        raise _fail(
            fname,
            f"metadata key/value count {n_kv} is larger than the {size}-byte file could hold",
        )
    if n_tensors > remaining // _MIN_TENSOR_INFO_BYTES or (
        n_kv * _MIN_KV_BYTES + n_tensors * _MIN_TENSOR_INFO_BYTES > remaining
    ):
        raise _fail(fname, f"tensor count {n_tensors} is larger than the {size}-byte file could hold")

    metadata: dict[str, Any] = {}
    types: dict[str, str] = {}
    for i in range(n_kv):
        key = r.string(f"key of metadata entry {i}")
        if not key:
            raise _fail(fname, f"metadata entry {i} has an empty key")
        if key in metadata:
            raise _fail(fname, "duplicate key", key=key)
        vtype = r.u32("value type", key=key)
        if vtype not in _VALUE_TYPES:
            raise r.bad_type(vtype, key)
        metadata[key], types[key] = r.value(vtype, key)

    alignment = DEFAULT_ALIGNMENT
    if "general.alignment" in metadata:
        a = metadata["general.alignment"]
        if not (isinstance(a, int) and not isinstance(a, bool)):
            raise _fail(fname, f"is {types['general.alignment']}, not an integer", key="general.alignment")
        if a <= 0 or a & (a - 1):
            raise _fail(fname, f"alignment {a} is not a power of two", key="general.alignment")
        alignment = a

    infos: list[_Info] = []
    names: set[str] = set()
    for i in range(n_tensors):
        name = r.string(f"name of tensor {i}")
        if not name:
            raise _fail(fname, f"tensor {i} has an empty name")
        if name in names:
            raise _fail(fname, "duplicate tensor name", tensor=name)
        names.add(name)
        n_dims = r.u32("n_dims", tensor=name)
        if n_dims == 0 or n_dims > MAX_DIMS:
            raise _fail(fname, f"n_dims is {n_dims}, not 1..{MAX_DIMS}", tensor=name)
        r.need(8 * n_dims, "dimensions", tensor=name)
        ne = struct.unpack_from(f"<{n_dims}Q", buf, r.pos)
        r.pos += 8 * n_dims
        for d in ne:
            if d == 0 or d > _MAX_INT64:
                raise _fail(fname, f"dimension {d} in ne={list(ne)} is not in 1..2**63-1", tensor=name)
        if math.prod(ne) > _MAX_INT64:
            raise _fail(fname, f"ne={list(ne)} has more than 2**63-1 elements", tensor=name)
        type_id = r.u32("ggml type", tensor=name)
        offset = r.u64("data offset", tensor=name)
        infos.append(_Info(name, tuple(ne), type_id, offset))

    data_offset = -(-r.pos // alignment) * alignment
    data_size = size - data_offset  # may be negative when there are no tensors
    unknown: list[_Info] = []
    for info in infos:
        t = GGML_TYPES.get(info.type_id)
        if t is None:
            unknown.append(info)
            continue
        if info.ne[0] % t.block_size:
            raise _fail(
                fname,
                f"row length ne[0]={info.ne[0]} (ne={list(info.ne)}) is not a multiple of the "
                f"{t.name} block size {t.block_size}, so its {math.prod(info.ne)} elements do "
                f"not form whole blocks",
                tensor=info.name,
            )
        info.nbytes = t.nbytes(math.prod(info.ne))
        if info.offset % alignment:
            raise _fail(
                fname, f"data offset {info.offset} is not a multiple of the alignment {alignment}",
                tensor=info.name,
            )
        if info.offset > data_size or info.nbytes > data_size - info.offset:
            raise _fail(
                fname,
                f"data [{info.offset}, {info.offset + info.nbytes}) of the data region at file "
                f"offset {data_offset} runs past the end of the {size}-byte file",
                tensor=info.name,
            )
    spans = sorted((i for i in infos if i.type_id in GGML_TYPES), key=lambda i: (i.offset, i.nbytes))
    for prev, cur in zip(spans, spans[1:]):
        if cur.offset < prev.offset + prev.nbytes:
            raise _fail(
                fname,
                f"data [{cur.offset}, {cur.offset + cur.nbytes}) overlaps tensor {prev.name!r} "
                f"[{prev.offset}, {prev.offset + prev.nbytes})",
                tensor=cur.name,
            )
    if unknown:
        u = unknown[0]
        raise UnsupportedModelError(
            f"unsupported GGUF file {fname}: tensor {u.name!r} has unknown ggml type id {u.type_id}"
        )
    return version, metadata, types, infos, alignment, data_offset


def _open(fname: str):
    return open_regular_file(fname, "GGUF", _fail)


def read_gguf(path: str | os.PathLike[str]) -> GGUFFile:
    """Parse and validate a GGUF file; tensor data stays memory-mapped and untouched.

    Raises ModelNotFoundError, ModelFormatError or UnsupportedModelError (see the module
    documentation for which problem raises which).
    """
    fname = os.fspath(path)
    if isinstance(fname, bytes):
        fname = os.fsdecode(fname)
    f, size = _open(fname)
    with f:
        if size < _HEADER_BYTES:
            raise _fail(fname, f"file is {size} bytes, shorter than the {_HEADER_BYTES}-byte GGUF header")
        try:
            mm = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)
        except (ValueError, OSError) as exc:
            raise _fail(fname, f"cannot memory-map the file ({exc})") from None
    try:
        version, metadata, types, infos, alignment, data_offset = _parse_header(fname, mm, size)
    except (ModelFormatError, UnsupportedModelError):
        raise
    except (IndexError, struct.error, OverflowError, UnicodeDecodeError, MemoryError, ValueError) as exc:
        # Safety net: every check above should fire first.
        raise _fail(fname, f"corrupt header ({type(exc).__name__}: {exc})") from None

    base = np.frombuffer(mm, dtype=np.uint8)  # read-only; keeps `mm` alive via .base
    tensors: dict[str, GGUFTensor] = {}
    for info in infos:
        t = GGML_TYPES[info.type_id]
        start = data_offset + info.offset
        raw = base[start : start + info.nbytes]
        tensors[info.name] = GGUFTensor(
            name=info.name,
            ggml_type=t.name,
            shape=tuple(reversed(info.ne)),
            raw=raw,
            file=fname,
            offset=start,
        )
    return GGUFFile(
        path=fname,
        version=version,
        metadata=metadata,
        tensors=tensors,
        alignment=alignment,
        data_offset=data_offset,
        metadata_types=types,
    )
