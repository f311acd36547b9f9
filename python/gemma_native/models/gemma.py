"""Gemma 1 / 2 / 3 (text) transformers: Hugging Face config parsing, the checkpoint's tensor
table and the random-model presets (docs/model-math.md, 'Gemma 1, 2 and 3').  The native model
is csrc/model/gemma.*; this module turns a checkpoint's config into its config dict, and
:data:`HF_TENSORS` says how its tensors map onto the engine's names (every name, shape and
dtype is checked, naming tensor and file on a mismatch)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._dtypes import bf16_round
from ..errors import InvalidArgumentError, ModelFormatError, UnsupportedModelError
from .griffin import _get, check_layer_count, token_id  # shared config.json accessors
from .tensors import TensorTable, matrix, vector

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
    """The file's fields, named as the file names them (what a user must fix), before this
    module derives anything from them.  The engine checks its own invariants again for every
    caller (GemmaConfig::validate, also exposed as _core.check_config)."""
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


def dims(c: GemmaConfig) -> dict:
    """Names of the config's dimensions, for the tensor tables' shapes (HF and GGUF)."""
    return {"V": c.vocab_size, "D": c.width, "F": c.mlp_width, "H": c.num_heads,
            "KV": c.num_kv_heads, "hd": c.head_dim}


# A Hugging Face Gemma 1/2/3 checkpoint.  Gemma 2/3 wrap attention and MLP in norms before and
# after (post_norms); Gemma 1's post_attention_layernorm is the norm before the MLP.  Gemma 3
# normalizes queries and keys per head (qk_norm).
HF_TENSORS = TensorTable(
    dims=dims,
    globals=(
        matrix("embed", "model.embed_tokens.weight", "V", "D"),
        vector("final_norm", "model.norm.weight", "D"),
    ),
    layer_prefix="model.layers.{i}.",
    layers=(
        vector("attn_norm", "input_layernorm.weight", "D"),
        matrix("attn.q", "self_attn.q_proj.weight", "H*hd", "D"),
        matrix("attn.k", "self_attn.k_proj.weight", "KV*hd", "D"),
        matrix("attn.v", "self_attn.v_proj.weight", "KV*hd", "D"),
        matrix("attn.o", "self_attn.o_proj.weight", "D", "H*hd"),
        matrix("mlp.gate", "mlp.gate_proj.weight", "F", "D"),
        matrix("mlp.up", "mlp.up_proj.weight", "F", "D"),
        matrix("mlp.down", "mlp.down_proj.weight", "D", "F"),
        vector("post_attn_norm", "post_attention_layernorm.weight", "D", when="post_norms"),
        vector("mlp_norm", "pre_feedforward_layernorm.weight", "D", when="post_norms"),
        vector("post_mlp_norm", "post_feedforward_layernorm.weight", "D", when="post_norms"),
        vector("mlp_norm", "post_attention_layernorm.weight", "D", when="!post_norms"),
        vector("attn.q_norm", "self_attn.q_norm.weight", "hd", when="qk_norm"),
        vector("attn.k_norm", "self_attn.k_norm.weight", "hd", when="qk_norm"),
    ),
    ignored=("lm_head.weight",),  # tied to the embedding
    needed=lambda c: f"needed by the {c.architecture} config with {c.num_layers} layers",
    describe=lambda c: f"{c.num_layers}-layer {c.architecture} config",
)


# Random-model presets in GemmaConfig fields; "pattern" = every pattern-th layer is global (0:
# all global).  Everything not named takes the generation's defaults below (docs/model-math.md,
# 'Published shapes' and 'Gemma 1, 2 and 3').
_GEN_DEFAULTS = {
    "gemma": dict(pattern=0, sliding_window=0, max_position_embeddings=8192,
                  rope_theta=10000.0, rope_local_theta=10000.0),
    "gemma2": dict(pattern=2, sliding_window=4096, max_position_embeddings=8192,
                   rope_theta=10000.0, rope_local_theta=10000.0, attn_logit_softcapping=50.0,
                   final_logit_softcapping=30.0, post_norms=True),
    "gemma3": dict(pattern=6, sliding_window=512, max_position_embeddings=32768,
                   rope_theta=1_000_000.0, rope_local_theta=10000.0, post_norms=True,
                   qk_norm=True),
}
PRESETS = {
    # the published shapes (Gemma 3 1B from its config.json: 999,885,952 parameters)
    "gemma-2b": dict(architecture="gemma", vocab_size=256000, width=2048, num_layers=18,
                     num_heads=8, num_kv_heads=1, head_dim=256, mlp_width=16384),
    "gemma-7b": dict(architecture="gemma", vocab_size=256000, width=3072, num_layers=28,
                     num_heads=16, num_kv_heads=16, head_dim=256, mlp_width=24576),
    "gemma2-2b": dict(architecture="gemma2", vocab_size=256000, width=2304, num_layers=26,
                      num_heads=8, num_kv_heads=4, head_dim=256, mlp_width=9216),
    "gemma2-9b": dict(architecture="gemma2", vocab_size=256000, width=3584, num_layers=42,
                      num_heads=16, num_kv_heads=8, head_dim=256, mlp_width=14336),
    "gemma3-270m": dict(architecture="gemma3", vocab_size=262144, width=640, num_layers=18,
                        num_heads=4, num_kv_heads=1, head_dim=256, mlp_width=2048),
    "gemma3-1b": dict(architecture="gemma3", vocab_size=262144, width=1152, num_layers=26,
                      num_heads=4, num_kv_heads=1, head_dim=256, mlp_width=6912),
    # tiny: MQA / all global; GQA + alternating windows + soft-caps + a query scalar that is not
    # head_dim; 5 sliding : 1 global + QK-norm (7 layers: global at 5 only)
    "gemma-tiny": dict(architecture="gemma", vocab_size=512, width=128, num_layers=3,
                       num_heads=4, num_kv_heads=1, head_dim=32, mlp_width=256),
    "gemma2-tiny": dict(architecture="gemma2", vocab_size=512, width=128, num_layers=4,
                        num_heads=4, num_kv_heads=2, head_dim=32, mlp_width=256,
                        sliding_window=16, query_pre_attn_scalar=24.0,
                        max_position_embeddings=1024),
    "gemma3-tiny": dict(architecture="gemma3", vocab_size=512, width=128, num_layers=7,
                        num_heads=4, num_kv_heads=1, head_dim=32, mlp_width=256,
                        sliding_window=16, max_position_embeddings=1024),
}


def preset_config(preset: str, overrides: dict, dtype: str = "bfloat16") -> GemmaConfig:
    """The GemmaConfig of a preset with fields overridden; the embedding scale is sqrt(width)
    rounded to ``dtype`` (the weights' dtype), as the reference applies it."""
    base = PRESETS[preset]
    fields = dict(_GEN_DEFAULTS[base["architecture"]], **base)
    fields.update(overrides)
    pattern = fields.pop("pattern")
    if "layer_types" not in overrides:
        n = fields["num_layers"]
        fields["layer_types"] = tuple("global" if pattern == 0 or (i + 1) % pattern == 0
                                      else "sliding" for i in range(n))
    fields.setdefault("query_pre_attn_scalar", float(fields["head_dim"]))
    fields.setdefault("embed_scale", rounded_sqrt(fields["width"], dtype))
    try:
        cfg = GemmaConfig(**fields)
    except TypeError as e:
        raise InvalidArgumentError(f"bad config override: {e}") from None
    if len(cfg.layer_types) != cfg.num_layers:
        raise InvalidArgumentError(f"layer_types has {len(cfg.layer_types)} entries for "
                                   f"{cfg.num_layers} layers")
    check_config(cfg)
    return cfg
