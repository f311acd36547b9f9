"""Fuzzing the public loader: ``gemma_native.load(path)`` on thousands of corrupted model files.

Two tiny valid models are the seeds:

* a Gemma 3 GGUF file (the keys and tensor names of docs/model-math.md, 'GGUF tensors and
  metadata'; 2 layers, one sliding and one global; F32, F16 and Q8_0 tensors; a tiny
  SentencePiece-style vocabulary) written with ``gguf.GGUFWriter``;
* a RecurrentGemma Hugging Face folder (``config.json`` + ``model.safetensors``) written by
  ``tinyckpt.write_tiny_checkpoint``.

Each mutant (seeded: case ``i`` of a campaign is always the same file) goes through the whole
path -- file parsing, config parsing, tensor mapping, native model construction -- and, when
``load`` succeeds, one forward pass ``model.logits([1, 2, 3])``.  The contract checked: every
call either succeeds or raises a :class:`gemma_native.GemmaNativeError` subclass.  Anything
else is a finding: another exception type (IndexError, a ValueError not from the package,
MemoryError ...), a crash (segfault, abort, sanitizer report), a hang, or a load that needs
absurd memory.

Mutations of the GGUF file: bit flips weighted toward the header, the metadata and the tensor
directory; length / count / offset / dimension / type fields overwritten with boundary values;
metadata value types swapped; truncations; byte runs overwritten, inserted or deleted; and
structure-aware rebuilds with ``GGUFWriter`` (metadata values of random types and values,
missing or extra keys and tensors, other storage types and shapes, other architectures, a
broken vocabulary).  Mutations of the Hugging Face folder: ``config.json`` keys set to random
types and values or deleted, broken JSON, safetensors header entries (dtype, shape,
data_offsets) rewritten, the header length prefix changed, bit flips, truncations, and folder
level changes (missing files, a sharded index, a garbage ``tokenizer.model``).

The mutants run in worker subprocesses (this file run as a script), so that a crash or a hang
costs one case, not the test session: each case has an alarm (``CASE_TIMEOUT``) inside the
worker and a deadline in the parent, and the worker's address space is capped
(``RLIMIT_AS``; under AddressSanitizer, which needs a huge address space, ASan's own
allocation limits are used instead), so an absurd allocation fails fast as a MemoryError --
reported as a finding -- instead of taking the machine down.  A failing campaign lists every
distinct finding with the case number, the mutation and where the exception came from; the
mutant files are kept under the pytest tmp folder.

The findings of the campaigns are also written below as small explicit repro tests
(``test_repro_*``), which fail until the loader is fixed.

Under AddressSanitizer (a ``-DGEMMA_NATIVE_SANITIZE=ON`` build imported by a stock Python),
preload libstdc++ together with libasan::

    LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)" \\
    ASAN_OPTIONS=detect_leaks=0 pytest tests/loading/test_fuzz_load.py

With libasan alone, libstdc++ is only loaded later (by dlopen of the extension), ASan's
``__cxa_throw`` interceptor finds no real ``__cxa_throw`` and every C++ exception thrown from
libstdc++ or sentencepiece aborts with ``CHECK failed: ... real___cxa_throw != 0``
(google/sanitizers#934) -- a harness problem, not a bug of the package.  The workers add
``allocator_may_return_null=1`` and size limits to ``ASAN_OPTIONS``; a failed throwing
``operator new`` still aborts under ASan (it cannot become std::bad_alloc there), so a huge
native allocation shows up as a Crash finding carrying ASan's out-of-memory report instead of
the MemoryError a normal build raises.  UBSan messages printed by the workers become findings
of the case that printed them.
"""

from __future__ import annotations

import copy
import json
import math
import os
import resource
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

import gemma_native as gn  # noqa: E402

QT = gguf.GGMLQuantizationType
VT = gguf.GGUFValueType

SEED = 0x6E61_7469
GGUF_CASES = 2600
HF_CASES = 2000
WORKERS = 2  # parallel worker processes per campaign
CASE_TIMEOUT = 4.0  # seconds, alarm inside the worker
PARENT_GRACE = 6.0  # seconds more before the parent kills a silent worker
MEM_HEADROOM = 2 << 30  # bytes of address space a worker may add to its baseline
RSS_FINDING = 768 << 20  # peak RSS growth (bytes) reported as absurd memory use
# A fresh state larger than this is reported too (RecurrentGemma's attention_window_size cap,
# 2**20, gives 128 MiB for the tiny seed; the seeds' own states take a few KiB).
STATE_FINDING = 256 << 20

# ------------------------------------------------------------------------------ the seeds

D, F, H, KV, HD, V, NL = 64, 96, 2, 1, 32, 128, 2
ARCH = "gemma3"

TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "\u2581", "a", "b", "c",
          "\u2581a", "ab", "\u2581ab", "abc", "\u2581abc", "  "]
TOKEN_TYPES = [3, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 4]
TOKEN_SCORES = [-1000.0] * 5 + [-float(k) for k in range(len(TOKENS) - 5)]


@dataclass
class MetaEntry:
    key: str
    value: object
    vtype: object  # gguf.GGUFValueType
    sub: object = None  # element type of an array


@dataclass
class TensorEntry:
    name: str
    values: np.ndarray  # float32 values in numpy order (rows, cols), or raw data when raw
    storage: str  # "F32", "F16", "BF16", "Q8_0", ... or "RAW"
    raw_dtype: object = None  # for storage "RAW": the GGML type of ``values`` (bytes)


def gguf_spec() -> tuple[list, list]:
    """(metadata entries, tensor entries) of the seed GGUF file; deterministic."""
    rng = np.random.default_rng(SEED)
    a = ARCH + "."
    u32 = VT.UINT32
    meta = [
        MetaEntry("general.architecture", ARCH, VT.STRING),
        MetaEntry(a + "context_length", 64, u32),
        MetaEntry(a + "embedding_length", D, u32),
        MetaEntry(a + "block_count", NL, u32),
        MetaEntry(a + "feed_forward_length", F, u32),
        MetaEntry(a + "attention.head_count", H, u32),
        MetaEntry(a + "attention.head_count_kv", KV, u32),
        MetaEntry(a + "attention.key_length", HD, u32),
        MetaEntry(a + "attention.value_length", HD, u32),
        MetaEntry(a + "attention.layer_norm_rms_epsilon", 1e-6, VT.FLOAT32),
        MetaEntry(a + "rope.freq_base", 1e6, VT.FLOAT32),
        MetaEntry(a + "attention.sliding_window", 8, u32),
        MetaEntry(a + "attention.sliding_window_pattern", 2, u32),
        MetaEntry("tokenizer.ggml.model", "llama", VT.STRING),
        MetaEntry("tokenizer.ggml.tokens", list(TOKENS), VT.ARRAY, VT.STRING),
        MetaEntry("tokenizer.ggml.scores", list(TOKEN_SCORES), VT.ARRAY, VT.FLOAT32),
        MetaEntry("tokenizer.ggml.token_type", list(TOKEN_TYPES), VT.ARRAY, VT.INT32),
        MetaEntry("tokenizer.ggml.bos_token_id", 2, u32),
        MetaEntry("tokenizer.ggml.eos_token_id", 1, u32),
        MetaEntry("tokenizer.ggml.unknown_token_id", 3, u32),
        MetaEntry("tokenizer.ggml.padding_token_id", 0, u32),
        MetaEntry("tokenizer.ggml.add_space_prefix", False, VT.BOOL),
    ]

    def mat(rows, cols, std=0.2):
        return (rng.standard_normal((rows, cols)) * std).astype(np.float32)

    def norm(n):  # GGUF norms hold 1 + w
        return (1.0 + rng.standard_normal(n) * 0.1).astype(np.float32)

    tensors = [TensorEntry("token_embd.weight", mat(V, D, 0.5), "Q8_0"),
               TensorEntry("output_norm.weight", norm(D), "F32")]
    for i in range(NL):
        p = f"blk.{i}."
        tensors += [
            TensorEntry(p + "attn_norm.weight", norm(D), "F32"),
            TensorEntry(p + "attn_q.weight", mat(H * HD, D), "Q8_0"),
            TensorEntry(p + "attn_k.weight", mat(KV * HD, D), "F32"),
            TensorEntry(p + "attn_v.weight", mat(KV * HD, D), "F16" if i else "F32"),
            TensorEntry(p + "attn_output.weight", mat(D, H * HD), "F32" if i else "Q8_0"),
            TensorEntry(p + "attn_q_norm.weight", norm(HD), "F32"),
            TensorEntry(p + "attn_k_norm.weight", norm(HD), "F32"),
            TensorEntry(p + "post_attention_norm.weight", norm(D), "F32"),
            TensorEntry(p + "ffn_norm.weight", norm(D), "F32"),
            TensorEntry(p + "post_ffw_norm.weight", norm(D), "F32"),
            TensorEntry(p + "ffn_gate.weight", mat(F, D), "Q8_0"),
            TensorEntry(p + "ffn_up.weight", mat(F, D), "F32"),
            TensorEntry(p + "ffn_down.weight", mat(D, F), "Q8_0" if i else "F32"),
        ]
    return meta, tensors


def write_gguf(path, meta, tensors, alignment=None) -> None:
    """Writes a GGUF file with gguf.GGUFWriter (general.architecture comes from ``meta``)."""
    w = gguf.GGUFWriter(os.fspath(path), arch="unused")
    w.kv_data[0].clear()  # the writer pre-adds general.architecture; ``meta`` decides
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for m in meta:
        w.add_key_value(m.key, m.value, m.vtype, sub_type=m.sub)
    for t in tensors:
        if t.storage == "RAW":
            w.add_tensor(t.name, t.values, raw_dtype=t.raw_dtype)
        elif t.storage == "F32":
            w.add_tensor(t.name, np.ascontiguousarray(t.values, dtype=np.float32))
        elif t.storage == "F16":
            w.add_tensor(t.name, t.values.astype(np.float16))
        elif t.storage == "F64":
            w.add_tensor(t.name, t.values.astype(np.float64))
        elif t.storage in ("I8", "I16", "I32"):
            w.add_tensor(t.name, t.values.astype({"I8": np.int8, "I16": np.int16,
                                                   "I32": np.int32}[t.storage]))
        else:
            q = QT[t.storage]
            w.add_tensor(t.name, gguf.quants.quantize(t.values, q), raw_dtype=q)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def gguf_bytes(meta, tensors, alignment=None) -> bytes:
    fd, tmp = tempfile.mkstemp(suffix=".gguf")
    os.close(fd)
    try:
        with np.errstate(all="ignore"):  # inf / NaN weights and scales are on purpose
            write_gguf(tmp, meta, tensors, alignment)
        with open(tmp, "rb") as f:
            return f.read()
    finally:
        os.unlink(tmp)


def write_hf_seed(path) -> str:
    # Imported here: the workers run this file as a script, where the tests package is not
    # importable (and they never write seeds).
    from tests.helpers import tinyckpt

    return tinyckpt.write_tiny_checkpoint(os.fspath(path), seed=SEED % 1000)


# ------------------------------------------------------------------ GGUF layout (our own parse)


@dataclass
class Field:
    off: int
    size: int  # bytes
    kind: str  # "count", "len", "vtype", "etype", "int", "float", "bool", "ndims", "ne", ...
    label: str
    value: object


_SCALAR_FMT = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B",
               10: "<Q", 11: "<q", 12: "<d"}


class GGUFLayout:
    """Positions of every structural field and the regions of a *valid* GGUF file."""

    def __init__(self, data: bytes):
        self.size = len(data)
        self.fields: list[Field] = []
        self.regions: dict[str, list] = {"header": [(0, 24)], "kv_cfg": [], "kv_tok": [],
                                         "tinfo": [], "data": []}
        self.data = data
        self.pos = 4
        self._field("<I", "version", "version")
        n_tensors = self._field("<Q", "count", "tensor_count")
        n_kv = self._field("<Q", "count", "kv_count")
        for k in range(n_kv):
            start = self.pos
            key = self._string(f"kv[{k}].key")
            vtype = self._field("<I", "vtype", f"{key}.type")
            self._value(vtype, key)
            self.regions["kv_tok" if key.startswith("tokenizer.") else "kv_cfg"].append(
                (start, self.pos))
        start = self.pos
        for _ in range(n_tensors):
            name = self._string("tensor name")
            nd = self._field("<I", "ndims", f"{name}.n_dims")
            for j in range(nd):
                self._field("<Q", "ne", f"{name}.ne[{j}]")
            self._field("<I", "ggml", f"{name}.type")
            self._field("<Q", "offset", f"{name}.offset")
        self.tinfo_end = self.pos
        self.data_offset = -(-self.pos // 32) * 32
        self.regions["tinfo"].append((start, self.data_offset))
        self.regions["data"].append((self.data_offset, self.size))

    def _field(self, fmt, kind, label):
        (v,) = struct.unpack_from(fmt, self.data, self.pos)
        self.fields.append(Field(self.pos, struct.calcsize(fmt), kind, label, v))
        self.pos += struct.calcsize(fmt)
        return v

    def _string(self, label):
        n = self._field("<Q", "len", label + ".len")
        s = self.data[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return s

    def _value(self, vtype, key, depth=0):
        if vtype == 8:
            self._string(key + ".str")
        elif vtype == 9:
            et = self._field("<I", "etype", key + ".etype")
            n = self._field("<Q", "count", key + ".count")
            for j in range(n):
                self._value(et, f"{key}[{j}]", depth + 1)
        else:
            fmt = _SCALAR_FMT[vtype]
            kind = "float" if vtype in (6, 12) else "bool" if vtype == 7 else "int"
            self._field(fmt, kind, key)


# ----------------------------------------------------------------------------- value pools

INT_EDGES = [0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 96, 127, 128, 129,
             255, 256, 1000, 1023, 1024, 4095, 4096, 65535, 65536, 1 << 20, 1 << 24,
             (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32, (1 << 32) + 1, 1 << 40, 1 << 48,
             1 << 62, (1 << 63) - 1, 1 << 63, (1 << 63) + 1, (1 << 64) - 1]
FLOAT_EDGES = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 1e-45, 1e-38, 1e-6, 1e6, 1e30, 3.4e38, 1e300,
               -1e6, math.nan, math.inf, -math.inf]


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def edge_int(rng, orig=None, file_size=None, signed=False):
    c = list(INT_EDGES)
    if orig is not None:
        c += [orig - 1, orig + 1, orig * 2, orig // 2, orig + 32, orig - 32, orig << 32,
              orig * 3]
    if file_size is not None:
        c += [file_size, file_size - 1, file_size + 1, file_size // 2]
    if signed:
        c += [-1, -2, -32, -(1 << 31), -(1 << 63)]
    return int(_pick(rng, c))


def _pack_int(value, size):
    return (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def _pack_float(value, size):
    with np.errstate(over="ignore"):  # 1e300 as float32 is inf, on purpose
        return np.array([value], dtype=np.float32 if size == 4 else np.float64).tobytes()


# ------------------------------------------------------------------------ GGUF mutations

REGION_WEIGHTS = {"header": 0.08, "kv_cfg": 0.30, "kv_tok": 0.10, "tinfo": 0.37, "data": 0.15}


def _region_pos(rng, lay: GGUFLayout, region=None):
    if region is None or not any(b > a for a, b in lay.regions[region]):
        names = [n for n in REGION_WEIGHTS if any(b > a for a, b in lay.regions[n])]
        w = np.array([REGION_WEIGHTS[n] for n in names])
        region = names[int(rng.choice(len(names), p=w / w.sum()))]
    a, b = _pick(rng, [(a, b) for a, b in lay.regions[region] if b > a])
    return int(rng.integers(a, b)), region


def m_flip(rng, buf: bytearray, lay: GGUFLayout) -> str:
    n = int(_pick(rng, [1, 1, 1, 2, 3, 4, 8]))
    done = []
    for _ in range(n):
        pos, region = _region_pos(rng, lay)
        bit = int(rng.integers(8))
        buf[pos] ^= 1 << bit
        done.append(f"{region}@{pos}.{bit}")
    return "flip " + ",".join(done)


def m_field(rng, buf: bytearray, lay: GGUFLayout) -> str:
    f = _pick(rng, lay.fields)
    if f.kind == "float":
        v = float(_pick(rng, FLOAT_EDGES))
        buf[f.off:f.off + f.size] = _pack_float(v, f.size)
    elif f.kind == "bool":
        v = int(_pick(rng, [0, 1, 2, 255]))
        buf[f.off:f.off + f.size] = _pack_int(v, f.size)
    elif f.kind in ("vtype", "etype"):
        v = int(_pick(rng, list(range(13)) + [13, 255, 1 << 31, (1 << 32) - 1]))
        buf[f.off:f.off + f.size] = _pack_int(v, f.size)
    elif f.kind == "ggml":
        v = int(_pick(rng, list(range(42)) + [42, 100, 1 << 31, (1 << 32) - 1]))
        buf[f.off:f.off + f.size] = _pack_int(v, f.size)
    else:
        v = edge_int(rng, int(f.value), lay.size, signed=f.kind == "int")
        buf[f.off:f.off + f.size] = _pack_int(v, f.size)
    return f"field {f.label}@{f.off} {f.value!r}->{v!r}"


_SAME_SIZE = {0: [1, 7], 1: [0, 7], 7: [0, 1], 2: [3], 3: [2], 4: [5, 6], 5: [4, 6], 6: [4, 5],
              10: [11, 12], 11: [10, 12], 12: [10, 11]}


def m_vtype_swap(rng, buf: bytearray, lay: GGUFLayout) -> str:
    """A metadata value reinterpreted as another type of the same size (the file stays
    parseable, the loader sees a value of an unexpected type)."""
    cands = [f for f in lay.fields if f.kind in ("vtype", "etype") and f.value in _SAME_SIZE]
    f = _pick(rng, cands)
    v = int(_pick(rng, _SAME_SIZE[f.value]))
    buf[f.off:f.off + 4] = _pack_int(v, 4)
    return f"vtype {f.label} {f.value}->{v}"


def m_truncate(rng, buf: bytearray, lay: GGUFLayout) -> bytes:
    r = rng.random()
    if r < 0.4:
        cut = int(rng.integers(0, lay.data_offset + 64))
    elif r < 0.6:
        f = _pick(rng, lay.fields)
        cut = max(0, f.off + int(rng.integers(-3, f.size + 1)))
    elif r < 0.8:
        cut = int(rng.integers(lay.data_offset, lay.size))
    else:
        cut = lay.size - int(rng.integers(1, 41))
    return bytes(buf[:cut]), f"truncate {lay.size}->{cut}"


def m_bytes(rng, buf: bytearray, lay: GGUFLayout) -> str:
    pos, region = _region_pos(rng, lay)
    n = int(rng.integers(1, 17))
    kind = _pick(rng, ["rand", "zero", "ff"])
    fill = {"rand": rng.integers(0, 256, n, dtype=np.uint8).tobytes(), "zero": bytes(n),
            "ff": b"\xff" * n}[kind]
    buf[pos:pos + n] = fill[:len(buf) - pos] if pos + n > len(buf) else fill
    return f"bytes {kind} {region}@{pos}+{n}"


def m_shift(rng, buf: bytearray, lay: GGUFLayout):
    pos, region = _region_pos(rng, lay, _pick(rng, ["header", "kv_cfg", "kv_tok", "tinfo"]))
    n = int(rng.integers(1, 9))
    if rng.random() < 0.5:
        noise = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        out = bytes(buf[:pos]) + noise + bytes(buf[pos:])
        return out, f"insert {n} bytes {region}@{pos}"
    return bytes(buf[:pos]) + bytes(buf[pos + n:]), f"delete {n} bytes {region}@{pos}"


# --- structure-aware rebuilds (GGUFWriter)

_INT_TYPES = [VT.UINT8, VT.INT8, VT.UINT16, VT.INT16, VT.UINT32, VT.INT32, VT.UINT64, VT.INT64]
_RANGES = {VT.UINT8: (0, 255), VT.INT8: (-128, 127), VT.UINT16: (0, 65535),
           VT.INT16: (-32768, 32767), VT.UINT32: (0, (1 << 32) - 1),
           VT.INT32: (-(1 << 31), (1 << 31) - 1), VT.UINT64: (0, (1 << 64) - 1),
           VT.INT64: (-(1 << 63), (1 << 63) - 1)}


def random_meta_value(rng, orig=None):
    """(value, vtype, sub_type) of a random GGUF type."""
    kind = _pick(rng, ["int", "int", "int", "float", "bool", "str", "arr_int", "arr_str",
                       "arr_float", "arr_empty", "arr_arr"])
    if kind == "int":
        vt = _pick(rng, _INT_TYPES)
        lo, hi = _RANGES[vt]
        o = orig if isinstance(orig, int) and not isinstance(orig, bool) else None
        v = edge_int(rng, o, signed=lo < 0)
        return (v if lo <= v <= hi else v % (hi + 1) if lo == 0 else lo), vt, None
    if kind == "float":
        return float(_pick(rng, FLOAT_EDGES)), _pick(rng, [VT.FLOAT32, VT.FLOAT64]), None
    if kind == "bool":
        return bool(rng.integers(2)), VT.BOOL, None
    if kind == "str":
        text = _pick(rng, ["", "gemma3", "64", "none", "linear", "\u00e9\u4e2d", "x" * 300])
        return text, VT.STRING, None
    if kind == "arr_int":
        n = int(_pick(rng, [1, 2, 3, 15, 16]))
        sub = _pick(rng, [VT.INT32, VT.UINT8, VT.INT64])
        return [int(x) for x in rng.integers(-5, 300, n)], VT.ARRAY, sub
    if kind == "arr_str":
        n = int(_pick(rng, [1, 2, 15, 16]))
        items = [_pick(rng, ["a", "", "<unk>", "\u2581", "<0x41>"]) for _ in range(n)]
        return items, VT.ARRAY, VT.STRING
    if kind == "arr_float":
        n = int(_pick(rng, [1, 15, 16]))
        return [float(_pick(rng, FLOAT_EDGES)) for _ in range(n)], VT.ARRAY, VT.FLOAT32
    if kind == "arr_empty":
        return [], VT.ARRAY, _pick(rng, [VT.INT32, VT.STRING, VT.FLOAT32])
    return [[1, 2], [3]], VT.ARRAY, VT.ARRAY


OPTIONAL_KEYS = [
    "general.alignment", f"{ARCH}.attn_logit_softcapping", f"{ARCH}.final_logit_softcapping",
    f"{ARCH}.rope.scaling.type", f"{ARCH}.rope.scaling.factor", f"{ARCH}.rope.dimension_count",
    "tokenizer.ggml.add_bos_token", "tokenizer.ggml.merges", "tokenizer.ggml.pre",
    "general.name", f"{ARCH}.expert_count",
]
STORAGES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "MXFP4", "F64", "I8",
            "I32"]
RAW_TYPES = [QT.Q8_1, QT.IQ4_NL, QT.Q4_K, QT.Q6_K, QT.IQ2_XXS, QT.TQ2_0, QT.Q8_K]


def _sem_meta(rng, meta, tensors) -> str:
    op = _pick(rng, ["set", "set", "set", "delete", "add", "arch", "dup_prefix"])
    if op == "set":
        m = _pick(rng, meta)
        m.value, m.vtype, m.sub = random_meta_value(rng, m.value)
        return f"meta set {m.key}={_short(m.value)}:{m.vtype.name}"
    if op == "delete":
        m = meta.pop(int(rng.integers(len(meta))))
        return f"meta delete {m.key}"
    if op == "add":
        key = _pick(rng, OPTIONAL_KEYS)
        if key == "general.alignment" and rng.random() < 0.7:
            v = int(_pick(rng, [0, 1, 2, 3, 8, 16, 64, 4096, 1 << 31]))
            meta.append(MetaEntry(key, v, VT.UINT32))
            return f"meta add {key}={v}"
        if key.endswith("scaling.type") and rng.random() < 0.6:
            meta.append(MetaEntry(key, _pick(rng, ["none", "linear", "yarn"]), VT.STRING))
            return f"meta add {key}={meta[-1].value}"
        v, vt, sub = random_meta_value(rng)
        meta.append(MetaEntry(key, v, vt, sub))
        return f"meta add {key}={_short(v)}:{vt.name}"
    if op == "arch":
        new = _pick(rng, ["gemma", "gemma2", "gemma3n", "llama", "", "GEMMA3"])
        for m in meta:
            if m.key == "general.architecture":
                m.value = new
            elif m.key.startswith(ARCH + ".") and rng.random() < 0.9:
                m.key = new + m.key[len(ARCH):]
        if new in ("gemma", "gemma2") and rng.random() < 0.7:  # also drop what it lacks
            drop = ("attn_q_norm", "attn_k_norm") + (("post_attention_norm", "post_ffw_norm")
                                                     if new == "gemma" else ())
            tensors[:] = [t for t in tensors if not any(f".{d}." in t.name for d in drop)]
        return f"meta arch {new}"
    # the same key twice (GGUFWriter refuses; write it under another spelling first)
    m = _pick(rng, meta)
    meta.append(MetaEntry(m.key + "\u0000" if rng.random() < 0.3 else m.key.upper(), m.value,
                          m.vtype, m.sub))
    return f"meta near-duplicate {m.key}"


def _sem_tensor(rng, meta, tensors) -> str:
    op = _pick(rng, ["drop", "extra", "rename", "storage", "storage", "shape", "shape", "raw",
                     "nan", "vocab"])
    t = _pick(rng, tensors)
    if op == "drop":
        tensors.remove(t)
        return f"tensor drop {t.name}"
    if op == "extra":
        name = _pick(rng, ["output.weight", "rope_freqs.weight", f"blk.{NL}.attn_q.weight",
                           "blk.0.attn_q.bias", "x", "blk.-1.ffn_up.weight"])
        tensors.append(TensorEntry(name, np.ones((4, 64), np.float32), "F32"))
        return f"tensor extra {name}"
    if op == "rename":
        old = t.name
        t.name = _pick(rng, [old.replace("blk.0", "blk.1"), old.replace("blk.1", "blk.7"),
                             old + "x", old.replace(".weight", ""), "blk.00." + old[6:]])
        if sum(x.name == t.name for x in tensors) > 1:
            t.name = old + ".dup"
        return f"tensor rename {old}->{t.name}"
    if op == "storage":
        t.storage = _pick(rng, STORAGES)
        return f"tensor storage {t.name}={t.storage}"
    if op == "raw":
        q = _pick(rng, RAW_TYPES)
        bs, ts = gguf.GGML_QUANT_SIZES[q]
        rows = t.values.shape[0] if t.values.ndim == 2 else 1
        cols = max(1, (t.values.shape[-1] * (rows if t.values.ndim == 1 else 1)) // bs)
        raw = rng.integers(0, 256, (rows, cols * ts), dtype=np.uint8)
        t.values, t.storage, t.raw_dtype = raw, "RAW", q
        return f"tensor raw {t.name}={q.name}"
    if op == "nan":
        t.values = t.values.copy()
        t.values.flat[int(rng.integers(t.values.size))] = _pick(rng, [np.nan, np.inf, 1e30])
        return f"tensor nan {t.name}"
    if op == "vocab":
        emb = next(x for x in tensors if x.name == "token_embd.weight")
        rows = int(_pick(rng, [1, 2, 3, 4, 5, 14, 15, 16, 200]))
        emb.values = np.resize(emb.values, (rows, emb.values.shape[1])).astype(np.float32)
        return f"tensor vocab rows={rows}"
    # shape
    s = t.values.shape
    choice = _pick(rng, ["T", "rows+1", "rows-1", "3d", "flat", "row", "cols*2", "one"])
    size = t.values.size
    if choice == "T" and len(s) == 2:
        t.values = np.ascontiguousarray(t.values.T)
    elif choice == "rows+1":
        t.values = np.resize(t.values, (s[0] + 1,) + s[1:])
    elif choice == "rows-1" and s[0] > 1:
        t.values = t.values[:-1].copy()
    elif choice == "3d" and size % 64 == 0:
        t.values = t.values.reshape(-1, 2, 32) if size % 64 == 0 else t.values
    elif choice == "flat":
        t.values = t.values.reshape(-1).copy()
    elif choice == "row":
        t.values = t.values.reshape(1, -1).copy()
    elif choice == "cols*2" and len(s) == 2:
        t.values = np.resize(t.values, (s[0], s[1] * 2))
    else:
        t.values = np.ones((1, 32), np.float32)
    t.values = np.ascontiguousarray(t.values, dtype=np.float32)
    return f"tensor shape {t.name} {s}->{t.values.shape}"


def _sem_vocab(rng, meta, tensors) -> str:
    op = _pick(rng, ["drop_all", "tokens", "scores", "types", "ids", "model"])
    if op == "drop_all":
        meta[:] = [m for m in meta if not m.key.startswith("tokenizer.")]
        return "vocab drop"
    get = {m.key: m for m in meta}
    if op == "tokens":
        m = get["tokenizer.ggml.tokens"]
        toks = list(m.value)
        sub = _pick(rng, ["dup", "empty", "short", "long", "byte", "bytes256"])
        if sub == "dup":
            toks[int(rng.integers(len(toks)))] = toks[6]
        elif sub == "empty":
            toks[int(rng.integers(len(toks)))] = ""
        elif sub == "short":
            toks = toks[:int(rng.integers(0, len(toks)))]
        elif sub == "long":
            toks = toks + [f"w{k}" for k in range(int(_pick(rng, [1, 200])))]
        elif sub == "byte":
            toks[7] = "<0x41>"
        else:
            toks = toks[:5] + [f"<0x{b:02X}>" for b in range(256)]
        m.value = toks
        return f"vocab tokens {sub} n={len(toks)}"
    if op == "scores":
        m = get["tokenizer.ggml.scores"]
        m.value = [float(_pick(rng, FLOAT_EDGES)) for _ in m.value]
        m.sub = _pick(rng, [VT.FLOAT32, VT.FLOAT64, VT.INT32])
        if m.sub == VT.INT32:
            m.value = [int(x) if math.isfinite(x) and abs(x) < 1 << 31 else 0 for x in m.value]
        return f"vocab scores {m.sub.name}"
    if op == "types":
        m = get["tokenizer.ggml.token_type"]
        m.value = [int(_pick(rng, [0, 1, 2, 3, 4, 5, 6, 7, -1])) for _ in m.value]
        return "vocab types"
    if op == "ids":
        m = get[_pick(rng, ["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                            "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id"])]
        m.value = int(_pick(rng, [0, 3, 14, 15, 16, 127, 128, 1 << 31, (1 << 32) - 1]))
        return f"vocab {m.key}={m.value}"
    m = get["tokenizer.ggml.model"]
    m.value = _pick(rng, ["gpt2", "bert", "none", "no_vocab", "", "LLAMA"])
    return f"vocab model={m.value!r}"


def m_semantic(rng, spec) -> tuple:
    meta, tensors = copy.deepcopy(spec)
    descs = []
    for _ in range(int(_pick(rng, [1, 1, 1, 2, 3]))):
        op = _pick(rng, [_sem_meta, _sem_meta, _sem_tensor, _sem_tensor, _sem_vocab])
        descs.append(op(rng, meta, tensors))
    alignment = None
    if rng.random() < 0.05:
        alignment = int(_pick(rng, [1, 8, 64, 256]))
        descs.append(f"layout alignment {alignment}")
    return gguf_bytes(meta, tensors, alignment), "; ".join(descs)


def _short(v, n=40):
    s = repr(v)
    return s if len(s) <= n else s[:n - 3] + "..."


BYTE_OPS = [(m_flip, 0.30), (m_field, 0.33), (m_vtype_swap, 0.05), (m_truncate, 0.09),
            (m_bytes, 0.05), (m_shift, 0.04)]
SEMANTIC_SHARE = 0.24


def gguf_mutant(i: int, base: bytes, lay: GGUFLayout, spec) -> tuple[bytes, str]:
    """Mutant ``i`` of the seed GGUF file: (bytes, description)."""
    rng = np.random.default_rng([SEED, 1, i])
    data, descs = base, []
    if rng.random() < SEMANTIC_SHARE:
        for _ in range(5):
            try:
                data, d = m_semantic(rng, spec)
                descs.append(d)
                break
            except Exception:  # noqa: BLE001, S112 -- the writer refused it; try another
                continue
        if rng.random() < 0.7:
            return data, " | ".join(descs)
        lay = GGUFLayout(data)
    ops, w = zip(*BYTE_OPS)
    p = np.array(w) / sum(w)
    for _ in range(int(_pick(rng, [1, 1, 1, 1, 2, 3]))):
        op = ops[int(rng.choice(len(ops), p=p))]
        buf = bytearray(data)
        r = op(rng, buf, lay)
        if isinstance(r, tuple):
            data, d = r
            descs.append(d)
            break  # the layout no longer matches
        data = bytes(buf)
        descs.append(r)
    return data, " | ".join(descs)


# ----------------------------------------------------------------- Hugging Face mutations

HF_KEYS = ["vocab_size", "hidden_size", "width", "num_attention_heads", "num_heads",
           "num_hidden_layers", "num_layers", "head_dim", "intermediate_size",
           "mlp_expanded_width", "lru_width", "attention_window_size", "conv1d_width",
           "block_types", "_block_types", "num_key_value_heads", "logits_soft_cap",
           "embeddings_scale_by_sqrt_dim", "rms_norm_eps", "rope_theta",
           "partial_rotary_factor", "rope_parameters", "bos_token_id", "eos_token_id",
           "pad_token_id", "model_type", "architectures", "torch_dtype", "dtype",
           "final_w_init_variance_scale", "sliding_window", "layer_types"]


def random_json_value(rng, orig=None):
    kind = _pick(rng, ["int", "int", "int", "float", "float", "null", "bool", "str", "list",
                       "dict", "orig"])
    if kind == "int":
        o = orig if isinstance(orig, int) and not isinstance(orig, bool) else None
        return edge_int(rng, o, signed=True)
    if kind == "float":
        if isinstance(orig, (int, float)) and not isinstance(orig, bool) and rng.random() < 0.3:
            return float(orig) + _pick(rng, [0.5, 1e-9, -0.5])
        return float(_pick(rng, FLOAT_EDGES))
    if kind == "null":
        return None
    if kind == "bool":
        return bool(rng.integers(2))
    if kind == "str":
        return _pick(rng, ["", "32", "abc", "recurrent", "attention", "recurrent_gemma",
                           "gemma3_text", "gemma", "gemma2", "gemma3", "bfloat16", "1e3"])
    if kind == "list":
        return _pick(rng, [[], [1], [None], ["recurrent"], ["attention"], ["a"], [1, 2, 3],
                           ["recurrent", "recurrent", "attention", "x"], [[1]], [{}],
                           ["recurrent"] * 5, [2, 1]])
    if kind == "dict":
        return _pick(rng, [{}, {"rope_theta": -1.0}, {"rope_type": "linear"},
                           {"partial_rotary_factor": 2.0}, {"a": 1},
                           {"rope_theta": "x"}, {"full_attention": {}}])
    return orig


def _edit_config(rng, cfg: dict) -> str:
    descs = []
    for _ in range(int(_pick(rng, [1, 1, 1, 2, 3]))):
        if cfg and rng.random() < 0.15:
            k = _pick(rng, sorted(cfg))
            del cfg[k]
            descs.append(f"del {k}")
            continue
        k = _pick(rng, sorted(cfg)) if cfg and rng.random() < 0.6 else _pick(rng, HF_KEYS)
        cfg[k] = random_json_value(rng, cfg.get(k))
        descs.append(f"{k}={_short(cfg[k])}")
    return "config " + ", ".join(descs)


def _whole_config(rng, cfg: dict) -> tuple[bytes, str]:
    text = json.dumps(cfg, indent=2)
    op = _pick(rng, ["not_object", "truncated", "empty", "nan", "deep", "latin1", "dupkey",
                     "bom", "huge_int"])
    if op == "not_object":
        return _pick(rng, [b"[]", b"1", b'"x"', b"null", b"[{}]"]), "config not an object"
    if op == "truncated":
        return text.encode()[:int(rng.integers(0, len(text)))], "config truncated"
    if op == "empty":
        return b"", "config empty"
    if op == "nan":
        k = _pick(rng, sorted(cfg))
        return text.replace(f'"{k}": ', f'"{k}": NaN, "_{k}": ', 1).encode(), f"config NaN {k}"
    if op == "deep":
        return (b'{"a": ' + b"[" * 100000 + b"]" * 100000 + b"}"), "config nested deeply"
    if op == "latin1":
        return text.replace('"model_type"', '"model_type\u00e9"').encode("latin-1"), "config latin1"
    if op == "dupkey":
        return ("{" + '"vocab_size": 3, ' + text[1:]).encode(), "config duplicate key"
    if op == "bom":
        return b"\xef\xbb\xbf" + text.encode(), "config with BOM"
    k = _pick(rng, ["vocab_size", "num_hidden_layers", "hidden_size", "attention_window_size"])
    cfg2 = dict(cfg)
    cfg2[k] = 0
    digits = int(_pick(rng, [19, 30, 400, 5000]))  # 5000: past Python's int-parsing limit
    text = json.dumps(cfg2).replace(f'"{k}": 0', f'"{k}": 1' + "0" * digits, 1)
    return text.encode(), f"config {k}=10**{digits}"


def _split_st(data: bytes):
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n])
    return header, data[8 + n:]


def _join_st(header: dict, body: bytes, raw_header: bytes | None = None) -> bytes:
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + body


def _st_header_edit(rng, data: bytes) -> tuple[bytes, str]:
    header, body = _split_st(data)
    names = [k for k in header if k != "__metadata__"]
    name = _pick(rng, names)
    e = header[name]
    op = _pick(rng, ["dtype", "shape", "shape", "offsets", "offsets", "delete", "rename",
                     "extra", "meta", "entry_type", "prefix"])
    if op == "dtype":
        e["dtype"] = _pick(rng, ["F32", "F16", "BF16", "F64", "I64", "I32", "I8", "U8", "BOOL",
                                 "F8_E4M3", "Q4", "", 1, None, ["F32"]])
        d = f"dtype={e['dtype']!r}"
    elif op == "shape":
        s = list(e["shape"])
        sub = _pick(rng, ["edge", "append", "drop", "empty", "neg", "float", "str", "swap"])
        if sub == "edge" and s:
            s[int(rng.integers(len(s)))] = edge_int(rng, s[0], signed=True)
        elif sub == "append":
            s.append(int(_pick(rng, [1, 2, 0])))
        elif sub == "drop" and s:
            s.pop()
        elif sub == "empty":
            s = []
        elif sub == "neg" and s:
            s[0] = -s[0]
        elif sub == "float" and s:
            s[0] = float(s[0]) + _pick(rng, [0.0, 0.5])
        elif sub == "str" and s:
            s[0] = str(s[0])
        elif sub == "swap" and len(s) >= 2:
            s[0], s[1] = s[1], s[0]
        e["shape"] = s if rng.random() < 0.95 else _pick(rng, [None, "x", 3, {}])
        d = f"shape={_short(e['shape'])}"
    elif op == "offsets":
        a, b = e["data_offsets"]
        sub = _pick(rng, ["a", "b", "swap", "same", "len3", "neg", "float", "body"])
        if sub == "a":
            a = edge_int(rng, a, len(body), signed=True)
        elif sub == "b":
            b = edge_int(rng, b, len(body), signed=True)
        elif sub == "swap":
            a, b = b, a
        elif sub == "same":
            b = a
        elif sub == "neg":
            a = -a - 1
        elif sub == "float":
            a = float(a) + 0.5
        elif sub == "body":
            size = b - a
            b = len(body) + int(rng.integers(-4, 5))
            a = b - size + int(rng.integers(-4, 5))
        e["data_offsets"] = [a, b] if sub != "len3" else [a, b, b]
        d = f"data_offsets={_short(e['data_offsets'])}"
    elif op == "delete":
        del header[name]
        d = "deleted"
    elif op == "rename":
        header[_pick(rng, [name + "x", name.replace("layers.0", "layers.3"), "", "__metadata__",
                           name.replace(".weight", ".bias")])] = header.pop(name)
        d = "renamed"
    elif op == "extra":
        header[_pick(rng, ["lm_head.weight", "model.layers.9.x", "extra"])] = dict(e)
        d = "extra (aliasing) entry"
    elif op == "meta":
        header["__metadata__"] = _pick(rng, [None, 1, [], {"format": 1}, {"format": "np"}])
        d = f"__metadata__={header['__metadata__']!r}"
    elif op == "entry_type":
        header[name] = _pick(rng, [None, [], "F32", 1, {}])
        d = f"entry={header[name]!r}"
    else:
        raw = json.dumps(header).encode()
        n = edge_int(rng, len(raw), len(data))
        return struct.pack("<Q", n & ((1 << 64) - 1)) + raw + body, f"st prefix {len(raw)}->{n}"
    return _join_st(header, body), f"st {name}: {d}"


def _st_bytes(rng, data: bytes) -> tuple[bytes, str]:
    (n,) = struct.unpack_from("<Q", data, 0)
    buf = bytearray(data)
    r = rng.random()
    if r < 0.12:
        region = (0, 8)
    elif r < 0.75:
        region = (8, 8 + n)
    else:
        region = (8 + n, len(data))
    descs = []
    for _ in range(int(_pick(rng, [1, 1, 2, 4]))):
        pos = int(rng.integers(*region))
        bit = int(rng.integers(8))
        buf[pos] ^= 1 << bit
        descs.append(f"{pos}.{bit}")
    return bytes(buf), "st flip " + ",".join(descs)


def _st_truncate(rng, data: bytes) -> tuple[bytes, str]:
    (n,) = struct.unpack_from("<Q", data, 0)
    r = rng.random()
    cut = int(rng.integers(0, 8 + n + 16)) if r < 0.6 else len(data) - int(rng.integers(1, 64))
    return data[:cut], f"st truncate {len(data)}->{cut}"


def hf_mutant(i: int, cfg: dict, st: bytes, folder: str) -> str:
    """Writes mutant ``i`` of the seed folder into ``folder``; returns its description."""
    rng = np.random.default_rng([SEED, 2, i])
    os.makedirs(folder)
    cfg = copy.deepcopy(cfg)
    cfg_bytes = None
    r = rng.random()
    descs = []
    if r < 0.40:
        descs.append(_edit_config(rng, cfg))
    elif r < 0.46:
        cfg_bytes, d = _whole_config(rng, cfg)
        descs.append(d)
    elif r < 0.70:
        st, d = _st_header_edit(rng, st)
        descs.append(d)
    elif r < 0.86:
        st, d = _st_bytes(rng, st)
        descs.append(d)
    elif r < 0.93:
        st, d = _st_truncate(rng, st)
        descs.append(d)
    if rng.random() < 0.1 and r < 0.86:  # a second, independent change
        descs.append(_edit_config(rng, cfg))
    with open(os.path.join(folder, "config.json"), "wb") as f:
        f.write(cfg_bytes if cfg_bytes is not None else json.dumps(cfg).encode())
    weights = os.path.join(folder, "model.safetensors")
    with open(weights, "wb") as f:
        f.write(st)
    if r >= 0.93:
        op = _pick(rng, ["no_config", "no_weights", "index", "index_bad", "tokenizer",
                         "config_dir", "two_files"])
        if op == "no_config":
            os.unlink(os.path.join(folder, "config.json"))
        elif op == "no_weights":
            os.unlink(weights)
        elif op in ("index", "index_bad"):
            shard = "model-00001-of-00001.safetensors"
            os.rename(weights, os.path.join(folder, shard))
            header, _ = _split_st(st)
            wm = {k: shard for k in header if k != "__metadata__"}
            if op == "index_bad":
                sub = _pick(rng, ["missing", "extra", "abs", "dotdot", "nonstr", "notdict"])
                k0 = min(wm)
                if sub == "missing":
                    del wm[k0]
                elif sub == "extra":
                    wm["model.ghost"] = shard
                elif sub == "abs":
                    wm[k0] = "/etc/passwd"
                elif sub == "dotdot":
                    wm[k0] = "../" + shard
                elif sub == "nonstr":
                    wm[k0] = 7
                else:
                    wm = [shard]
                op += "/" + sub
            with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
                json.dump({"metadata": {}, "weight_map": wm}, f)
        elif op == "tokenizer":
            with open(os.path.join(folder, "tokenizer.model"), "wb") as f:
                f.write(rng.integers(0, 256, int(_pick(rng, [0, 1, 64, 4096])),
                                     dtype=np.uint8).tobytes())
        elif op == "config_dir":
            os.unlink(os.path.join(folder, "config.json"))
            os.mkdir(os.path.join(folder, "config.json"))
        else:
            shutil.copyfile(weights, os.path.join(folder, "extra.safetensors"))
            os.unlink(weights)
        descs.append(f"folder {op}")
    return " | ".join(descs) if descs else "unchanged"


# ----------------------------------------------------------------------------- one case


class CaseTimeout(BaseException):
    """Raised by the per-case alarm (a BaseException so that library code does not eat it)."""


def _on_alarm(signum, frame):
    raise CaseTimeout()


def _where(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in tb if "gemma_native" in f.filename] or list(tb)
    if not ours:
        return "?"
    f = ours[-1]
    return f"{os.path.basename(f.filename)}:{f.lineno} {f.name}"


def run_case(path: str) -> dict:
    """Loads ``path`` and, on success, runs one forward pass.  The outcome as a dict."""
    signal.setitimer(signal.ITIMER_REAL, CASE_TIMEOUT)
    model = None
    try:
        model = gn.load(path)
        vocab = int(model.config.vocab_size)
        ids = [1, 2, 3] if vocab >= 4 else [k % vocab for k in (1, 2, 3)]
        out = model.logits(ids)
        if not isinstance(out, np.ndarray) or out.shape != (3, vocab):
            return {"res": "bug", "cls": "BadOutput",
                    "msg": f"logits gave {type(out).__name__} {getattr(out, 'shape', None)}",
                    "where": "logits"}
        state_bytes = model.new_state().nbytes
        if state_bytes > STATE_FINDING:
            return {"res": "bug", "cls": "AbsurdMemory", "where": "new_state",
                    "msg": f"a fresh state of this tiny model takes {state_bytes >> 20} MiB"}
        return {"res": "ok", "cls": "", "msg": "", "where": ""}
    except CaseTimeout:
        return {"res": "bug", "cls": "Hang", "msg": f"no answer within {CASE_TIMEOUT} s",
                "where": ""}
    except gn.GemmaNativeError as exc:
        return {"res": "err", "cls": type(exc).__name__, "msg": str(exc)[:300], "where": ""}
    except BaseException as exc:  # noqa: BLE001 -- this is what the fuzzer looks for
        return {"res": "bug", "cls": type(exc).__name__, "msg": str(exc)[:300],
                "where": _where(exc), "tb": traceback.format_exc()[-2000:]}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        del model


# ------------------------------------------------------------------------------- worker


def _under_asan() -> bool:
    try:
        with open("/proc/self/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


def _vm_size() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def worker_main(argv) -> int:
    """``python test_fuzz_load.py worker KIND BASE SCRATCH FAILDIR START STOP STEP``."""
    kind, base, scratch, faildir = argv[:4]
    start, stop, step = (int(x) for x in argv[4:7])
    gn.set_num_threads(1)
    signal.signal(signal.SIGALRM, _on_alarm)
    if kind == "gguf":
        with open(base, "rb") as f:
            base_bytes = f.read()
        lay = GGUFLayout(base_bytes)
        spec = gguf_spec()
    else:
        with open(os.path.join(base, "config.json")) as f:
            cfg = json.load(f)
        with open(os.path.join(base, "model.safetensors"), "rb") as f:
            st = f.read()
    # warm up (imports, thread pool) before measuring the baseline
    run_case(base)
    rss0 = _limit_memory()
    out = sys.stdout
    for i in range(start, stop, step):
        try:
            if kind == "gguf":
                data, desc = gguf_mutant(i, base_bytes, lay, spec)
                path = os.path.join(scratch, f"m{i}.gguf")
                with open(path, "wb") as f:
                    f.write(data)
            else:
                path = os.path.join(scratch, f"m{i}")
                shutil.rmtree(path, ignore_errors=True)  # left behind by a crashed worker
                desc = hf_mutant(i, cfg, st, path)
        except Exception:  # noqa: BLE001 -- a bug of this harness, reported as such
            out.write(json.dumps({"i": i, "phase": "gen-failed",
                                  "tb": traceback.format_exc()[-1500:]}) + "\n")
            out.flush()
            continue
        out.write(json.dumps({"i": i, "phase": "start", "op": desc}) + "\n")
        out.flush()
        sys.stderr.write(f"#case {i}\n")  # attributes sanitizer messages to their case
        sys.stderr.flush()
        r = run_case(path)
        r.update(i=i, phase="done", op=desc)
        grew = _peak_rss() - rss0
        if r["res"] != "bug" and grew > RSS_FINDING:
            r.update(res="bug", cls="AbsurdMemory", where="",
                     msg=f"peak RSS grew by {grew >> 20} MiB ({r['cls'] or 'loaded'})")
        if r["res"] == "bug":
            keep = os.path.join(faildir, os.path.basename(path))
            if os.path.isdir(path):
                shutil.copytree(path, keep, dirs_exist_ok=True)
            else:
                shutil.copyfile(path, keep)
            r["file"] = keep
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
        out.write(json.dumps(r) + "\n")
        out.flush()
        if grew > RSS_FINDING or r.get("cls") in ("Hang", "MemoryError"):
            # A fresh worker for the next case: the peak RSS never goes down, and a case
            # interrupted by the alarm may have left the process in a bad state.
            return 3
    return 0


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _limit_memory() -> int:
    """Caps the address space (not under ASan); returns the current peak RSS."""
    if not _under_asan():
        limit = _vm_size() + MEM_HEADROOM
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return _peak_rss()


def one_main(argv) -> int:
    """``python test_fuzz_load.py one PATH``: one case, its outcome as JSON on stdout."""
    gn.set_num_threads(1)
    signal.signal(signal.SIGALRM, _on_alarm)
    rss0 = _limit_memory()
    r = run_case(argv[0])
    grew = _peak_rss() - rss0
    if r["res"] != "bug" and grew > RSS_FINDING:
        r.update(res="bug", cls="AbsurdMemory", where="",
                 msg=f"peak RSS grew by {grew >> 20} MiB ({r['cls'] or 'loaded'})")
    sys.stdout.write(json.dumps(r) + "\n")
    return 0


def run_isolated(path) -> dict:
    """Outcome of :func:`run_case` on ``path`` in a fresh, memory-capped subprocess (a crash
    or a hang there is an outcome, not the end of the test session)."""
    try:
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "one", os.fspath(path)],
                           check=False, capture_output=True, env=_worker_env(),
                           timeout=CASE_TIMEOUT + PARENT_GRACE + 30)
    except subprocess.TimeoutExpired:
        return {"res": "bug", "cls": "Hang", "msg": "killed: no answer in time", "where": ""}
    if p.returncode != 0 or not p.stdout.strip():
        return {"res": "bug", "cls": "Crash", "where": "",
                "msg": f"status {p.returncode}: {p.stderr.decode('utf-8', 'replace')[-3000:]}"}
    return json.loads(p.stdout.decode().strip().splitlines()[-1])


# ------------------------------------------------------------------------------- parent


@dataclass
class Campaign:
    kind: str
    total: int
    results: dict  # case -> result dict
    seconds: float


def _worker_env() -> dict:
    env = dict(os.environ)
    if _under_asan():
        # ASan reserves terabytes of address space, so RLIMIT_AS cannot be used: let ASan's
        # allocator refuse big requests (C++ new then throws bad_alloc, malloc returns NULL).
        extra = "allocator_may_return_null=1:max_allocation_size_mb=2048:hard_rss_limit_mb=4096"
        env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":" + extra).lstrip(":")
    env["PYTHONFAULTHANDLER"] = "1"
    return env


def run_campaign(kind: str, base: str, workdir, total: int, workers: int = WORKERS) -> Campaign:
    """Runs cases 0..total-1 in ``workers`` subprocesses (case i in worker i % workers),
    restarting a worker after a crash, a hang or an absurd-memory case."""
    workdir = os.fspath(workdir)
    faildir = os.path.join(workdir, "failures")
    os.makedirs(faildir, exist_ok=True)
    results: dict = {}
    t0 = time.monotonic()
    sel = selectors.DefaultSelector()
    env = _worker_env()

    def spawn(w, start):
        scratch = os.path.join(workdir, f"scratch{w}")
        os.makedirs(scratch, exist_ok=True)
        errpath = os.path.join(workdir, f"worker{w}.{start}.stderr")
        err = open(errpath, "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "worker", kind, base, scratch, faildir,
             str(start), str(total), str(workers)],
            stdout=subprocess.PIPE, stderr=err, env=env, cwd=workdir)
        err.close()
        state = {"w": w, "proc": proc, "buf": b"", "current": None, "op": None, "last": None,
                 "deadline": time.monotonic() + 60.0, "stderr": errpath}
        sel.register(proc.stdout, selectors.EVENT_READ, state)
        return state

    def finish(state, crashed_reason=None):
        """Reaps a worker; returns the case to restart from (None: nothing more to do)."""
        sel.unregister(state["proc"].stdout)
        proc = state["proc"]
        if crashed_reason is not None:
            proc.kill()
        rc = proc.wait()
        proc.stdout.close()
        cur = state["current"]
        if cur is not None and cur not in results:
            with open(state["stderr"], "rb") as f:
                tail = f.read()[-6000:].decode("utf-8", "replace")
            how = crashed_reason or (f"worker died with signal {-rc}" if rc < 0 else
                                     f"worker exited with status {rc}")
            results[cur] = {"i": cur, "res": "bug", "op": state["op"],
                            "cls": "Hang" if crashed_reason else "Crash", "msg": how,
                            "where": "", "tb": tail}
        if rc == 0 and cur is None:
            return None  # ran to the end
        if state["last"] is None:
            with open(state["stderr"], "rb") as f:
                tail = f.read()[-3000:].decode("utf-8", "replace")
            raise AssertionError(f"fuzz worker failed before its first case (status {rc}):\n"
                                 f"{tail}")
        nxt = state["last"] + workers
        return nxt if nxt < total else None

    live = [spawn(w, w) for w in range(min(workers, total))]
    while live:
        for key, _ in sel.select(timeout=0.5):
            state = key.data
            chunk = os.read(state["proc"].stdout.fileno(), 1 << 16)
            if not chunk:  # the worker ended
                live.remove(state)
                nxt = finish(state)
                if nxt is not None:
                    live.append(spawn(state["w"], nxt))
                continue
            state["buf"] += chunk
            while b"\n" in state["buf"]:
                line, state["buf"] = state["buf"].split(b"\n", 1)
                msg = json.loads(line)
                state["last"] = msg["i"]
                if msg["phase"] == "start":
                    state["current"], state["op"] = msg["i"], msg["op"]
                    state["deadline"] = time.monotonic() + CASE_TIMEOUT + PARENT_GRACE
                elif msg["phase"] == "done":
                    results[msg["i"]] = msg
                    state["current"] = None
                    state["deadline"] = time.monotonic() + 60.0
                else:
                    results[msg["i"]] = {"i": msg["i"], "res": "harness-error",
                                         "tb": msg.get("tb", "")}
        now = time.monotonic()
        for state in list(live):
            if now > state["deadline"]:
                live.remove(state)
                nxt = finish(state, "killed by the parent: no answer in time")
                if nxt is not None:
                    live.append(spawn(state["w"], nxt))
    sel.close()
    _sanitizer_messages(workdir, results)
    return Campaign(kind, total, results, time.monotonic() - t0)


SANITIZER_MARKS = ("runtime error:", "ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "WARNING: AddressSanitizer")


def _sanitizer_messages(workdir: str, results: dict) -> None:
    """Non-fatal sanitizer reports (UBSan's "runtime error: ...") only reach the workers'
    stderr; each one becomes a finding of the case that printed it."""
    for name in sorted(os.listdir(workdir)):
        if not name.endswith(".stderr"):
            continue
        case = None
        with open(os.path.join(workdir, name), "rb") as f:
            for raw in f:
                line = raw.decode("utf-8", "replace").rstrip()
                if line.startswith("#case "):
                    case = int(line[6:])
                elif case is not None and any(m in line for m in SANITIZER_MARKS):
                    r = results.get(case, {"i": case})
                    if r.get("res") == "bug" and r.get("cls") == "Crash":
                        continue  # the crash already carries the report
                    outcome = r.get("cls") or r.get("res")
                    results[case] = dict(r, res="bug", cls="SanitizerReport",
                                         where=line.split(": runtime error")[0][-80:],
                                         msg=f"{line[:300]} (outcome: {outcome})")


def summarize(c: Campaign) -> tuple[str, list]:
    """(one-line statistics, list of findings grouped by (type, location))."""
    counts: dict = {}
    groups: dict = {}
    for r in c.results.values():
        label = r["res"] if r["res"] != "err" else r["cls"]
        counts[label] = counts.get(label, 0) + 1
        if r["res"] == "bug":
            groups.setdefault((r["cls"], r.get("where", "")), []).append(r)
        elif r["res"] == "harness-error":
            groups.setdefault(("HarnessError", r["tb"].strip().splitlines()[-1]), []).append(r)
    missing = c.total - len(c.results)
    stats = (f"{c.kind}: {len(c.results)}/{c.total} cases in {c.seconds:.1f} s; "
             + ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
             + (f"; {missing} never ran" if missing else ""))
    findings = []
    for (cls, where), rs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        rs = sorted(rs, key=lambda r: r["i"])
        ex = rs[0]
        findings.append(
            f"{cls} at {where or '-'}: {len(rs)} case(s), e.g. case {ex['i']} [{ex.get('op')}]"
            f" -> {ex.get('msg', '')[:200]}"
            + (f"\n    file: {ex['file']}" if ex.get("file") else "")
            + (f"\n    also cases {[r['i'] for r in rs[1:6]]}" if len(rs) > 1 else "")
            + (f"\n    {ex['tb'].strip().splitlines()[-1][:300]}" if ex.get("tb") else ""))
    return stats, findings


def _report(c: Campaign):
    stats, findings = summarize(c)
    print(stats)
    missing = c.total - len(c.results)
    if findings or missing:
        pytest.fail(f"{len(findings)} distinct finding(s); {stats}\n" + "\n".join(findings)
                    + ("\n(some cases never ran)" if missing else ""), pytrace=False)


# -------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz_seeds")
    meta, tensors = gguf_spec()
    gpath = root / "tiny-gemma3.gguf"
    write_gguf(gpath, meta, tensors)
    hpath = write_hf_seed(root / "tiny-recurrentgemma")
    return {"gguf": str(gpath), "hf": str(hpath)}


# ----------------------------------------------------------------------------------- tests


def test_seed_gguf_loads(seeds):
    model = gn.load(seeds["gguf"])
    assert model.config.architecture == "gemma3"
    assert model.config.vocab_size == V and model.config.num_layers == NL
    assert model.config.layer_types == ("sliding", "global")
    assert model.config.sliding_window == 8 and model.config.head_dim == HD
    out = model.logits([1, 2, 3])
    assert out.shape == (3, V) and np.isfinite(out).all()
    assert set(model.file_types) == {"F32", "F16", "Q8_0"}
    assert model.tokenizer is not None and model.tokenizer.vocab_size == len(TOKENS)
    assert model.tokenizer.encode("abc abc") == [TOKENS.index("abc"), TOKENS.index("\u2581abc")]


def test_seed_gguf_layout_is_understood(seeds):
    with open(seeds["gguf"], "rb") as f:
        data = f.read()
    lay = GGUFLayout(data)
    kinds = {f.kind for f in lay.fields}
    assert {"count", "len", "vtype", "etype", "int", "float", "bool", "ndims", "ne", "ggml",
            "offset"} <= kinds
    assert lay.regions["kv_cfg"] and lay.regions["kv_tok"] and lay.data_offset < lay.size


def test_seed_hf_loads(seeds):
    model = gn.load(seeds["hf"])
    assert model.config.architecture == "recurrent_gemma"
    out = model.logits([1, 2, 3])
    assert out.shape == (3, model.config.vocab_size) and np.isfinite(out).all()


def test_mutants_are_deterministic(seeds, tmp_path):
    with open(seeds["gguf"], "rb") as f:
        base = f.read()
    lay, spec = GGUFLayout(base), gguf_spec()
    for i in (0, 7, 123):
        assert gguf_mutant(i, base, lay, spec) == gguf_mutant(i, base, lay, spec)
    with open(os.path.join(seeds["hf"], "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(seeds["hf"], "model.safetensors"), "rb") as f:
        st = f.read()
    for i in (0, 5):
        a = hf_mutant(i, cfg, st, str(tmp_path / f"a{i}"))
        b = hf_mutant(i, cfg, st, str(tmp_path / f"b{i}"))
        assert a == b


def test_fuzz_gguf(seeds, tmp_path):
    _report(run_campaign("gguf", seeds["gguf"], tmp_path, GGUF_CASES))


def test_fuzz_hf_folder(seeds, tmp_path):
    _report(run_campaign("hf", seeds["hf"], tmp_path, HF_CASES))


# ---------------------------------------------------------------------------------- repros
#
# Minimal reproductions of what the campaigns above found.  Each builds the seed with one
# thing changed and requires the contract: load + logits succeed, or a GemmaNativeError.
# Cases that can hang or allocate gigabytes run in a memory-capped subprocess
# (run_isolated); the others run in-process so that the traceback shows the faulty line.


def _gguf_variant(tmp_path, name, changes) -> str:
    """The seed GGUF with metadata ``changes`` (key -> (value, vtype[, sub])) applied."""
    meta, tensors = gguf_spec()
    by_key = {m.key: m for m in meta}
    for key, (value, vtype, *sub) in changes.items():
        if key not in by_key:
            by_key[key] = MetaEntry(key, None, None)
            meta.append(by_key[key])
        m = by_key[key]
        m.value, m.vtype, m.sub = value, vtype, (sub[0] if sub else None)
    path = tmp_path / f"{name}.gguf"
    write_gguf(path, meta, tensors)
    return str(path)


_RAW = "__raw_json__"


def _hf_variant(tmp_path, name, edit, raw: str | None = None) -> str:
    """The seed Hugging Face folder with ``edit(config_dict)`` applied; a value set to
    ``_RAW`` is written as the JSON text ``raw`` (NaN, Infinity, a 400-digit integer ...)."""
    folder = tmp_path / name
    write_hf_seed(folder)
    cfg_path = folder / "config.json"
    cfg = json.loads(cfg_path.read_text())
    edit(cfg)
    text = json.dumps(cfg)
    if raw is not None:
        text = text.replace(json.dumps(_RAW), raw)
    cfg_path.write_text(text)
    return str(folder)


def load_and_forward(path):
    """gn.load + one forward pass; a GemmaNativeError is a fine outcome (returned)."""
    try:
        model = gn.load(path)
        vocab = model.config.vocab_size
        model.logits([1, 2, 3] if vocab >= 4 else [0])
        return model
    except gn.GemmaNativeError as exc:
        return exc


def assert_clean_isolated(path):
    r = run_isolated(path)
    assert r["res"] in ("ok", "err"), (
        f"{r['cls']} at {r.get('where') or '-'}: {r.get('msg', '')}\n{r.get('tb', '')}")


def test_repro_gguf_architecture_not_a_string(tmp_path):
    """general.architecture holding an array: TypeError (unhashable numpy array) in
    gemma_gguf.parse_config (``arch not in ARCHS``), case 3474 of a 20000-case run."""
    path = _gguf_variant(tmp_path, "arch", {
        "general.architecture": ([1e6], VT.ARRAY, VT.FLOAT32)})
    load_and_forward(path)


def test_repro_gguf_rope_scaling_type_not_a_string(tmp_path):
    """{arch}.rope.scaling.type holding an array: ValueError ("truth value of an array ... is
    ambiguous") in gemma_gguf.parse_config, case 3125 of a 20000-case run."""
    path = _gguf_variant(tmp_path, "scaling", {
        f"{ARCH}.rope.scaling.type": ([1.0, 2.0], VT.ARRAY, VT.FLOAT32)})
    load_and_forward(path)


def test_gguf_linear_rope_scaling(tmp_path):
    """Gemma 3 4B+ GGUFs carry rope.scaling.type "linear" + factor (global layers only)."""
    if ARCH != "gemma3":
        pytest.skip("the seed is not a Gemma 3 file")
    plain = gn.load(_gguf_variant(tmp_path, "plain", {}))
    scaled = gn.load(_gguf_variant(tmp_path, "scaled", {
        f"{ARCH}.rope.scaling.type": ("linear", VT.STRING),
        f"{ARCH}.rope.scaling.factor": (8.0, VT.FLOAT32)}))
    assert plain.config.rope_global_factor == 1.0 and scaled.config.rope_global_factor == 8.0
    ids = list(range(3, 40))
    assert not np.allclose(plain.logits(ids), scaled.logits(ids))
    for bad in ({f"{ARCH}.rope.scaling.type": ("linear", VT.STRING),
                 f"{ARCH}.rope.scaling.factor": (-2.0, VT.FLOAT32)},
                {f"{ARCH}.rope.scaling.type": ("yarn", VT.STRING)}):
        with pytest.raises((gn.ModelFormatError, gn.UnsupportedModelError)):
            gn.load(_gguf_variant(tmp_path, "bad", bad))


@pytest.mark.parametrize("count", [(1 << 32) - 1])
def test_repro_gguf_huge_block_count(tmp_path, count):
    """block_count of 2**31 .. 2**32-1 (a one-bit flip of the seed's 2 can do it): parse_config
    builds the per-layer type tuple for every layer before any tensor is looked at, which
    hangs for minutes and takes gigabytes (cases 876, 901 of test_fuzz_gguf)."""
    assert_clean_isolated(_gguf_variant(tmp_path, "blocks", {
        f"{ARCH}.block_count": (count, VT.UINT32)}))


@pytest.mark.parametrize("window", [(1 << 22) + 8, (1 << 31) - 1, (1 << 32) - 2])
def test_repro_gguf_huge_sliding_window(tmp_path, window):
    """attention.sliding_window far above context_length (64): the native state allocates a
    ring of ``window`` slots per sliding layer (GemmaModel::new_state), 1 GiB for 2**22 + 8
    (a one-bit flip of the seed's 8, case 653), MemoryError from the first forward pass for
    2**31 - 1 and 2**32 - 2 (cases 7356, 4194 of a 20000-case run).  A window >= the context
    is just a global layer."""
    assert_clean_isolated(_gguf_variant(tmp_path, "window", {
        f"{ARCH}.attention.sliding_window": (window, VT.UINT32)}))


def test_repro_gguf_sliding_window_2_63_minus_1(tmp_path):
    """window * kv_heads * head_dim overflows int64 in GemmaModel::new_state: std::length_error
    surfaces as a plain ValueError ("cannot create std::vector larger than max_size()")."""
    path = _gguf_variant(tmp_path, "window63", {
        f"{ARCH}.attention.sliding_window": ((1 << 63) - 1, VT.UINT64)})
    load_and_forward(path)


def test_repro_gguf_sliding_window_overflow_drops_the_cache(tmp_path):
    """sliding_window 2**62: window * 32 wraps to 0 in new_state (signed overflow, UB), the
    ring is empty, attention() then sees no cache and silently forgets every earlier token of
    a sliding layer: continuing a sequence gives other logits than the one-call forward.
    Either the file is refused cleanly or the results must match."""
    path = _gguf_variant(tmp_path, "window62", {
        f"{ARCH}.attention.sliding_window": (1 << 62, VT.UINT64)})
    model = load_and_forward(path)
    if isinstance(model, gn.GemmaNativeError):
        return
    ids = list(range(1, 21))
    full = model.logits(ids)
    st = model.new_state()
    model.forward(ids[:10], st)
    rest = model.forward(ids[10:], st, all_positions=True)
    np.testing.assert_allclose(rest, full[10:], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("key", ["hidden_size", "num_hidden_layers", "vocab_size"])
def test_repro_hf_integer_key_not_finite(tmp_path, key, text):
    """An integer config.json key holding NaN / Infinity (Python's json accepts both):
    ValueError / OverflowError from ``int(v)`` in griffin._get (cases 75, 220)."""
    load_and_forward(_hf_variant(tmp_path, "nonfinite", lambda c: c.__setitem__(key, _RAW),
                                 raw=text))


@pytest.mark.parametrize("key,value", [
    ("eos_token_id", None), ("eos_token_id", [None]), ("bos_token_id", "gemma"),
    ("pad_token_id", {"a": 1}), ("pad_token_id", math.inf), ("bos_token_id", [2])])
def test_repro_hf_special_token_id_of_wrong_type(tmp_path, key, value):
    """bos/eos/pad_token_id are converted with a bare ``int(...)`` in griffin.parse_config:
    TypeError / ValueError / OverflowError (cases 11, 794, 1113, 1870)."""
    load_and_forward(_hf_variant(tmp_path, "ids", lambda c: c.__setitem__(key, value)))


@pytest.mark.parametrize("layers", ["4611686018427387904", "1" + "0" * 400])
def test_repro_hf_huge_num_hidden_layers(tmp_path, layers):
    """num_hidden_layers of 2**62 or 10**400: the block pattern list is built for every layer
    before the tensors are checked, MemoryError / OverflowError ("cannot fit 'int' into an
    index-sized integer") at griffin.parse_config (cases 291, 319); 10**9 would take ~8 GB."""
    assert_clean_isolated(_hf_variant(
        tmp_path, "layers", lambda c: c.__setitem__("num_hidden_layers", _RAW), raw=layers))


@pytest.mark.parametrize("value", [{"a": 1}, ["recurrent_gemma"]])
def test_repro_hf_model_type_not_a_string(tmp_path, value):
    """model_type holding an object or a list: TypeError (unhashable) at
    ``mt in gemma.MODEL_TYPES`` in loader.load (case 1722)."""
    load_and_forward(_hf_variant(tmp_path, "mt", lambda c: c.__setitem__("model_type", value)))


def test_repro_hf_architectures_not_a_list(tmp_path):
    """No model_type and ``architectures`` an integer: TypeError ("argument of type 'int' is
    not iterable") in griffin.parse_config (case 2244 of a 12000-case run)."""
    def edit(c):
        c.pop("model_type", None)
        c["architectures"] = 3
    load_and_forward(_hf_variant(tmp_path, "archs", edit))


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "worker":
    sys.exit(worker_main(sys.argv[2:]))
if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "one":
    sys.exit(one_main(sys.argv[2:]))
