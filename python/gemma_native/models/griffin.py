"""RecurrentGemma / Griffin: Hugging Face config parsing, the checkpoint's tensor table and
the random-model presets (docs/model-math.md, 'Griffin block structure' and 'Checkpoint tensor
names').

The native model (csrc/model/griffin.*) takes *engine* tensor names.  :data:`HF_TENSORS` says
how a Hugging Face RecurrentGemma checkpoint maps onto them: names, shapes from the config and
the conversions where the engine differs (Conv1D taps to [K, L]; small vectors to float32);
:func:`~gemma_native.models.tensors.map_tensors` applies it, checking every name, shape and
dtype (naming the tensor and file on any mismatch).  Large matrices keep their file dtype
unless a compute dtype is requested, and are passed as memory-mapped views (no copy) when they
match.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .._dtypes import bf16_round
from ..errors import InvalidArgumentError, ModelFormatError, UnsupportedModelError
from .tensors import CONV_TAPS, TensorSpec, TensorTable, matrix, vector

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


PRESETS = {
    # docs/model-math.md, 'Published shapes'
    "recurrentgemma-2b": dict(vocab_size=256000, width=2560, num_layers=26, num_heads=10,
                              head_dim=256, lru_width=2560, mlp_width=7680,
                              attention_window_size=2048),
    "recurrentgemma-9b": dict(vocab_size=256000, width=4096, num_layers=38, num_heads=16,
                              head_dim=256, lru_width=4096, mlp_width=12288,
                              attention_window_size=2048),
    # small enough for tests and quick looks; same structure (R R A pattern, MQA, window)
    "recurrentgemma-tiny": dict(vocab_size=512, width=128, num_layers=6, num_heads=2,
                                head_dim=64, lru_width=128, mlp_width=384,
                                attention_window_size=16),
}


def preset_config(preset: str, overrides: dict, dtype: str = "bfloat16") -> GriffinConfig:
    """The GriffinConfig of a preset with fields overridden (the dtype changes nothing here:
    the embedding scale is bfloat16-rounded in every dtype)."""
    fields = dict(PRESETS[preset], block_types=None)
    fields.update(overrides)
    if fields["block_types"] is None:
        fields["block_types"] = tuple(("recurrent", "recurrent", "attention")[i % 3]
                                      for i in range(fields["num_layers"]))
    try:
        cfg = GriffinConfig(**fields)
    except TypeError as e:
        raise InvalidArgumentError(f"bad config override: {e}") from None
    _check_config(cfg)
    return cfg


def _check_config(c: GriffinConfig):
    """The file's fields, named as config.json names them and with their values (what a user
    must fix), before this module derives anything from them.  The engine checks its own
    invariants again for every caller (GriffinConfig::validate, also exposed as
    _core.check_config)."""
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


def _dims(c: GriffinConfig) -> dict:
    return {"V": c.vocab_size, "D": c.width, "L": c.lru_width, "F": c.mlp_width,
            "H": c.num_heads, "hd": c.head_dim, "KV": c.num_kv_heads, "K": c.conv1d_width,
            "bs": c.lru_width // c.num_heads}


# A Hugging Face RecurrentGemma checkpoint.  Every layer has the norms and the MLP, then a
# recurrent block (RG-LRU) or a local attention block as config.json's block_types say.
_T = "temporal_block."
HF_TENSORS = TensorTable(
    dims=_dims,
    globals=(
        matrix("embed", "model.embed_tokens.weight", "V", "D"),
        vector("final_norm", "model.final_norm.weight", "D"),
    ),
    layer_prefix="model.layers.{i}.",
    layers=(
        vector("pre_norm", "temporal_pre_norm.weight", "D"),
        vector("mlp_norm", "channel_pre_norm.weight", "D"),
        matrix("mlp.gate", "mlp_block.gate_proj.weight", "F", "D"),
        vector("mlp.gate_b", "mlp_block.gate_proj.bias", "F"),
        matrix("mlp.up", "mlp_block.up_proj.weight", "F", "D"),
        vector("mlp.up_b", "mlp_block.up_proj.bias", "F"),
        matrix("mlp.down", "mlp_block.down_proj.weight", "D", "F"),
        vector("mlp.down_b", "mlp_block.down_proj.bias", "D"),
        # recurrent blocks (the first entry tells the kinds apart)
        matrix("rec.linear_x", _T + "linear_x.weight", "L", "D", block="recurrent"),
        vector("rec.linear_x_b", _T + "linear_x.bias", "L", block="recurrent"),
        matrix("rec.linear_y", _T + "linear_y.weight", "L", "D", block="recurrent"),
        vector("rec.linear_y_b", _T + "linear_y.bias", "L", block="recurrent"),
        matrix("rec.linear_out", _T + "linear_out.weight", "D", "L", block="recurrent"),
        vector("rec.linear_out_b", _T + "linear_out.bias", "D", block="recurrent"),
        TensorSpec("rec.conv_w", _T + "conv_1d.weight", ("L", 1, "K"), CONV_TAPS,
                   block="recurrent"),
        vector("rec.conv_b", _T + "conv_1d.bias", "L", block="recurrent"),
        vector("rec.a_param", _T + "rg_lru.recurrent_param", "L", block="recurrent"),
        matrix("rec.gate_x", _T + "rg_lru.input_gate_weight", "H", "bs", "bs",
               block="recurrent"),
        vector("rec.gate_x_b", _T + "rg_lru.input_gate_bias", "H", "bs", block="recurrent"),
        matrix("rec.gate_a", _T + "rg_lru.recurrent_gate_weight", "H", "bs", "bs",
               block="recurrent"),
        vector("rec.gate_a_b", _T + "rg_lru.recurrent_gate_bias", "H", "bs", block="recurrent"),
        # attention blocks (multi-query: KV key/value heads)
        matrix("attn.q", _T + "q_proj.weight", "H*hd", "D", block="attention"),
        matrix("attn.k", _T + "k_proj.weight", "KV*hd", "D", block="attention"),
        matrix("attn.v", _T + "v_proj.weight", "KV*hd", "D", block="attention"),
        matrix("attn.o", _T + "o_proj.weight", "D", "H*hd", block="attention"),
        vector("attn.o_b", _T + "o_proj.bias", "D", block="attention"),
    ),
    blocks="block_types",
    tied=(TensorSpec(None, "lm_head.weight", ("V", "D"), optional=True,
                     why="(tied to the embedding)"),),
    needed=lambda c: f"needed by the config: {c.num_layers} layers, pattern "
                     f"{list(c.block_types[:3])}",
    describe=lambda c: f"{c.num_layers}-layer RecurrentGemma config",
)
