"""Tests of gemma_native.loading.safetensors and gemma_native.loading.hf."""

from __future__ import annotations

import gc
import json
import mmap
import os
import random
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from gemma_native.errors import (
    DTypeError,
    InvalidArgumentError,
    ModelFormatError,
    ModelNotFoundError,
    UnsupportedModelError,
)
from gemma_native.loading.hf import HFCheckpoint, load_hf_folder
from gemma_native.loading.safetensors import (
    MAX_HEADER_BYTES,
    Tensor,
    read_safetensors,
    read_safetensors_metadata,
    read_safetensors_with_metadata,
    write_safetensors,
)

st_numpy = pytest.importorskip("safetensors.numpy")
torch = pytest.importorskip("torch")
st_torch = pytest.importorskip("safetensors.torch")
from safetensors import safe_open  # noqa: E402


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def raw_file(path: Path, header, data: bytes = b"", header_len: int | None = None) -> Path:
    """Write a file from a header (dict/list -> JSON, str -> UTF-8, bytes as is)."""
    if isinstance(header, bytes):
        blob = header
    elif isinstance(header, str):
        blob = header.encode("utf-8")
    else:
        blob = json.dumps(header).encode("utf-8")
    n = len(blob) if header_len is None else header_len
    path.write_bytes(struct.pack("<Q", n) + blob + data)
    return path


def mmap_of(arr: np.ndarray):
    """Follow the .base chain of an array (and a memoryview's .obj) to the exporter."""
    obj = arr
    while isinstance(obj, np.ndarray) and obj.base is not None:
        obj = obj.base
    if isinstance(obj, memoryview):
        obj = obj.obj
    return obj


def sample_arrays(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "f32": rng.standard_normal((3, 5)).astype(np.float32),
        "f16": rng.standard_normal((4,)).astype(np.float16),
        "f64": rng.standard_normal((2, 2)).astype(np.float64),
        "i64": rng.integers(-(2**40), 2**40, size=(3,), dtype=np.int64),
        "i32": rng.integers(-1000, 1000, size=(2, 3, 2), dtype=np.int32),
        "i8": rng.integers(-128, 127, size=(7,), dtype=np.int8),
        "u8": rng.integers(0, 255, size=(5,), dtype=np.uint8),
        "bool": rng.integers(0, 2, size=(3,)).astype(bool),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "scalar": np.array(3.5, dtype=np.float32),
    }


# --------------------------------------------------------------------------------------
# round trips against the safetensors package
# --------------------------------------------------------------------------------------


def test_reads_files_of_safetensors_numpy(tmp_path):
    arrays = sample_arrays(np.random.default_rng(0))
    path = tmp_path / "np.safetensors"
    st_numpy.save_file(arrays, str(path), metadata={"format": "np", "note": "héllo"})
    tensors, metadata = read_safetensors_with_metadata(path)
    assert metadata == {"format": "np", "note": "héllo"}
    assert read_safetensors_metadata(path) == metadata
    assert set(tensors) == set(arrays)
    expected_names = {
        "f32": "float32", "f16": "float16", "f64": "float64", "i64": "int64", "i32": "int32",
        "i8": "int8", "u8": "uint8", "bool": "bool", "empty": "float32", "scalar": "float32",
    }
    for name, arr in arrays.items():
        t = tensors[name]
        assert isinstance(t, Tensor)
        assert t.name == name and t.file == str(path)
        assert t.dtype == expected_names[name]
        assert t.shape == arr.shape and t.data.shape == arr.shape
        assert t.data.dtype == arr.dtype
        np.testing.assert_array_equal(t.data, arr)
        assert t.nbytes == arr.nbytes


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_reads_torch_files_bit_exactly(tmp_path, dtype):
    torch.manual_seed(0)
    ts = {
        "w": torch.randn(17, 9).to(dtype),
        "v": torch.randn(33).to(dtype),
        "special": torch.tensor([0.0, -0.0, float("inf"), float("-inf"), 1e-40, 3.0e38]).to(dtype),
        "z": torch.zeros(0, 3, dtype=dtype),
    }
    path = tmp_path / "t.safetensors"
    st_torch.save_file(ts, str(path))
    tensors = read_safetensors(path)
    name = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}[dtype]
    for key, t in ts.items():
        got = tensors[key]
        assert got.dtype == name and got.shape == tuple(t.shape)
        if dtype == torch.bfloat16:
            bits = t.view(torch.int16).numpy().view(np.uint16)
            assert got.data.dtype == np.uint16
            np.testing.assert_array_equal(got.data, bits)
        else:
            np.testing.assert_array_equal(got.data.view(np.uint8), t.numpy().view(np.uint8))
        np.testing.assert_array_equal(got.as_float32(), t.float().numpy())


def test_our_files_are_read_by_safetensors(tmp_path):
    rng = np.random.default_rng(1)
    arrays = sample_arrays(rng)
    path = tmp_path / "ours.safetensors"
    write_safetensors(path, arrays, metadata={"format": "np", "k": "v"})
    loaded = st_numpy.load_file(str(path))
    assert set(loaded) == set(arrays)
    for name, arr in arrays.items():
        assert loaded[name].dtype == arr.dtype
        np.testing.assert_array_equal(loaded[name], arr)
    with safe_open(str(path), framework="np") as f:
        assert f.metadata() == {"format": "np", "k": "v"}
    # and by us, in the order given
    assert list(read_safetensors(path)) == list(arrays)


def test_our_bfloat16_is_read_by_safetensors_torch(tmp_path):
    torch.manual_seed(1)
    ref = torch.randn(5, 7).to(torch.bfloat16)
    bits = ref.view(torch.int16).numpy().view(np.uint16).copy()
    path = tmp_path / "bf16.safetensors"
    write_safetensors(path, {"a": (bits, "bfloat16"), "b": (bits.view(np.int16), "BF16"),
                             "c": np.ones(3, np.float32)})
    loaded = st_torch.load_file(str(path))
    assert loaded["a"].dtype == torch.bfloat16
    assert torch.equal(loaded["a"].view(torch.int16), ref.view(torch.int16))
    assert torch.equal(loaded["b"].view(torch.int16), ref.view(torch.int16))
    back = read_safetensors(path)
    assert back["a"].dtype == "bfloat16"
    np.testing.assert_array_equal(back["a"].data, bits)
    # Tensors read back can be written again
    write_safetensors(tmp_path / "again.safetensors", back)
    again = read_safetensors(tmp_path / "again.safetensors")
    assert again["a"].dtype == "bfloat16"
    np.testing.assert_array_equal(again["a"].data, bits)


def test_writer_handles_views_and_byte_order(tmp_path):
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    big = np.arange(5, dtype=">i4")
    path = tmp_path / "v.safetensors"
    write_safetensors(path, {"t": base.T, "s": base[::2, 1::2], "big": big})
    got = read_safetensors(path)
    np.testing.assert_array_equal(got["t"].data, base.T)
    np.testing.assert_array_equal(got["s"].data, base[::2, 1::2])
    np.testing.assert_array_equal(got["big"].data, np.arange(5))
    np.testing.assert_array_equal(st_numpy.load_file(str(path))["big"], np.arange(5))


def test_writer_rejects_bad_input(tmp_path):
    p = tmp_path / "x.safetensors"
    with pytest.raises(DTypeError, match="bfloat16"):
        write_safetensors(p, {"a": np.zeros(2, np.uint16)})
    with pytest.raises(DTypeError):
        write_safetensors(p, {"a": (np.zeros(2, np.float64), "float32")})
    with pytest.raises(DTypeError):
        write_safetensors(p, {"a": (np.zeros(2, np.float32), "F8_E4M3")})
    with pytest.raises(DTypeError):
        write_safetensors(p, {"a": np.zeros(2, np.complex64)})
    with pytest.raises(InvalidArgumentError):
        write_safetensors(p, {"__metadata__": np.zeros(2, np.float32)})
    with pytest.raises(InvalidArgumentError):
        write_safetensors(p, {"a": [1.0, 2.0]})
    with pytest.raises(InvalidArgumentError):
        write_safetensors(p, {"a": np.zeros(2, np.float32)}, metadata={"k": 1})
    assert not p.exists()
    assert [x.name for x in tmp_path.iterdir()] == []  # no temporary left behind


# --------------------------------------------------------------------------------------
# memory mapping
# --------------------------------------------------------------------------------------


def test_data_is_a_readonly_view_of_an_mmap(tmp_path):
    arrays = sample_arrays(np.random.default_rng(2))
    path = tmp_path / "m.safetensors"
    write_safetensors(path, arrays)
    tensors = read_safetensors(path)
    roots = set()
    for t in tensors.values():
        assert not t.data.flags.owndata
        assert not t.data.flags.writeable
        assert t.data.flags.aligned
        root = mmap_of(t.data)
        assert isinstance(root, mmap.mmap)
        roots.add(id(root))
    assert len(roots) == 1  # one mapping per file
    whole = np.frombuffer(mmap_of(tensors["f32"].data), dtype=np.uint8)
    assert np.shares_memory(whole, tensors["f32"].data)
    with pytest.raises(ValueError):
        tensors["f32"].data[0, 0] = 1.0


def test_mapping_outlives_the_dict(tmp_path):
    path = tmp_path / "m.safetensors"
    write_safetensors(path, {"a": np.arange(1000, dtype=np.float32), "b": np.ones(3, np.int8)})
    a = read_safetensors(path)["a"].data[10:20]  # a view of a view of the mapping
    gc.collect()
    np.testing.assert_array_equal(a, np.arange(10, 20, dtype=np.float32))
    # replacing the file (as write_safetensors does) leaves the old mapping valid
    write_safetensors(path, {"a": np.zeros(1000, dtype=np.float32)})
    gc.collect()
    np.testing.assert_array_equal(a, np.arange(10, 20, dtype=np.float32))
    assert float(read_safetensors(path)["a"].data.sum()) == 0.0


def test_reading_does_not_copy_the_data(tmp_path):
    path = tmp_path / "big.safetensors"
    write_safetensors(path, {"big": np.ones((2048, 4096), dtype=np.float32)})  # 32 MiB
    tracemalloc.start()
    try:
        tensors = read_safetensors(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak
    assert tensors["big"].data.nbytes == 32 << 20
    assert float(tensors["big"].data[-1].sum()) == 4096.0


def test_unaligned_offsets(tmp_path):
    values = np.arange(6, dtype=np.float32) * 1.5
    header = {"x": {"dtype": "F32", "shape": [2, 3], "data_offsets": [1, 25]},
              "b": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)  # data region starts at a multiple of 8 ...
    path = raw_file(tmp_path / "u.safetensors", blob, b"\x07" + values.tobytes())  # ... x at +1
    t = read_safetensors(path)
    assert t["x"].data.flags.aligned and not t["x"].data.flags.writeable
    assert t["x"].data.flags.owndata  # copied: the only case that copies
    np.testing.assert_array_equal(t["x"].data, values.reshape(2, 3))
    assert isinstance(mmap_of(t["b"].data), mmap.mmap) and int(t["b"].data[0]) == 7
    view = read_safetensors(path, copy_unaligned=False)["x"].data
    assert not view.flags.aligned and not view.flags.owndata
    assert isinstance(mmap_of(view), mmap.mmap)
    np.testing.assert_array_equal(view, values.reshape(2, 3))
    assert float(view.sum()) == float(values.sum())


def test_zero_size_and_order(tmp_path):
    header = {
        "z2": {"dtype": "F32", "shape": [0, 7], "data_offsets": [8, 8]},
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "z1": {"dtype": "BF16", "shape": [0], "data_offsets": [0, 0]},
        "z3": {"dtype": "I64", "shape": [3, 0, 2], "data_offsets": [4, 4]},
    }
    path = raw_file(tmp_path / "z.safetensors", header, np.array([1, 2], np.float32).tobytes())
    t = read_safetensors(path)
    assert list(t) == ["z2", "a", "z1", "z3"]  # header order
    assert t["z2"].data.shape == (0, 7) and t["z2"].data.dtype == np.float32
    assert t["z1"].data.shape == (0,) and t["z1"].data.dtype == np.uint16
    assert t["z3"].data.shape == (3, 0, 2)
    assert float(t["z2"].data.sum()) == 0.0
    # a file with only empty tensors and an empty data region
    only = raw_file(tmp_path / "e.safetensors", {"e": {"dtype": "F16", "shape": [0], "data_offsets": [0, 0]}})
    assert read_safetensors(only)["e"].data.size == 0
    # a file with no tensors at all
    none = raw_file(tmp_path / "n.safetensors", {"__metadata__": {"a": "b"}})
    assert read_safetensors_with_metadata(none) == ({}, {"a": "b"})


# --------------------------------------------------------------------------------------
# error cases
# --------------------------------------------------------------------------------------

F32_2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
DATA8 = b"\x00" * 8


def _entry(**changes):
    e = dict(F32_2)
    e.update(changes)
    return e


ENTRY_ERRORS = {
    "not_object": ([1, 2], ModelFormatError, "not an object"),
    "missing_dtype": ({"shape": [2], "data_offsets": [0, 8]}, ModelFormatError, "dtype"),
    "missing_shape": ({"dtype": "F32", "data_offsets": [0, 8]}, ModelFormatError, "shape"),
    "missing_offsets": ({"dtype": "F32", "shape": [2]}, ModelFormatError, "data_offsets"),
    "dtype_int": (_entry(dtype=4), ModelFormatError, "dtype"),
    "dtype_unknown": (_entry(dtype="F8_E4M3"), UnsupportedModelError, "F8_E4M3"),
    "dtype_i16": (_entry(dtype="I16", shape=[4]), UnsupportedModelError, "I16"),
    "shape_not_list": (_entry(shape=2), ModelFormatError, "shape"),
    "shape_bool": (_entry(shape=[True, 2]), ModelFormatError, "shape"),
    "shape_negative": (_entry(shape=[-2]), ModelFormatError, "shape"),
    "shape_float": (_entry(shape=[2.0]), ModelFormatError, "shape"),
    "shape_string": (_entry(shape=["2"]), ModelFormatError, "shape"),
    "shape_nested": (_entry(shape=[[2]]), ModelFormatError, "shape"),
    "offsets_short": (_entry(data_offsets=[8]), ModelFormatError, "data_offsets"),
    "offsets_long": (_entry(data_offsets=[0, 8, 8]), ModelFormatError, "data_offsets"),
    "offsets_bool": (_entry(data_offsets=[False, 8]), ModelFormatError, "data_offsets"),
    "offsets_float": (_entry(data_offsets=[0, 8.0]), ModelFormatError, "data_offsets"),
    "offsets_negative": (_entry(data_offsets=[-8, 0]), ModelFormatError, "data_offsets"),
    "offsets_reversed": (_entry(data_offsets=[8, 0]), ModelFormatError, "data_offsets"),
    "offsets_not_list": (_entry(data_offsets={"0": 8}), ModelFormatError, "data_offsets"),
    "length_mismatch": (_entry(shape=[3]), ModelFormatError, "needs 12 bytes"),
    "length_overflow": (_entry(shape=[2**62, 2**62, 2**62]), ModelFormatError, "shape"),
    "huge_dim_times_zero": (_entry(shape=[0, 2**70], data_offsets=[0, 0]), ModelFormatError, "too large"),
    "beyond_data": (_entry(shape=[4], data_offsets=[0, 16]), ModelFormatError, "beyond the data region"),
    "huge_offsets": (_entry(data_offsets=[2**64, 2**64 + 8]), ModelFormatError, "beyond"),
    "too_many_dims": (_entry(shape=[1] * 70, data_offsets=[0, 4]), UnsupportedModelError, "dimensions"),
}


@pytest.mark.parametrize("case", sorted(ENTRY_ERRORS))
def test_bad_entries(tmp_path, case):
    entry, exc_type, fragment = ENTRY_ERRORS[case]
    path = raw_file(tmp_path / f"{case}.safetensors", {"weird.tensor": entry}, DATA8)
    with pytest.raises(exc_type) as info:
        read_safetensors(path)
    msg = str(info.value)
    assert str(path) in msg and "weird.tensor" in msg and fragment in msg, msg
    if exc_type is ModelFormatError:  # header validation also guards the metadata reader
        with pytest.raises(exc_type):
            read_safetensors_metadata(path)


FILE_ERRORS = {
    # name: (header, data, header_len override, expected message fragment)
    "not_utf8": (b'{"a\xff": 1}', b"", None, "UTF-8"),
    "not_json": (b'{"a": ', b"", None, "not valid JSON"),
    "trailing_garbage": (b'{} xx', b"", None, "not valid JSON"),
    "json_list": ("[1, 2]", b"", None, "not an object"),
    "json_string": ('"hello"', b"", None, "not an object"),
    "json_number": ("12", b"", None, "not an object"),
    "bom": ("\ufeff{}", b"", None, "JSON"),
    "nan": ('{"__metadata__": {"a": NaN}}', b"", None, "NaN"),
    "deep": ("[" * 100000, b"", None, "nested too deeply"),
    "huge_int": ('{"a": {"dtype": "F32", "shape": [' + "9" * 5000 + "]}}", b"", None, "JSON"),
    "duplicate_tensor": ('{"a": %s, "a": %s}' % (json.dumps(F32_2), json.dumps(F32_2)), DATA8,
                         None, "duplicate key 'a'"),
    "duplicate_inner": ('{"a": {"dtype": "F32", "dtype": "F16", "shape": [2], '
                        '"data_offsets": [0, 8]}}', DATA8, None, "duplicate"),
    "header_len_zero": ("{}", b"", 0, "header length is 0"),
    "header_len_beyond": ("{}", b"", 50, "past the end"),
    "header_len_huge": ("{}", b"", MAX_HEADER_BYTES + 1, "limit"),
    "header_len_u64_max": ("{}", b"", 2**64 - 1, "limit"),
    "metadata_list": ({"__metadata__": ["a"]}, b"", None, "__metadata__"),
    "metadata_value": ({"__metadata__": {"a": 1}}, b"", None, "__metadata__['a']"),
    "metadata_nested": ({"__metadata__": {"a": {"b": "c"}}}, b"", None, "__metadata__"),
    "overlap": ({"a": F32_2, "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, DATA8, None, "overlap"),
    "overlap_same": ({"a": F32_2, "b": F32_2}, DATA8, None, "overlap"),
}


@pytest.mark.parametrize("case", sorted(FILE_ERRORS))
def test_bad_headers(tmp_path, case):
    header, data, header_len, fragment = FILE_ERRORS[case]
    path = raw_file(tmp_path / f"{case}.safetensors", header, data, header_len)
    with pytest.raises(ModelFormatError) as info:
        read_safetensors(path)
    msg = str(info.value)
    assert str(path) in msg and fragment in msg, msg
    if case.startswith("overlap"):
        assert "'b'" in msg


@pytest.mark.parametrize("size", [0, 1, 7])
def test_too_short(tmp_path, size):
    path = tmp_path / "short.safetensors"
    path.write_bytes(b"\x01" * size)
    with pytest.raises(ModelFormatError, match="shorter than") as info:
        read_safetensors(path)
    assert str(path) in str(info.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ModelNotFoundError) as info:
        read_safetensors(tmp_path / "nope.safetensors")
    assert "nope.safetensors" in str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(ModelFormatError, match="directory"):
        read_safetensors(tmp_path)


def test_gaps_and_trailing_bytes_are_tolerated(tmp_path):
    header = {"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}
    path = raw_file(tmp_path / "g.safetensors", header, np.array([0, 2.5, 9, 9], np.float32).tobytes())
    assert float(read_safetensors(path)["a"].data[0]) == 2.5


# --------------------------------------------------------------------------------------
# Hugging Face folders
# --------------------------------------------------------------------------------------


def make_folder(root: Path, *, config=None, tokenizer=True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(config or {"model_type": "gemma", "hidden_size": 8}))
    if tokenizer:
        (root / "tokenizer.model").write_bytes(b"not really a sentencepiece model")
    return root


def make_sharded(root: Path, weight_map=None, shards=None) -> Path:
    make_folder(root)
    shards = shards if shards is not None else {
        "model-00001-of-00002.safetensors": {"a": np.arange(4, dtype=np.float32), "b": np.ones((2, 2), np.float16)},
        "model-00002-of-00002.safetensors": {"c": (np.array([0x3F80, 0x4000], np.uint16), "bfloat16")},
    }
    for shard, tensors in shards.items():
        write_safetensors(root / shard, tensors)
    if weight_map is None:
        weight_map = {name: shard for shard, tensors in shards.items() for name in tensors}
    (root / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 28}, "weight_map": weight_map}))
    return root


def test_single_file_folder(tmp_path):
    root = make_folder(tmp_path / "m")
    write_safetensors(root / "model.safetensors", {"w": np.eye(2, dtype=np.float32)})
    write_safetensors(root / "other.safetensors", {"ignored": np.eye(2, dtype=np.float32)})
    ck = load_hf_folder(root)
    assert isinstance(ck, HFCheckpoint)
    assert ck.path == str(root) and ck.config["model_type"] == "gemma"
    assert list(ck.tensors) == ["w"] and ck.files == [str(root / "model.safetensors")]
    assert ck.tokenizer_path == str(root / "tokenizer.model")
    # the same through the file's path
    ck2 = load_hf_folder(root / "other.safetensors")
    assert list(ck2.tensors) == ["ignored"] and ck2.config == ck.config


def test_sharded_folder(tmp_path):
    root = make_sharded(tmp_path / "s")
    ck = load_hf_folder(root)
    assert list(ck.tensors) == ["a", "b", "c"]
    assert ck.files == [str(root / "model-00001-of-00002.safetensors"),
                        str(root / "model-00002-of-00002.safetensors")]
    np.testing.assert_array_equal(ck.tensors["a"].data, np.arange(4))
    assert ck.tensors["c"].dtype == "bfloat16"
    np.testing.assert_array_equal(ck.tensors["c"].as_float32(), [1.0, 2.0])
    assert ck.tensors["c"].file == str(root / "model-00002-of-00002.safetensors")
    assert isinstance(mmap_of(ck.tensors["b"].data), mmap.mmap)
    assert list(load_hf_folder(root / "model.safetensors.index.json").tensors) == ["a", "b", "c"]


def test_sharded_folder_in_subdir_and_symlink(tmp_path):
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    write_safetensors(blobs / "x", {"a": np.ones(2, np.float32)})
    root = make_folder(tmp_path / "snap")
    (root / "sub").mkdir()
    write_safetensors(root / "sub" / "b.safetensors", {"b": np.ones(2, np.int8)})
    os.symlink(blobs / "x", root / "a.safetensors")  # like the Hugging Face cache
    (root / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "a.safetensors", "b": "sub/b.safetensors"}}))
    ck = load_hf_folder(root)
    assert set(ck.tensors) == {"a", "b"}


def test_loose_files_folder(tmp_path):
    root = make_folder(tmp_path / "l", tokenizer=False)
    write_safetensors(root / "b.safetensors", {"y": np.zeros(1, np.float32)})
    write_safetensors(root / "a.safetensors", {"x": np.zeros(1, np.float32)})
    ck = load_hf_folder(root)
    assert list(ck.tensors) == ["x", "y"] and ck.tokenizer_path is None
    write_safetensors(root / "c.safetensors", {"x": np.zeros(1, np.float32)})
    with pytest.raises(ModelFormatError, match="'x'.*two files"):
        load_hf_folder(root)


def test_hf_missing_things(tmp_path):
    with pytest.raises(ModelNotFoundError, match="nowhere"):
        load_hf_folder(tmp_path / "nowhere")
    root = tmp_path / "noconf"
    root.mkdir()
    write_safetensors(root / "model.safetensors", {"w": np.zeros(1, np.float32)})
    with pytest.raises(ModelNotFoundError, match="config.json"):
        load_hf_folder(root)
    empty = make_folder(tmp_path / "empty")
    with pytest.raises(ModelNotFoundError) as info:
        load_hf_folder(empty)
    msg = str(info.value)
    assert "model.safetensors" in msg and "model.safetensors.index.json" in msg and "*.safetensors" in msg
    (empty / "notes.txt").write_text("x")
    with pytest.raises(ModelFormatError, match="notes.txt"):
        load_hf_folder(empty / "notes.txt")


@pytest.mark.parametrize("text, fragment", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "not an object"),
    (b"\xff\xfe{}", "UTF-8"),
])
def test_hf_bad_config(tmp_path, text, fragment):
    root = make_folder(tmp_path / "c")
    write_safetensors(root / "model.safetensors", {"w": np.zeros(1, np.float32)})
    if isinstance(text, bytes):
        (root / "config.json").write_bytes(text)
    else:
        (root / "config.json").write_text(text)
    with pytest.raises(ModelFormatError) as info:
        load_hf_folder(root)
    assert "config.json" in str(info.value) and fragment in str(info.value)


def test_hf_bad_index(tmp_path):
    shards = {"s1.safetensors": {"a": np.zeros(1, np.float32)},
              "s2.safetensors": {"b": np.zeros(1, np.float32)}}

    def expect(exc, weight_map, *fragments, shard_files=shards, raw=None):
        root = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
        make_sharded(root, weight_map=weight_map, shards=shard_files)
        if raw is not None:
            (root / "model.safetensors.index.json").write_text(raw)
        with pytest.raises(exc) as info:
            load_hf_folder(root)
        for fragment in fragments:
            assert fragment in str(info.value), str(info.value)

    expect(ModelFormatError, None, "weight_map", "missing", raw='{"metadata": {}}')
    expect(ModelFormatError, None, "index", raw="[]")
    expect(ModelFormatError, None, "not valid JSON", raw="{")
    expect(ModelFormatError, ["a"], "weight_map", "list")
    expect(ModelFormatError, {}, "empty")
    expect(ModelFormatError, {"a": 3, "b": "s2.safetensors"}, "'a'", "int")
    expect(ModelNotFoundError, {"a": "s1.safetensors", "b": "s3.safetensors"}, "s3.safetensors")
    expect(ModelFormatError, {"a": "s1.safetensors", "b": "s1.safetensors"}, "'b'", "s1.safetensors")
    expect(ModelFormatError, {"a": "s1.safetensors", "b": "s2.safetensors", "c": "s2.safetensors"},
           "'c'", "s2.safetensors")
    extra = {"s1.safetensors": {"a": np.zeros(1, np.float32), "b": np.zeros(1, np.float32)}}
    expect(ModelFormatError, {"a": "s1.safetensors"}, "'b'", "not listed", shard_files=extra)
    dup = {"s1.safetensors": {"a": np.zeros(1, np.float32)},
           "s2.safetensors": {"a": np.zeros(1, np.float32), "b": np.zeros(1, np.float32)}}
    expect(ModelFormatError, {"a": "s1.safetensors", "b": "s2.safetensors"}, "'a'", "two shards",
           shard_files=dup)
    outside = tmp_path / "outside.safetensors"
    write_safetensors(outside, {"b": np.zeros(1, np.float32)})
    for bad in (str(outside), "../outside.safetensors", "sub/../../outside.safetensors",
                "..\\outside.safetensors", "C:\\x.safetensors", "\\\\server\\share\\x.safetensors"):
        expect(ModelFormatError, {"a": "s1.safetensors", "b": bad}, "shard", "inside the folder")
    # a corrupt shard is reported with the shard's name
    root = make_sharded(tmp_path / "corrupt", shards=shards)
    (root / "s2.safetensors").write_bytes(b"\x00" * 4)
    with pytest.raises(ModelFormatError, match="s2.safetensors"):
        load_hf_folder(root)


# --------------------------------------------------------------------------------------
# fuzz
# --------------------------------------------------------------------------------------

VALID_CODES = ["F32", "BF16", "F16", "F64", "I32", "I64", "I8", "U8", "BOOL"]


def _random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(12 if depth < 3 else 8)
    if kind == 0:
        return rng.choice([0, 1, -1, 2, 7, 8, 12, 2**31, 2**32 + 4, 2**63 - 1, 2**63, 2**64,
                           -(2**63), 2**200, -(2**100)])
    if kind == 1:
        return rng.randrange(-20, 200)
    if kind == 2:
        return rng.choice([0.0, -0.0, 1.5, 8.0, 1e308, -1e-308, float("inf"), float("nan")])
    if kind == 3:
        return rng.choice(["", "F32", "BF16", "x" * rng.randrange(100), "\u00e9\u4e2d", "\udcff", "8", "__metadata__"])
    if kind == 4:
        return rng.choice([None, True, False])
    if kind == 5:
        return [rng.randrange(-3, 40) for _ in range(rng.randrange(4))]
    if kind == 6:
        return [rng.randrange(0, 4) for _ in range(rng.randrange(60, 70))]
    if kind == 7:
        return rng.choice(VALID_CODES + ["I16", "U16", "U32", "U64", "F8_E4M3", "C64", "f32", "float32"])
    if kind in (8, 9):
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["dtype", "shape", "data_offsets", "a", "x"]): _random_value(rng, depth + 1)
            for _ in range(rng.randrange(4))}


def _mutate_json(rng: random.Random, header: dict) -> dict:
    header = json.loads(json.dumps(header))
    names = list(header)
    name = rng.choice(names)
    entry = header[name]
    op = rng.randrange(11)
    if op == 0 and isinstance(entry, dict) and entry:
        entry[rng.choice(list(entry))] = _random_value(rng)
    elif op == 1 and name != "__metadata__":
        entry["data_offsets"] = [rng.randrange(-2, 80) for _ in range(rng.choice([2, 2, 2, 1, 3]))]
    elif op == 2 and name != "__metadata__":
        entry["shape"] = [rng.randrange(0, 6) for _ in range(rng.randrange(4))]
    elif op == 3 and name != "__metadata__":
        entry["dtype"] = rng.choice(VALID_CODES + ["I16", "U64", "F8_E5M2", "bf16", 3, None])
    elif op == 4 and isinstance(entry, dict) and entry:
        del entry[rng.choice(list(entry))]
    elif op == 5:
        header[name] = _random_value(rng)
    elif op == 6:
        header[rng.choice(["new", "__metadata__", name + "2"])] = _random_value(rng)
    elif op == 7:
        value = header.pop(name)
        header[rng.choice(["__metadata__", "", "\u00e9", name.upper()])] = value
    elif op == 8:
        return _random_value(rng)
    elif op == 9 and name != "__metadata__":
        entry["data_offsets"] = [rng.choice([0, 4, 2**63, 2**64, -1]), rng.choice([8, 2**64 + 8, 2**70])]
    else:
        for key in list(header):
            entry = header[key]
            if isinstance(entry, dict) and isinstance(entry.get("data_offsets"), list):
                header[key]["data_offsets"] = [x + rng.choice([-1, 0, 1]) if isinstance(x, int) else x
                                               for x in header[key]["data_offsets"]]
    return header


def _mutate(rng: random.Random, blob: bytes, header: dict, header_len: int) -> tuple[str, bytes]:
    op = rng.randrange(8)
    data = bytearray(blob)
    if op == 0:  # bit flips in the header length + header
        for _ in range(rng.randrange(1, 5)):
            i = rng.randrange(8 + header_len)
            data[i] ^= 1 << rng.randrange(8)
        return "flip-header", bytes(data)
    if op == 1:  # bit flips anywhere
        for _ in range(rng.randrange(1, 9)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        return "flip-any", bytes(data)
    if op == 2:
        return "truncate", bytes(data[: rng.randrange(len(data))])
    if op == 3:  # random header length
        n = rng.choice([0, 1, 7, header_len - 1, header_len + 1, len(data) - 8, len(data) - 7,
                        rng.randrange(2**64), MAX_HEADER_BYTES, MAX_HEADER_BYTES + 1, 2**64 - 1])
        return "header-len", struct.pack("<Q", n % 2**64) + bytes(data[8:])
    if op == 4:  # raw text edits of the header
        text = bytes(data[8: 8 + header_len])
        edit = rng.randrange(4)
        if edit == 0:
            i = rng.randrange(len(text))
            text = text[:i] + rng.choice([b"[" * 5000, b'"', b"{", b"}", b",", b"\xff", b"\x00", b"1e999"]) + text[i:]
        elif edit == 1:
            i = rng.randrange(len(text))
            text = text[:i] + text[i + rng.randrange(1, 20):]
        elif edit == 2:
            text = text.replace(b"F32", rng.choice([b"F16", b"BF16", b"F33", b"", b"I8"]), 1)
        else:
            text = text.replace(b"[", b"[" + str(rng.randrange(-5, 100)).encode() + b",", 1)
        return "text-edit", struct.pack("<Q", len(text)) + text + bytes(data[8 + header_len:])
    # JSON structure edits, re-serialised with a right or slightly wrong length
    new_header = _mutate_json(rng, header)
    text = json.dumps(new_header).encode("utf-8", "surrogatepass")
    text += b" " * rng.randrange(9)
    n = len(text) if rng.random() < 0.85 else len(text) + rng.choice([-2, -1, 1, 3])
    return "json-edit", struct.pack("<Q", max(n, 0)) + text + bytes(data[8 + header_len:])


def test_fuzz(tmp_path):
    rng = random.Random(20240611)
    base = tmp_path / "base.safetensors"
    write_safetensors(base, {
        "f32": np.arange(6, dtype=np.float32).reshape(2, 3),
        "bf16": (np.array([0x3F80, 0x4000, 0xC040, 0x7F80], np.uint16), "bfloat16"),
        "f16": np.array([1, 2, 3], np.float16),
        "empty": np.zeros((0, 2), np.int32),
        "u8": np.arange(5, dtype=np.uint8),
        "bool": np.array([True, False]),
    }, metadata={"format": "pt", "a": "b"})
    blob = base.read_bytes()
    (header_len,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8: 8 + header_len])
    assert len(read_safetensors(base)) == 6

    outcomes: dict[str, int] = {}
    for i in range(2000):
        kind, mutated = _mutate(rng, blob, header, header_len)
        path = tmp_path / f"fuzz{i}.safetensors"  # fresh files: never rewrite a mapped file
        path.write_bytes(mutated)
        try:
            tensors = read_safetensors(path)
        except (ModelFormatError, UnsupportedModelError) as exc:
            assert str(path) in str(exc), (kind, str(exc))
            outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
            continue
        except Exception as exc:  # pragma: no cover - the failure being tested for
            pytest.fail(f"mutation {i} ({kind}) raised {type(exc).__name__}: {exc!r}\n{mutated[:300]!r}")
        with np.errstate(all="ignore"):
            for t in tensors.values():
                assert t.data.shape == t.shape
                float(np.sum(t.data, dtype=np.float64))
        outcomes["ok"] = outcomes.get("ok", 0) + 1
        path.unlink()
    print("fuzz outcomes:", outcomes)
    assert outcomes.get("ok", 0) > 50 and outcomes.get("ModelFormatError", 0) > 500
    assert outcomes.get("UnsupportedModelError", 0) > 10
