"""Gemma 1 / 2 / 3 from GGUF files (llama.cpp's format; docs/model-math.md, 'GGUF tensors and
metadata'): metadata to GemmaConfig, and the table of GGUF tensor names to engine names
(:data:`GGUF_TENSORS`).

What llama.cpp hard-codes rather than stores is reproduced here: the sliding-window pattern
(Gemma 2: every 2nd layer global, Gemma 3: every 6th, unless the file says otherwise), Gemma 3's
local RoPE base 10000, the query scale 1/sqrt(head_dim) (1/sqrt(width/heads) for the 27B models)
and the embedding scale sqrt(width) in exact fp32.  GGUF norm weights already hold 1 + w, so the
norms use them as they are (norm_offset 0).  Matrices in the block formats the kernels
multiply natively stay in their blocks; other quantized types are dequantized at load.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .._dtypes import QUANT_CODES
from ..errors import ModelFormatError, UnsupportedModelError
from .gemma import GemmaConfig, check_config, dims
from .griffin import check_layer_count
from .tensors import TensorTable, matrix, vector

ARCHS = {"gemma": 1, "gemma2": 2, "gemma3": 3}

# GGML block types the native kernels multiply directly: name -> engine dtype code (from the
# GGML type table; other quantized types are dequantized at load)
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
    # Gemma 3 4B+: linear scaling of the global layers only, as llama.cpp does
    if isinstance(scaling, str) and scaling == "linear" and gen == 3:
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


# llama.cpp's tensor names for Gemma (the same engine tensors as gemma.HF_TENSORS).  Norm
# weights already hold 1 + w.
GGUF_TENSORS = TensorTable(
    dims=dims,
    globals=(
        matrix("embed", "token_embd.weight", "V", "D"),
        vector("final_norm", "output_norm.weight", "D"),
    ),
    layer_prefix="blk.{i}.",
    layers=(
        vector("attn_norm", "attn_norm.weight", "D"),
        matrix("attn.q", "attn_q.weight", "H*hd", "D"),
        matrix("attn.k", "attn_k.weight", "KV*hd", "D"),
        matrix("attn.v", "attn_v.weight", "KV*hd", "D"),
        matrix("attn.o", "attn_output.weight", "D", "H*hd"),
        matrix("mlp.gate", "ffn_gate.weight", "F", "D"),
        matrix("mlp.up", "ffn_up.weight", "F", "D"),
        matrix("mlp.down", "ffn_down.weight", "D", "F"),
        vector("mlp_norm", "ffn_norm.weight", "D"),
        vector("post_attn_norm", "post_attention_norm.weight", "D", when="post_norms"),
        vector("post_mlp_norm", "post_ffw_norm.weight", "D", when="post_norms"),
        vector("attn.q_norm", "attn_q_norm.weight", "hd", when="qk_norm"),
        vector("attn.k_norm", "attn_k_norm.weight", "hd", when="qk_norm"),
    ),
    ignored=("rope_freqs.weight",),  # llama.cpp's RoPE factors; Gemma uses none
    describe=lambda c: f"{c.num_layers}-layer {c.architecture} model",
)


def gguf_config(gf) -> GemmaConfig:
    """The GemmaConfig of a parsed GGUF file: its metadata, the vocabulary size from the
    embedding's shape; an untied output projection is refused."""
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
    return c
