"""Gemma 1 / 2 / 3 from GGUF files (llama.cpp's format; docs/model-math.md, 'GGUF tensors and
metadata'): metadata to GemmaConfig, GGUF tensor names to engine names.

What llama.cpp hard-codes rather than stores is reproduced here: the sliding-window pattern
(Gemma 2: every 2nd layer global, Gemma 3: every 6th, unless the file says otherwise), Gemma 3's
local RoPE base 10000, the query scale 1/sqrt(head_dim) (1/sqrt(width/heads) for the 27B models)
and the embedding scale sqrt(width) in exact fp32.  GGUF norm weights already hold 1 + w, so the
norms use them as they are (norm_offset 0).  Quantized weights are dequantized at load.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .._dtypes import DTYPE_CODES, QUANT_CODES, canonical_dtype, convert_weight, to_engine
from ..errors import ModelFormatError, UnsupportedModelError
from .gemma import GemmaConfig, check_config
from .griffin import check_layer_count

ARCHS = {"gemma": 1, "gemma2": 2, "gemma3": 3}

# GGML block types the native kernels multiply directly (csrc/include/gemma_native/quant.h)
# (the codes follow gemma_native::DType; other quantized types are dequantized at load)
NATIVE_QUANT = QUANT_CODES


def _meta(gf, key, kind, default=None):
    v = gf.metadata.get(key, default)
    if v is None:
        raise ModelFormatError(f"{gf.path}: GGUF metadata '{key}' is missing")
    if kind is int and (isinstance(v, bool) or not isinstance(v, (int, np.integer))):
        raise ModelFormatError(f"{gf.path}: GGUF metadata '{key}' must be an integer, got {v!r}")
    if kind is float and (isinstance(v, bool) or not isinstance(v, (int, float, np.floating,
                                                                        np.integer))
                          or not math.isfinite(float(v))):
        raise ModelFormatError(f"{gf.path}: GGUF metadata '{key}' must be a finite number, "
                               f"got {v!r}")
    if kind is int and abs(int(v)) > 1 << 40:
        raise ModelFormatError(f"{gf.path}: GGUF metadata '{key}' = {v} is implausibly large")
    return kind(v)


def parse_config(gf) -> GemmaConfig:
    arch = gf.metadata.get("general.architecture")
    if not isinstance(arch, str) or arch not in ARCHS:
        raise UnsupportedModelError(f"{gf.path}: GGUF architecture {arch!r} is not supported "
                                    f"(supported: {sorted(ARCHS)})")
    gen = ARCHS[arch]

    def m(key, kind=int, default=None):
        return _meta(gf, f"{arch}.{key}", kind, default)

    width, n, heads = m("embedding_length"), m("block_count"), m("attention.head_count")
    check_layer_count(n, where=gf.path)
    if heads <= 0 or width <= 0 or n <= 0:
        raise ModelFormatError(f"{gf.path}: embedding_length, block_count and head_count must "
                               f"be > 0")
    head_dim = m("attention.key_length", default=width // heads)
    if m("attention.value_length", default=head_dim) != head_dim:
        raise UnsupportedModelError(f"{gf.path}: key_length != value_length is not supported")
    if gen == 1:
        types = ("global",) * n
        window = 0
    else:
        pattern = m("attention.sliding_window_pattern", default=2 if gen == 2 else 6)
        if isinstance(pattern, int) and pattern <= 0:
            raise ModelFormatError(f"{gf.path}: sliding_window_pattern must be > 0")
        types = tuple("sliding" if (i + 1) % pattern else "global" for i in range(n))
        window = m("attention.sliding_window", default=4096 if gen == 2 else 512)
        window = min(window, m("context_length", default=8192))  # past the context: global
    scaling = gf.metadata.get(f"{arch}.rope.scaling.type", "none")
    factor = 1.0
    if isinstance(scaling, str) and scaling == "linear" and gen == 3:  # Gemma 3 4B+: the global layers only, as llama.cpp
        factor = m("rope.scaling.factor", float)
        if not (factor > 0 and math.isfinite(factor)):
            raise ModelFormatError(f"{gf.path}: rope.scaling.factor must be > 0, got {factor}")
    elif not isinstance(scaling, str) or scaling != "none":
        raise UnsupportedModelError(f"{gf.path}: RoPE scaling {scaling!r} is not supported")
    big = (gen == 2 and n == 46) or (gen == 3 and n == 62)  # the 27B models
    qpas = float(width // heads) if big else float(head_dim)
    glob = m("rope.freq_base", float, default=1_000_000.0 if gen == 3 else 10_000.0)
    c = GemmaConfig(
        architecture=arch, vocab_size=0, width=width, num_layers=n, num_heads=heads,
        num_kv_heads=m("attention.head_count_kv", default=heads), head_dim=head_dim,
        mlp_width=m("feed_forward_length"), layer_types=types, sliding_window=window,
        max_position_embeddings=m("context_length", default=8192),
        rope_theta=glob, rope_local_theta=10_000.0 if gen == 3 else glob,
        rope_global_factor=factor,
        query_pre_attn_scalar=qpas,
        attn_logit_softcapping=m("attn_logit_softcapping", float, default=0.0),
        final_logit_softcapping=m("final_logit_softcapping", float, default=0.0),
        post_norms=gen >= 2, qk_norm=gen == 3,
        rms_norm_eps=m("attention.layer_norm_rms_epsilon", float, default=1e-6),
        embed_scale=float(np.float32(math.sqrt(width))), norm_offset=0.0,
        bos_token_id=_meta(gf, "tokenizer.ggml.bos_token_id", int, 2),
        eos_token_id=_meta(gf, "tokenizer.ggml.eos_token_id", int, 1),
        pad_token_id=_meta(gf, "tokenizer.ggml.padding_token_id", int, 0),
    )
    return c


def _layer_names(c: GemmaConfig) -> list:
    D, F, H, KV, hd = c.width, c.mlp_width, c.num_heads, c.num_kv_heads, c.head_dim
    specs = [
        ("attn_norm", "attn_norm", (D,), False),
        ("attn_q", "attn.q", (H * hd, D), True),
        ("attn_k", "attn.k", (KV * hd, D), True),
        ("attn_v", "attn.v", (KV * hd, D), True),
        ("attn_output", "attn.o", (D, H * hd), True),
        ("ffn_gate", "mlp.gate", (F, D), True),
        ("ffn_up", "mlp.up", (F, D), True),
        ("ffn_down", "mlp.down", (D, F), True),
        ("ffn_norm", "mlp_norm", (D,), False),
    ]
    if c.post_norms:
        specs += [("post_attention_norm", "post_attn_norm", (D,), False),
                  ("post_ffw_norm", "post_mlp_norm", (D,), False)]
    if c.qk_norm:
        specs += [("attn_q_norm", "attn.q_norm", (hd,), False),
                  ("attn_k_norm", "attn.k_norm", (hd,), False)]
    return specs


def load_gguf_model(gf, dtype: str | None = None):
    """(GemmaConfig, engine weights) from a parsed GGUF file.

    dtype None: matrices in Q8_0/Q4_0/Q5_0/Q4_K/Q6_K stay in their blocks, memory-mapped from
    the file, and are multiplied natively (activations quantized per block as llama.cpp does);
    F32/F16/BF16 ones keep their dtype; other quantized types are dequantized to float32.
    dtype "float32"/"bfloat16"/"float16": every matrix is dequantized to it at load."""
    want = canonical_dtype(dtype) if dtype is not None else None
    c = parse_config(gf)
    emb = gf.tensors.get("token_embd.weight")
    if emb is None:
        raise ModelFormatError(f"{gf.path}: missing tensor 'token_embd.weight'")
    if len(emb.shape) != 2 or emb.shape[1] != c.width:
        raise ModelFormatError(f"{gf.path}: tensor 'token_embd.weight' has shape {emb.shape}, "
                               f"expected (vocab, {c.width})")
    c = dataclasses.replace(c, vocab_size=int(emb.shape[0]))
    check_config(c)
    if "output.weight" in gf.tensors:
        raise UnsupportedModelError(f"{gf.path}: an untied output projection ('output.weight') "
                                    f"is not supported; Gemma ties it to the embedding")
    out, used = {}, set()

    def take(name, eng, shape, is_matrix):
        t = gf.tensors.get(name)
        if t is None:
            raise ModelFormatError(f"{gf.path}: missing tensor '{name}'")
        used.add(name)
        if tuple(t.shape) != tuple(shape):
            raise ModelFormatError(f"{gf.path}: tensor '{name}' has shape {tuple(t.shape)}, "
                                   f"expected {tuple(shape)} from the metadata")
        if is_matrix and t.ggml_type in NATIVE_QUANT and (
                want is None or (want == "int8" and t.ggml_type == "Q8_0")):
            rows = t.shape[0]
            out[eng] = (np.asarray(t.raw).reshape(rows, -1), NATIVE_QUANT[t.ggml_type])
        elif t.ggml_type in ("F32", "F16", "BF16") and is_matrix:
            src = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[t.ggml_type]
            arr = t.dequantize(np.float32) if src != "bfloat16" else None
            if src == "bfloat16":
                arr = np.asarray(t.raw).view(np.uint16).reshape(t.shape)
            elif src == "float16":
                arr = np.asarray(t.raw).view(np.float16).reshape(t.shape)
            out[eng] = to_engine(arr, src, want or src)
        else:
            f = np.ascontiguousarray(t.dequantize(np.float32), dtype=np.float32)
            out[eng] = to_engine(f, "float32", (want or "float32") if is_matrix else "float32")

    take("token_embd.weight", "embed", (c.vocab_size, c.width), True)
    take("output_norm.weight", "final_norm", (c.width,), False)
    for i in range(c.num_layers):
        for g, eng, shape, mat in _layer_names(c):
            take(f"blk.{i}.{g}.weight", f"layers.{i}.{eng}", shape, mat)
    extra = sorted(set(gf.tensors) - used - {"rope_freqs.weight"})
    if extra:
        raise ModelFormatError(f"{gf.path}: unexpected tensor '{extra[0]}' for a "
                               f"{c.num_layers}-layer {c.architecture} model")
    return c, out
