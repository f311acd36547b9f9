"""Test helper: the GGUF half of the loader fuzzer (tests/loading/test_fuzz_load_gguf.py).

The seed is a tiny valid Gemma 3 GGUF file (the keys and tensor names of docs/model-math.md,
'GGUF tensors and metadata'; 2 layers, one sliding and one global; F32, F16 and Q8_0 tensors;
a tiny SentencePiece-style vocabulary) written with ``gguf.GGUFWriter`` from :func:`gguf_spec`.
:class:`GGUFLayout` is our own parse of a valid file: where every structural field and region
lies.

Mutations (:func:`gguf_mutant`; case ``i`` is always the same file): bit flips weighted toward
the header, the metadata and the tensor directory; length / count / offset / dimension / type
fields overwritten with boundary values; metadata value types swapped; truncations; byte runs
overwritten, inserted or deleted; and structure-aware rebuilds with ``GGUFWriter`` (metadata
values of random types and values, missing or extra keys and tensors, other storage types and
shapes, other architectures, a broken vocabulary).

Needs the ``gguf`` package (the test modules skip without it before importing this).
"""

from __future__ import annotations

import copy
import math
import os
import struct
import tempfile
from dataclasses import dataclass

import gguf
import numpy as np

from tests.helpers.fuzz_load_common import (
    FLOAT_EDGES,
    SEED,
    _pack_float,
    _pack_int,
    _pick,
    _short,
    edge_int,
)

QT = gguf.GGMLQuantizationType
VT = gguf.GGUFValueType

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
