"""Gemma 1 / 2 / 3 (text) transformers: Hugging Face config parsing and tensor mapping
(docs/model-math.md, 'Gemma 1, 2 and 3').  The native model is csrc/model/gemma.*; this module
turns a checkpoint's config and tensors into its config dict and engine-named weights, checking
every name, shape and dtype (naming tensor and file on a mismatch)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._dtypes import DTYPE_CODES, bf16_round, canonical_dtype, convert_weight, to_engine
from ..errors import ModelFormatError, UnsupportedModelError
from .griffin import _get, check_layer_count, token_id  # shared config.json accessors

# HF model_type -> generation
MODEL_TYPES = {"gemma": 1, "gemma2": 2, "gemma3_text": 3}


@dataclass(frozen=True)
class GemmaConfig:
    """Configuration of a Gemma 1/2/3 text model."""

    architecture: str  # "gemma", "gemma2", "gemma3"
    vocab_size: int
    width: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    mlp_width: int
    layer_types: tuple  # "sliding" / "global" per layer
    sliding_window: int = 0
    max_position_embeddings: int = 8192
    rope_theta: float = 10000.0         # global layers
    rope_local_theta: float = 10000.0   # sliding layers
    rope_global_factor: float = 1.0     # linear RoPE scaling of the global layers (Gemma 3 4B+)
    query_pre_attn_scalar: float = 0.0  # scores scaled by its -1/2 power
    attn_logit_softcapping: float = 0.0
    final_logit_softcapping: float = 0.0
    post_norms: bool = False
    qk_norm: bool = False
    rms_norm_eps: float = 1e-6
    embed_scale: float = 1.0
    norm_offset: float = 1.0  # 1: HF zero-centred norm weights; 0: GGUF (already 1 + w)
    bos_token_id: int = 2
    eos_token_id: int = 1
    pad_token_id: int = 0
    extra_stop_ids: tuple = ()

    def engine_dict(self) -> dict:
        return {
            "vocab_size": self.vocab_size, "width": self.width, "num_heads": self.num_heads,
            "kv_heads": self.num_kv_heads, "head_dim": self.head_dim,
            "mlp_width": self.mlp_width, "window": self.sliding_window or 1,
            "max_context": self.max_position_embeddings,
            "layer_types": list(self.layer_types),
            "rope_base_local": float(self.rope_local_theta),
            "rope_base_global": float(self.rope_theta),
            "rope_factor_global": float(self.rope_global_factor),
            "query_scale": float(self.query_pre_attn_scalar) ** -0.5,
            "attn_softcap": float(self.attn_logit_softcapping or 0.0),
            "final_softcap": float(self.final_logit_softcapping or 0.0),
            "post_norms": self.post_norms, "qk_norm": self.qk_norm,
            "embed_scale": float(self.embed_scale), "norm_eps": float(self.rms_norm_eps),
            "norm_offset": float(self.norm_offset),
        }


def rounded_sqrt(width: int, dtype: str) -> float:
    """sqrt(width) as the reference computes it: rounded to the weights' dtype (HF casts its
    embedding normalizer to the model dtype); exact in float32."""
    s = np.float32(math.sqrt(width))
    if dtype == "bfloat16":
        return float(bf16_round(s).reshape(-1)[0])
    if dtype == "float16":
        return float(np.float16(s))
    return float(s)


def _linear_factor(part, gen: int, where: str) -> float:
    """1.0 for default RoPE; the factor of linear scaling (Gemma 3 global layers only)."""
    if part in (None, {}):
        return 1.0
    if not isinstance(part, dict):
        raise ModelFormatError(f"config.json: {where} must be an object, got {part!r}")
    kind = part.get("rope_type", part.get("type", "default"))
    if kind in ("default", None):
        return 1.0
    if kind != "linear" or gen != 3:
        raise UnsupportedModelError(f"RoPE scaling {kind!r} in {where} is not supported (only "
                                    f"linear scaling of Gemma 3's global layers)")
    factor = part.get("factor")
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 0 \
            or not math.isfinite(factor):
        raise ModelFormatError(f"config.json: {where}.factor must be a number > 0, got {factor!r}")
    return float(factor)


def _rope_thetas(cfg: dict, gen: int) -> tuple:
    """(global base, local base, global linear scaling factor) from either config spelling."""
    rp = cfg.get("rope_parameters")
    glob, loc, factor = 10000.0, 10000.0, 1.0
    if gen == 3:
        glob, loc = 1_000_000.0, 10_000.0
    if isinstance(rp, dict) and ("full_attention" in rp or "sliding_attention" in rp):
        full, slid = rp.get("full_attention") or {}, rp.get("sliding_attention") or {}
        factor = _linear_factor(full, gen, "rope_parameters.full_attention")
        if _linear_factor(slid, gen, "rope_parameters.sliding_attention") != 1.0:
            raise UnsupportedModelError("RoPE scaling of the sliding-window layers is not "
                                        "supported")
        glob = float(full.get("rope_theta", glob))
        loc = float(slid.get("rope_theta", loc))
    elif isinstance(rp, dict):
        factor = _linear_factor(rp, gen, "rope_parameters")
        glob = float(rp.get("rope_theta", cfg.get("rope_theta", glob)))
        loc = float(cfg.get("rope_local_base_freq", glob if gen != 3 else loc))
    else:
        glob = _get(cfg, "rope_theta", kind=float, default=glob)
        loc = _get(cfg, "rope_local_base_freq", kind=float, default=glob if gen != 3 else loc)
    scaling = _linear_factor(cfg.get("rope_scaling"), gen, "rope_scaling")
    if scaling != 1.0:
        factor = scaling
    return glob, loc, factor


def _layer_types(cfg: dict, gen: int, n: int) -> tuple:
    lt = cfg.get("layer_types")
    if lt is not None:
        if not isinstance(lt, list) or len(lt) != n or not all(
                t in ("sliding_attention", "full_attention") for t in lt):
            raise ModelFormatError(f"config.json: layer_types must list {n} entries of "
                                   f"'sliding_attention'/'full_attention'")
        return tuple("sliding" if t == "sliding_attention" else "global" for t in lt)
    if gen == 1:
        return ("global",) * n
    pattern = 2 if gen == 2 else _get(cfg, "sliding_window_pattern", default=6)
    if pattern <= 0:
        raise ModelFormatError("config.json: sliding_window_pattern must be > 0")
    return tuple("sliding" if (i + 1) % pattern else "global" for i in range(n))


def parse_config(cfg: dict, embed_dtype: str = "float32") -> GemmaConfig:
    mt = cfg.get("model_type")
    if not isinstance(mt, str):
        raise ModelFormatError(f"config.json: 'model_type' must be a string, got {mt!r}")
    if mt == "gemma3" and isinstance(cfg.get("text_config"), dict):
        raise UnsupportedModelError("multimodal Gemma 3 checkpoints (model_type 'gemma3') are "
                                    "not supported; use a text-only Gemma3ForCausalLM folder")
    if mt not in MODEL_TYPES:
        raise UnsupportedModelError(f"not a Gemma config (model_type={mt!r})")
    gen = MODEL_TYPES[mt]
    width = _get(cfg, "hidden_size")
    heads = _get(cfg, "num_attention_heads")
    n = _get(cfg, "num_hidden_layers")
    check_layer_count(n)
    head_dim = _get(cfg, "head_dim", default=width // heads if heads > 0 else 0)
    glob, loc, factor = _rope_thetas(cfg, gen)
    types = _layer_types(cfg, gen, n)
    window = _get(cfg, "sliding_window", default=4096 if gen == 2 else 512,
                  required=False) if gen > 1 else 0
    if gen > 1 and "sliding" in types and (window is None or window <= 0):
        raise ModelFormatError("config.json: sliding_window must be > 0")
    max_pos = _get(cfg, "max_position_embeddings", default=8192)
    if gen > 1 and window:
        window = min(window, max_pos)  # a window past the context is the whole context
    qpas = _get(cfg, "query_pre_attn_scalar", kind=float, default=float(head_dim),
                required=False) if gen > 1 else float(head_dim)
    eos = cfg.get("eos_token_id", 1)
    eos_list = eos if isinstance(eos, list) else [eos]
    if not all(isinstance(e, int) and not isinstance(e, bool) and 0 <= e < 1 << 40
               for e in eos_list if e is not None):
        raise ModelFormatError(f"config.json: 'eos_token_id' must be token ids, got {eos!r}")
    c = GemmaConfig(
        architecture={1: "gemma", 2: "gemma2", 3: "gemma3"}[gen],
        vocab_size=_get(cfg, "vocab_size"), width=width, num_layers=n, num_heads=heads,
        num_kv_heads=_get(cfg, "num_key_value_heads", default=heads), head_dim=head_dim,
        mlp_width=_get(cfg, "intermediate_size"), layer_types=types,
        sliding_window=window or 0,
        max_position_embeddings=max_pos,
        rope_theta=glob, rope_local_theta=loc, rope_global_factor=factor,
        query_pre_attn_scalar=qpas,
        attn_logit_softcapping=_get(cfg, "attn_logit_softcapping", kind=float, default=0.0,
                                    required=False) or 0.0,
        final_logit_softcapping=_get(cfg, "final_logit_softcapping", kind=float, default=0.0,
                                     required=False) or 0.0,
        post_norms=gen >= 2, qk_norm=gen == 3,
        rms_norm_eps=_get(cfg, "rms_norm_eps", kind=float, default=1e-6),
        embed_scale=rounded_sqrt(width, embed_dtype), norm_offset=1.0,
        bos_token_id=token_id(cfg, "bos_token_id", 2),
        eos_token_id=token_id(cfg, "eos_token_id", 1),
        pad_token_id=token_id(cfg, "pad_token_id", 0),
        extra_stop_ids=tuple(int(e) for e in eos_list[1:] if isinstance(e, int)),
    )
    check_config(c)
    return c


def check_config(c: GemmaConfig):
    for name in ("vocab_size", "width", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                 "mlp_width", "max_position_embeddings"):
        if getattr(c, name) <= 0:
            raise ModelFormatError(f"config: {name} must be > 0, got {getattr(c, name)}")
    if c.num_heads % c.num_kv_heads:
        raise ModelFormatError("config: num_attention_heads must be a multiple of "
                               "num_key_value_heads")
    if c.head_dim % 2:
        raise ModelFormatError("config: head_dim must be even")
    if c.query_pre_attn_scalar <= 0:
        raise ModelFormatError("config: query_pre_attn_scalar must be > 0")


def hf_layer_names(c: GemmaConfig) -> list:
    """(HF suffix, engine suffix, shape, is_matrix) for one layer."""
    D, F, H, KV, hd = c.width, c.mlp_width, c.num_heads, c.num_kv_heads, c.head_dim
    specs = [
        ("input_layernorm.weight", "attn_norm", (D,), False),
        ("self_attn.q_proj.weight", "attn.q", (H * hd, D), True),
        ("self_attn.k_proj.weight", "attn.k", (KV * hd, D), True),
        ("self_attn.v_proj.weight", "attn.v", (KV * hd, D), True),
        ("self_attn.o_proj.weight", "attn.o", (D, H * hd), True),
        ("mlp.gate_proj.weight", "mlp.gate", (F, D), True),
        ("mlp.up_proj.weight", "mlp.up", (F, D), True),
        ("mlp.down_proj.weight", "mlp.down", (D, F), True),
    ]
    if c.post_norms:
        specs += [("post_attention_layernorm.weight", "post_attn_norm", (D,), False),
                  ("pre_feedforward_layernorm.weight", "mlp_norm", (D,), False),
                  ("post_feedforward_layernorm.weight", "post_mlp_norm", (D,), False)]
    else:  # Gemma 1: post_attention_layernorm is the pre-MLP norm
        specs += [("post_attention_layernorm.weight", "mlp_norm", (D,), False)]
    if c.qk_norm:
        specs += [("self_attn.q_norm.weight", "attn.q_norm", (hd,), False),
                  ("self_attn.k_norm.weight", "attn.k_norm", (hd,), False)]
    return specs


_FLOATS = ("float32", "bfloat16", "float16", "float64")


def engine_weights(c: GemmaConfig, tensors: dict, dtype: str | None = None) -> dict:
    """HF tensors (name -> Tensor) -> {engine name: (array, dtype code)}."""
    want = canonical_dtype(dtype) if dtype is not None else None
    out, used = {}, set()

    def take(hf, eng, shape, is_matrix):
        t = tensors.get(hf)
        if t is None:
            raise ModelFormatError(f"missing tensor '{hf}' (needed by the {c.architecture} "
                                   f"config with {c.num_layers} layers)")
        used.add(hf)
        where = f"'{t.name}' in {t.file}"
        if tuple(t.shape) != tuple(shape):
            raise ModelFormatError(f"tensor {where} has shape {tuple(t.shape)}, expected "
                                   f"{tuple(shape)} from config.json")
        if t.dtype not in _FLOATS:
            raise UnsupportedModelError(f"tensor {where} has dtype {t.dtype}; expected a float")
        src = "float32" if t.dtype == "float64" else t.dtype
        arr = t.data if t.dtype != "float64" else np.ascontiguousarray(t.data, np.float32)
        if is_matrix:
            dst = want or src
            out[eng] = to_engine(arr, src, dst)
        else:
            out[eng] = (np.ascontiguousarray(convert_weight(arr, src, "float32")),
                        DTYPE_CODES["float32"])

    take("model.embed_tokens.weight", "embed", (c.vocab_size, c.width), True)
    take("model.norm.weight", "final_norm", (c.width,), False)
    for i in range(c.num_layers):
        for hf, eng, shape, mat in hf_layer_names(c):
            take(f"model.layers.{i}.{hf}", f"layers.{i}.{eng}", shape, mat)
    extra = sorted(set(tensors) - used - {"lm_head.weight"})
    if extra:
        t = tensors[extra[0]]
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise ModelFormatError(f"unexpected tensor '{t.name}' in {t.file}{more} for a "
                               f"{c.num_layers}-layer {c.architecture} config")
    return out
