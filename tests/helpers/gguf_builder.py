"""Test helper: GGUF test files for the tests of gemma_native.loading.gguf
(tests/loading/test_loading_gguf.py and test_loading_gguf_malformed.py).

* :class:`Builder`: a hand-rolled writer, field by field, that remembers where each field is;
  it writes the malformed files (and fuzz seeds), and :func:`minimal` is a valid one-tensor file;
* :func:`write_with_writer`: a file written by ``gguf.GGUFWriter`` (the reference);
* :func:`random_blocks` / :func:`tensor_file`: random quantized blocks with finite scales, and a
  file holding one tensor of given raw bytes;
* :func:`f32_bytes`, :func:`bits_equal`: float32 bytes, and bit-for-bit float32 comparison.

Needs the ``gguf`` package (the test modules skip without it before importing this).
"""

from __future__ import annotations

import struct
from pathlib import Path

import gguf as ref  # the PyPI reference package (not gemma_native.loading.gguf)
import numpy as np

QT = ref.GGMLQuantizationType

# GGUF value type id -> struct format of a scalar
SCALAR_FMT = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B",
              10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9


class Builder:
    """Writes GGUF bytes field by field and remembers where each field is (for fuzzing).

    Metadata values: ``(vtype, value)``; a STRING value is str or raw bytes; an ARRAY value
    is ``(element_type, [items])``.  Tensors: ``(name, ne, type_id, data, offset)`` where
    ``offset=None`` lays tensors out back to back, aligned.
    """

    def __init__(self, version: int = 3, magic: bytes = b"GGUF", alignment: int = 32):
        self.version = version
        self.magic = magic
        self.alignment = alignment
        self.kvs: list[tuple[object, int, object]] = []
        self.tensors: list[tuple[object, list[int], int, bytes, int | None]] = []
        self.fields: list[tuple[str, int, int]] = []  # (kind, position, size)

    def kv(self, key, vtype: int, value) -> Builder:
        self.kvs.append((key, vtype, value))
        return self

    def tensor(self, name, ne, type_id: int, data: bytes, offset: int | None = None) -> Builder:
        self.tensors.append((name, list(ne), type_id, bytes(data), offset))
        return self

    # -- encoding ------------------------------------------------------------------------
    def _u(self, out: bytearray, kind: str, fmt: str, value: int) -> None:
        self.fields.append((kind, len(out), struct.calcsize(fmt)))
        out += struct.pack(fmt, value)

    def _str(self, out: bytearray, s) -> None:
        b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
        self._u(out, "len", "<Q", len(b))
        out += b

    def _value(self, out: bytearray, vtype: int, value) -> None:
        if vtype == STRING:
            self._str(out, value)
        elif vtype == ARRAY:
            etype, items = value
            self._u(out, "vtype", "<I", etype)
            self._u(out, "len", "<Q", len(items))
            for item in items:
                self._value(out, etype, item)
        elif isinstance(value, bytes):  # raw encoding of a scalar
            out += value
        else:
            out += struct.pack(SCALAR_FMT[vtype], value)

    def build(self, n_tensors: int | None = None, n_kv: int | None = None) -> bytes:
        self.fields = []
        out = bytearray(self.magic)
        self._u(out, "version", "<I", self.version)
        self._u(out, "count", "<Q", len(self.tensors) if n_tensors is None else n_tensors)
        self._u(out, "count", "<Q", len(self.kvs) if n_kv is None else n_kv)
        for key, vtype, value in self.kvs:
            self._str(out, key)
            self._u(out, "vtype", "<I", vtype)
            self._value(out, vtype, value)
        offsets = []
        pos = 0
        for _, _, _, data, offset in self.tensors:
            if offset is None:
                offset = pos
            offsets.append(offset)
            if offset + len(data) < 1 << 24:
                pos = max(pos, -(-(offset + len(data)) // self.alignment) * self.alignment)
        for (name, ne, type_id, _, _), offset in zip(self.tensors, offsets):
            self._str(out, name)
            self._u(out, "ndims", "<I", len(ne))
            for d in ne:
                self._u(out, "dim", "<Q", d)
            self._u(out, "ggml_type", "<I", type_id)
            self._u(out, "offset", "<Q", offset)
        self.header_end = len(out)
        data_start = -(-len(out) // self.alignment) * self.alignment
        out += b"\0" * (data_start - len(out))
        for (_, _, _, data, _), offset in zip(self.tensors, offsets):
            end = data_start + offset + len(data)
            if end > 1 << 24:  # an absurd offset under test: leave the data out
                continue
            if len(out) < end:
                out += b"\0" * (end - len(out))
            out[data_start + offset : end] = data
        if self.tensors:
            out += b"\0" * (-len(out) % self.alignment)
        return bytes(out)

    def write(self, path: Path, **kw) -> Path:
        path.write_bytes(self.build(**kw))
        return path


def f32_bytes(values) -> bytes:
    return np.asarray(values, dtype="<f4").tobytes()


def minimal(tmp_path: Path, name: str = "m.gguf") -> Builder:
    """A valid builder with one key and one F32 tensor."""
    b = Builder()
    b.kv("general.architecture", STRING, "test")
    b.tensor("w", [4, 2], 0, f32_bytes(np.arange(8)))
    return b


def bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    a = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
    b = np.ascontiguousarray(b, dtype=np.float32).reshape(-1)
    return a.shape == b.shape and bool(np.array_equal(a.view(np.uint32), b.view(np.uint32)))


def write_with_writer(path: Path, kvs=(), tensors=(), alignment: int | None = None) -> Path:
    """Write a file with gguf.GGUFWriter.  kvs: (key, value, vtype, sub_type); tensors:
    (name, array, raw_dtype or None)."""
    w = ref.GGUFWriter(str(path), "test")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for key, value, vtype, sub in kvs:
        w.add_key_value(key, value, vtype, sub_type=sub)
    for name, arr, raw_dtype in tensors:
        w.add_tensor(name, arr, raw_dtype=raw_dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()  # writes the tensor infos first
    w.close()
    return path


# Byte offsets of the float16 scale fields inside one block (ggml-common.h block structs).
HALF_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
    "IQ4_NL": [0], "IQ4_XS": [0],
}
QUANT_TYPES = list(HALF_FIELDS)


def random_blocks(rng: np.random.Generator, type_name: str, n_blocks: int) -> np.ndarray:
    """Random bytes for n blocks with every float16 scale field finite (|x| <= 2)."""
    _, ts = ref.GGML_QUANT_SIZES[QT[type_name]]
    blocks = rng.integers(0, 256, size=(n_blocks, ts), dtype=np.uint8)
    for at in HALF_FIELDS[type_name]:
        scale = rng.uniform(-2, 2, size=n_blocks).astype(np.float16)
        scale[::7] = 0  # some zero scales
        blocks[:, at : at + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
    return blocks


def tensor_file(tmp_path: Path, type_name: str, raw: np.ndarray, ne: list[int]) -> Path:
    """A file holding one tensor of the given raw bytes (written with the hand-rolled builder)."""
    b = Builder()
    b.kv("general.architecture", STRING, "test")
    b.tensor("t", ne, int(QT[type_name]), raw.tobytes())
    return b.write(tmp_path / f"{type_name}.gguf")
