"""Tests of gemma_native.loading.gguf on malformed files: one test per error the reader
raises (the message names the file and what is wrong), and a seeded fuzz test of mutated files
(only ModelFormatError / UnsupportedModelError, never a hang or another exception).

The hand-rolled writer (:class:`Builder`, tests/helpers/gguf_builder.py) produces the malformed
files.  Valid files, dequantization and the real 270M file are test_loading_gguf.py.
"""

from __future__ import annotations

import random
import signal
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from gemma_native.errors import (
    ModelFormatError,
    ModelNotFoundError,
    UnsupportedModelError,
)

ref = pytest.importorskip("gguf")  # the PyPI reference package (not our module)
QT = ref.GGMLQuantizationType


from gemma_native.loading import gguf as G  # noqa: E402  (the installed package)
from tests.helpers.gguf_builder import (  # noqa: E402
    ARRAY,
    STRING,
    Builder,
    f32_bytes,
    minimal,
    random_blocks,
)

read_gguf = G.read_gguf

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
