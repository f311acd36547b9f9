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

Dequantization
--------------
:data:`DEQUANTIZABLE_TYPES`: F32, F16, BF16, F64, I8, I16, I32, I64, Q4_0, Q4_1, Q5_0, Q5_1,
Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, IQ4_NL, IQ4_XS.  Each block layout follows ggml's
``block_*`` structs and ``dequantize_row_*`` functions; the float32 results are bit-identical
to ggml's scalar reference (same operations in the same order, no fused multiply-add) and to
``gguf.quants.dequantize``.  Work is vectorised over all blocks of a chunk of about one million
values; there is no Python loop per block.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import (
    DTypeError,
    ModelFormatError,
    UnsupportedModelError,
)
from ._files import open_regular_file

__all__ = [
    "DEFAULT_ALIGNMENT",
    "DEQUANTIZABLE_TYPES",
    "GGML_TYPES",
    "MAX_ARRAY_DEPTH",
    "MAX_DIMS",
    "GGUFFile",
    "GGUFTensor",
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
_QK_K = 256

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


@dataclass(frozen=True)
class _GGMLType:
    name: str
    block_size: int  # values per block
    type_size: int  # bytes per block


def _t(name: str, block_size: int, type_size: int) -> _GGMLType:
    return _GGMLType(name, block_size, type_size)


# ggml type id -> layout (ggml.h `enum ggml_type`, sizes from the ggml-common.h block structs).
# Ids 4, 5 (Q4_2, Q4_3), 31-33 and 36-38 (repacked CPU layouts) are removed types that may
# not appear in files; they are "unknown" here as they are for llama.cpp.
GGML_TYPES: dict[int, _GGMLType] = {
    0: _t("F32", 1, 4),
    1: _t("F16", 1, 2),
    2: _t("Q4_0", 32, 2 + 32 // 2),  # half d; u8 qs[16]
    3: _t("Q4_1", 32, 2 + 2 + 32 // 2),  # half d, m; u8 qs[16]
    6: _t("Q5_0", 32, 2 + 4 + 32 // 2),  # half d; u8 qh[4]; u8 qs[16]
    7: _t("Q5_1", 32, 2 + 2 + 4 + 32 // 2),  # half d, m; u8 qh[4]; u8 qs[16]
    8: _t("Q8_0", 32, 2 + 32),  # half d; i8 qs[32]
    9: _t("Q8_1", 32, 2 + 2 + 32),  # half d, s; i8 qs[32]
    10: _t("Q2_K", _QK_K, _QK_K // 16 + _QK_K // 4 + 2 + 2),  # scales, qs, d, dmin
    11: _t("Q3_K", _QK_K, _QK_K // 8 + _QK_K // 4 + 12 + 2),  # hmask, qs, scales, d
    12: _t("Q4_K", _QK_K, 2 + 2 + 12 + _QK_K // 2),  # d, dmin, scales, qs
    13: _t("Q5_K", _QK_K, 2 + 2 + 12 + _QK_K // 8 + _QK_K // 2),  # d, dmin, scales, qh, qs
    14: _t("Q6_K", _QK_K, _QK_K // 2 + _QK_K // 4 + _QK_K // 16 + 2),  # ql, qh, scales, d
    15: _t("Q8_K", _QK_K, 4 + _QK_K + 2 * (_QK_K // 16)),  # float d; i8 qs; i16 bsums
    16: _t("IQ2_XXS", _QK_K, 2 + _QK_K // 4),
    17: _t("IQ2_XS", _QK_K, 2 + _QK_K // 4 + _QK_K // 32),
    18: _t("IQ3_XXS", _QK_K, 2 + 3 * (_QK_K // 8)),
    19: _t("IQ1_S", _QK_K, 2 + _QK_K // 8 + _QK_K // 16),
    20: _t("IQ4_NL", 32, 2 + 32 // 2),
    21: _t("IQ3_S", _QK_K, 2 + _QK_K // 4 + _QK_K // 8 + _QK_K // 32 + 4),
    22: _t("IQ2_S", _QK_K, 2 + _QK_K // 4 + _QK_K // 16),
    23: _t("IQ4_XS", _QK_K, 2 + 2 + _QK_K // 64 + _QK_K // 2),  # d, scales_h, scales_l, qs
    24: _t("I8", 1, 1),
    25: _t("I16", 1, 2),
    26: _t("I32", 1, 4),
    27: _t("I64", 1, 8),
    28: _t("F64", 1, 8),
    29: _t("IQ1_M", _QK_K, _QK_K // 8 + _QK_K // 16 + _QK_K // 32),
    30: _t("BF16", 1, 2),
    34: _t("TQ1_0", _QK_K, (_QK_K - 4 * _QK_K // 64) // 5 + _QK_K // 64 + 2),
    35: _t("TQ2_0", _QK_K, _QK_K // 4 + 2),
    39: _t("MXFP4", 32, 1 + 32 // 2),
    40: _t("NVFP4", 64, 4 + 64 // 2),
    41: _t("Q1_0", 128, 2 + 128 // 8),
}
_TYPE_BY_NAME: dict[str, _GGMLType] = {t.name: t for t in GGML_TYPES.values()}


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
        return _TYPE_BY_NAME[self.ggml_type].block_size

    @property
    def type_size(self) -> int:
        return _TYPE_BY_NAME[self.ggml_type].type_size

    def dequantize(self, dtype: Any = np.float32) -> np.ndarray:
        """A new array of ``shape`` holding the tensor's values as ``dtype``.

        ``dtype`` must be a numpy floating type (float16, float32, float64).  Values are
        computed in float32 as ggml does (F64 tensors keep float64 precision when
        ``dtype`` is float64) and then cast.  Raises UnsupportedModelError for a ggml type
        without a dequantizer here (see :data:`DEQUANTIZABLE_TYPES`).
        """
        try:
            out_dtype = np.dtype(dtype)
        except TypeError:
            raise DTypeError(f"dequantize: {dtype!r} is not a numpy dtype") from None
        if out_dtype.kind != "f":
            raise DTypeError(f"dequantize: dtype must be a floating type, got {out_dtype}")
        kind = self.ggml_type
        if kind in _PLAIN:
            values = self.raw.view(_PLAIN[kind])
            if kind == "BF16":
                values = (values.astype(np.uint32) << np.uint32(16)).view(np.float32)
            elif kind == "F64" and out_dtype == np.float64:
                values = values.copy()
            else:
                values = values.astype(np.float32)  # always a copy: raw is never float32-typed
            with np.errstate(all="ignore"):
                return values.astype(out_dtype, copy=False).reshape(self.shape)
        fn = _DEQUANTIZERS.get(kind)
        if fn is None:
            raise UnsupportedModelError(
                f"cannot dequantize tensor {self.name!r} of {self.file}: ggml type {kind} has no "
                f"dequantizer (supported: {', '.join(DEQUANTIZABLE_TYPES)})"
            )
        info = _TYPE_BY_NAME[kind]
        blocks = self.raw.reshape(-1, info.type_size)
        n_blocks = blocks.shape[0]
        out = np.empty((n_blocks, info.block_size), dtype=out_dtype)
        step = max(1, _CHUNK_VALUES // info.block_size)
        direct = out_dtype == np.float32
        with np.errstate(all="ignore"):  # NaN/inf scales in the file propagate silently
            self._dequantize_chunks(fn, blocks, out, step, direct)
        return out.reshape(self.shape)

    @staticmethod
    def _dequantize_chunks(fn, blocks: np.ndarray, out: np.ndarray, step: int, direct: bool) -> None:
        n_blocks = blocks.shape[0]
        for start in range(0, n_blocks, step):
            stop = min(n_blocks, start + step)
            if direct:
                fn(blocks[start:stop], out[start:stop])
            else:
                tmp = np.empty((stop - start, out.shape[1]), dtype=np.float32)
                fn(blocks[start:stop], tmp)
                out[start:stop] = tmp


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
        info.nbytes = math.prod(info.ne) // t.block_size * t.type_size
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


# --------------------------------------------------------------------------------------
# Dequantizers: fn(blocks, out) writes (n_blocks, block_size) float32 values for
# (n_blocks, type_size) uint8 blocks into ``out``.  Every float operation is a separate
# numpy ufunc call (float32 in, float32 out), in ggml's order, so results are bit-exact.
# --------------------------------------------------------------------------------------

# Values dequantized per chunk: large enough to amortise numpy call overhead, small enough
# that the temporaries stay in cache-friendly sizes.
_CHUNK_VALUES = 1 << 21

_PLAIN: dict[str, np.dtype] = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "F64": np.dtype("<f8"),
    "I8": np.dtype("i1"),
    "I16": np.dtype("<i2"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
}

_SHIFT_2BIT = np.array([0, 2, 4, 6], dtype=np.uint8)
_BITS_8 = np.arange(8, dtype=np.uint8)
# Non-linear 4-bit codebook of IQ4_NL / IQ4_XS (ggml-common.h kvalues_iq4nl).
_KVALUES_IQ4NL = np.array(
    [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], dtype=np.float32
)


def _half(b: np.ndarray, at: int) -> np.ndarray:
    """Column of float16 values at byte ``at`` of each block, as float32 of shape (n, 1)."""
    return np.ascontiguousarray(b[:, at : at + 2]).view("<f2").astype(np.float32)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """(n, k) bytes -> (n, 2k): low nibbles of all bytes, then high nibbles."""
    return np.concatenate([qs & np.uint8(0x0F), qs >> np.uint8(4)], axis=1)


def _deq_q4_0(b: np.ndarray, out: np.ndarray) -> None:
    d = _half(b, 0)
    q = _nibbles(b[:, 2:18]).view(np.int8) - np.int8(8)
    np.multiply(d, q, out=out, dtype=np.float32)


def _deq_q4_1(b: np.ndarray, out: np.ndarray) -> None:
    d = _half(b, 0)
    m = _half(b, 2)
    np.multiply(d, _nibbles(b[:, 4:20]), out=out, dtype=np.float32)
    np.add(out, m, out=out)


def _fifth_bits(qh: np.ndarray) -> np.ndarray:
    """(n, 4) little-endian u32 bit fields -> (n, 32) of 0/16 (bit j belongs to value j)."""
    return np.unpackbits(qh, axis=1, bitorder="little") << np.uint8(4)


def _deq_q5_0(b: np.ndarray, out: np.ndarray) -> None:
    d = _half(b, 0)
    q = (_nibbles(b[:, 6:22]) | _fifth_bits(b[:, 2:6])).view(np.int8) - np.int8(16)
    np.multiply(d, q, out=out, dtype=np.float32)


def _deq_q5_1(b: np.ndarray, out: np.ndarray) -> None:
    d = _half(b, 0)
    m = _half(b, 2)
    q = _nibbles(b[:, 8:24]) | _fifth_bits(b[:, 4:8])
    np.multiply(d, q, out=out, dtype=np.float32)
    np.add(out, m, out=out)


def _deq_q8_0(b: np.ndarray, out: np.ndarray) -> None:
    d = _half(b, 0)
    np.multiply(d, b[:, 2:34].view(np.int8), out=out, dtype=np.float32)


def _deq_q2_k(b: np.ndarray, out: np.ndarray) -> None:
    n = b.shape[0]
    scales = b[:, 0:16]
    qs = b[:, 16:80]
    d = _half(b, 80)
    dmin = _half(b, 82)
    dl = (d * (scales & np.uint8(0x0F)).astype(np.float32))[:, :, None]
    ml = (dmin * (scales >> np.uint8(4)).astype(np.float32))[:, :, None]
    # value index = half*128 + shift_index*32 + l; its scale is index // 16.
    q = (qs.reshape(n, 2, 1, 32) >> _SHIFT_2BIT.reshape(1, 1, 4, 1)) & np.uint8(3)
    o = out.reshape(n, 16, 16)
    np.multiply(dl, q.reshape(n, 16, 16), out=o, dtype=np.float32)
    np.subtract(o, ml, out=o)


def _deq_q3_k(b: np.ndarray, out: np.ndarray) -> None:
    n = b.shape[0]
    hmask = b[:, 0:32]
    qs = b[:, 32:96]
    s = b[:, 96:108]
    d = _half(b, 108)
    # 16 six-bit scales: low 4 bits from bytes 0..7 (low nibbles, then high nibbles), high
    # 2 bits from bytes 8..11 (bits 0-1 for scales 0-3, 2-3 for 4-7, 4-5 for 8-11, 6-7 for 12-15).
    low = _nibbles(s[:, 0:8])
    high = ((s[:, None, 8:12] >> _SHIFT_2BIT.reshape(1, 4, 1)) & np.uint8(3)).reshape(n, 16)
    sc = (low | (high << np.uint8(4))).view(np.int8) - np.int8(32)
    dl = (d * sc.astype(np.float32))[:, :, None]
    low_q = (qs.reshape(n, 2, 1, 32) >> _SHIFT_2BIT.reshape(1, 1, 4, 1)) & np.uint8(3)
    # hmask bit (half*4 + shift_index) of byte l is set when the value has no -4 offset.
    hbit = ((hmask[:, None, :] >> _BITS_8.reshape(1, 8, 1)) & np.uint8(1)).reshape(n, 2, 4, 32)
    q = low_q.view(np.int8) - ((hbit ^ np.uint8(1)) << np.uint8(2)).view(np.int8)
    np.multiply(dl, q.reshape(n, 16, 16), out=out.reshape(n, 16, 16), dtype=np.float32)


def _k_scales(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 8 six-bit (scale, min) pairs packed in 12 bytes (ggml get_scale_min_k4)."""
    sc = np.concatenate(
        [s[:, 0:4] & np.uint8(63), (s[:, 8:12] & np.uint8(0x0F)) | ((s[:, 0:4] >> np.uint8(6)) << np.uint8(4))],
        axis=1,
    )
    mn = np.concatenate(
        [s[:, 4:8] & np.uint8(63), (s[:, 8:12] >> np.uint8(4)) | ((s[:, 4:8] >> np.uint8(6)) << np.uint8(4))],
        axis=1,
    )
    return sc, mn


def _k_low_nibbles(qs: np.ndarray) -> np.ndarray:
    """(n, 128) bytes -> (n, 8, 32): sub-block 2j = low nibbles of bytes 32j.., 2j+1 = high."""
    n = qs.shape[0]
    q = qs.reshape(n, 4, 1, 32)
    return np.concatenate([q & np.uint8(0x0F), q >> np.uint8(4)], axis=2).reshape(n, 8, 32)


def _deq_q4_k(b: np.ndarray, out: np.ndarray) -> None:
    n = b.shape[0]
    d = _half(b, 0)
    dmin = _half(b, 2)
    sc, mn = _k_scales(b[:, 4:16])
    d1 = (d * sc.astype(np.float32))[:, :, None]
    m1 = (dmin * mn.astype(np.float32))[:, :, None]
    o = out.reshape(n, 8, 32)
    np.multiply(d1, _k_low_nibbles(b[:, 16:144]), out=o, dtype=np.float32)
    np.subtract(o, m1, out=o)


def _deq_q5_k(b: np.ndarray, out: np.ndarray) -> None:
    n = b.shape[0]
    d = _half(b, 0)
    dmin = _half(b, 2)
    sc, mn = _k_scales(b[:, 4:16])
    qh = b[:, 16:48]
    d1 = (d * sc.astype(np.float32))[:, :, None]
    m1 = (dmin * mn.astype(np.float32))[:, :, None]
    high = ((qh[:, None, :] >> _BITS_8.reshape(1, 8, 1)) & np.uint8(1)) << np.uint8(4)
    o = out.reshape(n, 8, 32)
    np.multiply(d1, _k_low_nibbles(b[:, 48:176]) | high, out=o, dtype=np.float32)
    np.subtract(o, m1, out=o)


def _deq_q6_k(b: np.ndarray, out: np.ndarray) -> None:
    n = b.shape[0]
    ql = b[:, 0:128].reshape(n, 2, 1, 2, 32)  # [half, -, first/second 32 bytes, l]
    qh = b[:, 128:192].reshape(n, 2, 1, 32)
    sc = b[:, 192:208].view(np.int8).astype(np.float32)
    d = _half(b, 208)
    # Within each half of 128 values, quarter k = 2*nibble + which: nibble 0 = low, 1 = high.
    low = np.concatenate([ql & np.uint8(0x0F), ql >> np.uint8(4)], axis=2).reshape(n, 2, 4, 32)
    high = (qh >> _SHIFT_2BIT.reshape(1, 1, 4, 1)) & np.uint8(3)
    q = (low | (high << np.uint8(4))).view(np.int8) - np.int8(32)
    np.multiply((d * sc)[:, :, None], q.reshape(n, 16, 16), out=out.reshape(n, 16, 16), dtype=np.float32)


def _deq_q8_k(b: np.ndarray, out: np.ndarray) -> None:
    d = np.ascontiguousarray(b[:, 0:4]).view("<f4").astype(np.float32)
    np.multiply(d, b[:, 4:260].view(np.int8), out=out, dtype=np.float32)


def _deq_iq4_nl(b: np.ndarray, out: np.ndarray) -> None:
    d = _half(b, 0)
    np.multiply(d, _KVALUES_IQ4NL[_nibbles(b[:, 2:18])], out=out)


def _deq_iq4_xs(b: np.ndarray, out: np.ndarray) -> None:
    n = b.shape[0]
    d = _half(b, 0)
    scales_h = np.ascontiguousarray(b[:, 2:4]).view("<u2")  # (n, 1)
    scales_l = b[:, 4:8]
    shifts = np.arange(0, 16, 2, dtype=np.uint16).reshape(1, 8)
    high = ((scales_h >> shifts) & np.uint16(3)).astype(np.uint8)  # (n, 8)
    low = np.stack([scales_l & np.uint8(0x0F), scales_l >> np.uint8(4)], axis=2).reshape(n, 8)
    ls = (low | (high << np.uint8(4))).view(np.int8) - np.int8(32)
    dl = (d * ls.astype(np.float32))[:, :, None]
    qs = b[:, 8:136].reshape(n, 8, 1, 16)
    idx = np.concatenate([qs & np.uint8(0x0F), qs >> np.uint8(4)], axis=2).reshape(n, 8, 32)
    np.multiply(dl, _KVALUES_IQ4NL[idx], out=out.reshape(n, 8, 32))


_DEQUANTIZERS: dict[str, Callable[[np.ndarray, np.ndarray], None]] = {
    "Q4_0": _deq_q4_0,
    "Q4_1": _deq_q4_1,
    "Q5_0": _deq_q5_0,
    "Q5_1": _deq_q5_1,
    "Q8_0": _deq_q8_0,
    "Q2_K": _deq_q2_k,
    "Q3_K": _deq_q3_k,
    "Q4_K": _deq_q4_k,
    "Q5_K": _deq_q5_k,
    "Q6_K": _deq_q6_k,
    "Q8_K": _deq_q8_k,
    "IQ4_NL": _deq_iq4_nl,
    "IQ4_XS": _deq_iq4_xs,
}

#: ggml type names :meth:`GGUFTensor.dequantize` handles.
DEQUANTIZABLE_TYPES: tuple[str, ...] = tuple(_PLAIN) + tuple(_DEQUANTIZERS)


def block_size_of(ggml_type: str) -> tuple[int, int]:
    """(values per block, bytes per block) of a ggml type name, e.g. "Q4_K" -> (256, 144)."""
    info = _TYPE_BY_NAME.get(ggml_type)
    if info is None:
        raise UnsupportedModelError(f"unknown ggml type {ggml_type!r}")
    return info.block_size, info.type_size
