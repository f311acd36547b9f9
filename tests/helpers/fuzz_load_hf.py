"""Test helper: the Hugging Face half of the loader fuzzer
(tests/loading/test_fuzz_load_safetensors.py).

The seed is a tiny valid RecurrentGemma Hugging Face folder (``config.json`` +
``model.safetensors``) written by ``tinyckpt.write_tiny_checkpoint`` (:func:`write_hf_seed`).

Mutations (:func:`hf_mutant`; case ``i`` is always the same folder): ``config.json`` keys set
to random types and values or deleted, broken JSON, safetensors header entries (dtype, shape,
data_offsets) rewritten, the header length prefix changed, bit flips, truncations, and folder
level changes (missing files, a sharded index, a garbage ``tokenizer.model``).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import struct

import numpy as np

from tests.helpers import tinyckpt
from tests.helpers.fuzz_load_common import FLOAT_EDGES, SEED, _pick, _short, edge_int


def write_hf_seed(path) -> str:
    return tinyckpt.write_tiny_checkpoint(os.fspath(path), seed=SEED % 1000)


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
