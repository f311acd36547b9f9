"""RecurrentGemma / Griffin: Hugging Face config parsing and tensor mapping (docs/model-math.md,
'Griffin block structure' and 'Checkpoint tensor names').

The native model (csrc/model/griffin.*) takes *engine* tensor names; this module maps a Hugging
Face RecurrentGemma checkpoint onto them, checks every name, shape and dtype against the config
(naming the tensor and file on any mismatch), and converts layouts where the engine differs
(Conv1D taps to [K, L]; small vectors to float32).  Large matrices keep their file dtype unless
a compute dtype is requested, and are passed as memory-mapped views (no copy) when they match.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .._dtypes import DTYPE_CODES, bf16_round, canonical_dtype, convert_weight, to_engine
from ..errors import ModelFormatError, UnsupportedModelError

ARCH = "recurrent_gemma"


@dataclass(frozen=True)
class GriffinConfig:
    """Configuration of a RecurrentGemma (Griffin) model."""

    vocab_size: int
    width: int
    num_layers: int
    num_heads: int
    head_dim: int
    lru_width: int
    mlp_width: int
    attention_window_size: int
    block_types: tuple = ()
    num_kv_heads: int = 1
    conv1d_width: int = 4
    logits_soft_cap: float = 30.0
    embeddings_scale_by_sqrt_dim: bool = True
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    partial_rotary_factor: float = 0.5
    bos_token_id: int = 2
    eos_token_id: int = 1
    pad_token_id: int = 0
    architecture: str = field(default=ARCH)

    @property
    def embed_scale(self) -> float:
        """sqrt(width) rounded to bfloat16, as the reference does "to match training"."""
        if not self.embeddings_scale_by_sqrt_dim:
            return 1.0
        return float(bf16_round(np.float32(math.sqrt(self.width))).reshape(-1)[0])

    @property
    def rot_dims(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor) // 2 * 2

    def engine_dict(self) -> dict:
        return {
            "vocab_size": self.vocab_size, "width": self.width, "num_heads": self.num_heads,
            "head_dim": self.head_dim, "kv_heads": self.num_kv_heads,
            "lru_width": self.lru_width, "mlp_width": self.mlp_width,
            "window": self.attention_window_size, "conv_width": self.conv1d_width,
            "rot_dims": self.rot_dims, "rope_base": float(self.rope_theta),
            "logits_soft_cap": float(self.logits_soft_cap or 0.0),
            "embed_scale": self.embed_scale, "norm_eps": float(self.rms_norm_eps),
            "norm_offset": 1.0, "blocks": list(self.block_types),
        }


MAX_CONFIG_INT = 1 << 40  # no real model dimension or id comes near this
MAX_LAYERS = 10_000


def token_id(cfg: dict, key: str, default: int) -> int:
    """A special-token id from config.json (an int, or a list whose first entry is one)."""
    v = cfg.get(key, default)
    if isinstance(v, list):
        v = v[0] if v else default
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < MAX_CONFIG_INT:
        raise ModelFormatError(f"config.json: '{key}' must be a token id, got {v!r}")
    return v


def check_layer_count(n: int, where: str = "config.json"):
    if not 0 < n <= MAX_LAYERS:
        raise ModelFormatError(f"{where}: the number of layers (num_layers) = {n} is not in "
                               f"[1, {MAX_LAYERS}]")


def _get(cfg: dict, *keys, default=None, required=True, kind=int):
    for k in keys:
        if k in cfg and cfg[k] is not None:
            v = cfg[k]
            if kind is int:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or (
                        isinstance(v, float) and (not math.isfinite(v) or int(v) != v)):
                    raise ModelFormatError(f"config.json: '{k}' must be an integer, got {v!r}")
                if abs(int(v)) > MAX_CONFIG_INT:
                    raise ModelFormatError(f"config.json: '{k}' = {v} is implausibly large")
                return int(v)
            if kind is float:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise ModelFormatError(f"config.json: '{k}' must be a finite number, got {v!r}")
                return float(v)
            if kind is bool:
                if not isinstance(v, bool):
                    raise ModelFormatError(f"config.json: '{k}' must be true/false, got {v!r}")
                return v
            return v
    if required and default is None:
        raise ModelFormatError(f"config.json is missing '{keys[0]}'")
    return default


def parse_config(cfg: dict) -> GriffinConfig:
    """GriffinConfig from a Hugging Face RecurrentGemma config.json dict."""
    mt = cfg.get("model_type")
    archs = cfg.get("architectures") or []
    if not isinstance(archs, list):
        raise ModelFormatError(f"config.json: 'architectures' must be a list, got {archs!r}")
    if mt is not None and not isinstance(mt, str):
        raise ModelFormatError(f"config.json: 'model_type' must be a string, got {mt!r}")
    if mt not in (None, ARCH) or (mt is None and "RecurrentGemmaForCausalLM" not in archs):
        raise UnsupportedModelError(
            f"not a RecurrentGemma config (model_type={mt!r}, architectures={archs!r})")
    width = _get(cfg, "hidden_size", "width")
    heads = _get(cfg, "num_attention_heads", "num_heads")
    layers = _get(cfg, "num_hidden_layers", "num_layers")
    check_layer_count(layers)
    head_dim = _get(cfg, "head_dim", default=width // heads if heads > 0 else 0)
    if "intermediate_size" in cfg:
        inter = _get(cfg, "intermediate_size")
        if inter % 2:
            raise ModelFormatError("config.json: intermediate_size must be even (2 x MLP width)")
        mlp = inter // 2  # HF stores 2 x the GeGLU width (docs/model-math.md, 'GeGLU MLP')
    else:
        mlp = _get(cfg, "mlp_expanded_width")
    pattern = _get(cfg, "block_types", "_block_types", kind=list,
                   default=["recurrent", "recurrent", "attention"])
    if not isinstance(pattern, (list, tuple)) or not pattern or not all(
            p in ("recurrent", "attention") for p in pattern):
        raise UnsupportedModelError(f"config.json: unknown block_types {pattern!r}")
    blocks = tuple((list(pattern) * (layers // len(pattern) + 1))[:layers])
    rope = cfg.get("rope_parameters") if isinstance(cfg.get("rope_parameters"), dict) else {}
    theta = _get(rope, "rope_theta", kind=float, required=False) or _get(
        cfg, "rope_theta", kind=float, default=10000.0)
    prf = _get(rope, "partial_rotary_factor", kind=float, required=False) or _get(
        cfg, "partial_rotary_factor", kind=float, default=0.5)
    c = GriffinConfig(
        vocab_size=_get(cfg, "vocab_size"), width=width, num_layers=layers, num_heads=heads,
        head_dim=head_dim, lru_width=_get(cfg, "lru_width", default=width),
        mlp_width=mlp, attention_window_size=_get(cfg, "attention_window_size"),
        block_types=blocks, num_kv_heads=_get(cfg, "num_key_value_heads", default=1),
        conv1d_width=_get(cfg, "conv1d_width", default=4),
        logits_soft_cap=_get(cfg, "logits_soft_cap", kind=float, default=0.0, required=False) or 0.0,
        embeddings_scale_by_sqrt_dim=_get(cfg, "embeddings_scale_by_sqrt_dim", kind=bool,
                                          default=True, required=False),
        rms_norm_eps=_get(cfg, "rms_norm_eps", kind=float, default=1e-6),
        rope_theta=theta, partial_rotary_factor=prf,
        bos_token_id=token_id(cfg, "bos_token_id", 2), eos_token_id=token_id(cfg, "eos_token_id", 1),
        pad_token_id=token_id(cfg, "pad_token_id", 0),
    )
    _check_config(c)
    return c


def _check_config(c: GriffinConfig):
    for name in ("vocab_size", "width", "num_layers", "num_heads", "head_dim", "lru_width",
                 "mlp_width", "attention_window_size", "num_kv_heads", "conv1d_width"):
        if getattr(c, name) <= 0:
            raise ModelFormatError(f"config.json: {name} must be > 0, got {getattr(c, name)}")
    if c.lru_width % c.num_heads:
        raise ModelFormatError("config.json: lru_width must be divisible by num_attention_heads")
    if c.num_heads % c.num_kv_heads:
        raise ModelFormatError("config.json: num_attention_heads must be a multiple of "
                               "num_key_value_heads")
    if not 0.0 <= c.partial_rotary_factor <= 1.0:
        raise ModelFormatError("config.json: partial_rotary_factor must be in [0, 1]")
    if c.attention_window_size > 1 << 20:
        raise UnsupportedModelError("attention_window_size above 2^20 is not supported")


# (HF suffix, engine suffix, shape(cfg) -> tuple, is_matrix)
def _layer_specs(c: GriffinConfig, kind: str):
    D, L, F, H = c.width, c.lru_width, c.mlp_width, c.num_heads
    hd, KV, K, bs = c.head_dim, c.num_kv_heads, c.conv1d_width, c.lru_width // c.num_heads
    specs = [
        ("temporal_pre_norm.weight", "pre_norm", (D,), False),
        ("channel_pre_norm.weight", "mlp_norm", (D,), False),
        ("mlp_block.gate_proj.weight", "mlp.gate", (F, D), True),
        ("mlp_block.gate_proj.bias", "mlp.gate_b", (F,), False),
        ("mlp_block.up_proj.weight", "mlp.up", (F, D), True),
        ("mlp_block.up_proj.bias", "mlp.up_b", (F,), False),
        ("mlp_block.down_proj.weight", "mlp.down", (D, F), True),
        ("mlp_block.down_proj.bias", "mlp.down_b", (D,), False),
    ]
    t = "temporal_block."
    if kind == "recurrent":
        specs += [
            (t + "linear_x.weight", "rec.linear_x", (L, D), True),
            (t + "linear_x.bias", "rec.linear_x_b", (L,), False),
            (t + "linear_y.weight", "rec.linear_y", (L, D), True),
            (t + "linear_y.bias", "rec.linear_y_b", (L,), False),
            (t + "linear_out.weight", "rec.linear_out", (D, L), True),
            (t + "linear_out.bias", "rec.linear_out_b", (D,), False),
            (t + "conv_1d.weight", "rec.conv_w", (L, 1, K), False),
            (t + "conv_1d.bias", "rec.conv_b", (L,), False),
            (t + "rg_lru.recurrent_param", "rec.a_param", (L,), False),
            (t + "rg_lru.input_gate_weight", "rec.gate_x", (H, bs, bs), True),
            (t + "rg_lru.input_gate_bias", "rec.gate_x_b", (H, bs), False),
            (t + "rg_lru.recurrent_gate_weight", "rec.gate_a", (H, bs, bs), True),
            (t + "rg_lru.recurrent_gate_bias", "rec.gate_a_b", (H, bs), False),
        ]
    else:
        specs += [
            (t + "q_proj.weight", "attn.q", (H * hd, D), True),
            (t + "k_proj.weight", "attn.k", (KV * hd, D), True),
            (t + "v_proj.weight", "attn.v", (KV * hd, D), True),
            (t + "o_proj.weight", "attn.o", (D, H * hd), True),
            (t + "o_proj.bias", "attn.o_b", (D,), False),
        ]
    return specs


_FLOAT_DTYPES = ("float32", "bfloat16", "float16", "float64")


def _to_f32(t) -> np.ndarray:
    if t.dtype == "bfloat16":
        return convert_weight(t.data, "bfloat16", "float32")
    return np.ascontiguousarray(t.data, dtype=np.float32)


def engine_weights(c: GriffinConfig, tensors: dict, dtype: str | None = None) -> dict:
    """Maps HF tensors (name -> loading.safetensors.Tensor) to the engine's
    {engine_name: (array, dtype_code)}; raises ModelFormatError on any mismatch."""
    want = canonical_dtype(dtype) if dtype is not None else None
    out = {}
    used = set()

    def where(t):
        return f"'{t.name}' in {t.file}"

    def take(hf_name, eng_name, shape, is_matrix):
        t = tensors.get(hf_name)
        if t is None:
            raise ModelFormatError(f"missing tensor '{hf_name}' (needed by the config: "
                                   f"{c.num_layers} layers, pattern {list(c.block_types[:3])})")
        used.add(hf_name)
        if tuple(t.shape) != tuple(shape):
            raise ModelFormatError(f"tensor {where(t)} has shape {tuple(t.shape)}, expected "
                                   f"{tuple(shape)} from config.json")
        if t.dtype not in _FLOAT_DTYPES:
            raise UnsupportedModelError(f"tensor {where(t)} has dtype {t.dtype}; expected a "
                                        f"float dtype")
        if is_matrix:
            src = t.dtype if t.dtype != "float64" else "float32"
            arr = t.data if t.dtype != "float64" else np.ascontiguousarray(t.data, np.float32)
            dst = want or src
            out[eng_name] = to_engine(arr, src, dst)
        else:
            out[eng_name] = (np.ascontiguousarray(_to_f32(t)), DTYPE_CODES["float32"])

    take("model.embed_tokens.weight", "embed", (c.vocab_size, c.width), True)
    take("model.final_norm.weight", "final_norm", (c.width,), False)
    for i, kind in enumerate(c.block_types):
        prefix = f"model.layers.{i}."
        # The pattern decides the kind; say so clearly if the file disagrees.
        probe = prefix + ("temporal_block.linear_x.weight" if kind == "recurrent"
                          else "temporal_block.q_proj.weight")
        if probe not in tensors:
            other = prefix + ("temporal_block.q_proj.weight" if kind == "recurrent"
                              else "temporal_block.linear_x.weight")
            if other in tensors:
                raise ModelFormatError(
                    f"layer {i} is '{kind}' by config.json block_types but the checkpoint holds "
                    f"the other kind of block ('{other}')")
        for hf, eng, shape, mat in _layer_specs(c, kind):
            take(prefix + hf, f"layers.{i}.{eng}", shape, mat)
        if kind == "recurrent":
            w, code = out[f"layers.{i}.rec.conv_w"]
            # HF Conv1d weight [L, 1, K] -> engine taps [K, L] (tap K-1 = current token).
            out[f"layers.{i}.rec.conv_w"] = (np.ascontiguousarray(w[:, 0, :].T), code)

    extra = sorted(set(tensors) - used - {"lm_head.weight"})
    if extra:
        t = tensors[extra[0]]
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise ModelFormatError(f"unexpected tensor {where(t)}{more} for a {c.num_layers}-layer "
                               f"RecurrentGemma config")
    if "lm_head.weight" in tensors:
        lm = tensors["lm_head.weight"]
        if tuple(lm.shape) != (c.vocab_size, c.width):
            raise ModelFormatError(f"tensor {where(lm)} has shape {tuple(lm.shape)}, expected "
                                   f"{(c.vocab_size, c.width)} (tied to the embedding)")
    return out
