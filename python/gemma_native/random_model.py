"""Models with random weights at real (or tiny) shapes, for benchmarks and tests without
downloads.  ``gn.random_model("recurrentgemma-2b")`` builds the real 2B shape in bfloat16.

Presets (``gn.random_model.PRESETS`` lists them; ``preset_config(name)`` gives the config
without building weights):

* RecurrentGemma (Griffin): recurrentgemma-2b, recurrentgemma-9b, recurrentgemma-tiny
* Gemma 1: gemma-2b, gemma-7b, gemma-tiny
* Gemma 2: gemma2-2b, gemma2-9b, gemma2-tiny
* Gemma 3 (text): gemma3-270m, gemma3-1b, gemma3-tiny

The real shapes are those of the published checkpoints (docs/model-math.md, 'Published shapes';
Gemma 3 1B from its config.json: 999,885,952 parameters).  The tiny ones keep each generation's
structure (block pattern, MQA/GQA, sliding windows, soft-caps, QK-norm) at a size tests can
afford.

The weights are random but not degenerate: matrices have independent signs and magnitudes
near 1/sqrt(fan_in), norms and biases are small, the RG-LRU decay parameter follows the
official initialisation range.  They are generated directly as bfloat16 bits (fast: a few
seconds for 2.7 B parameters) and converted when another dtype is asked for.
"""

from __future__ import annotations

import math

import numpy as np

from . import _core
from ._dtypes import canonical_dtype
from .device import check_device
from .errors import InvalidArgumentError
from .loading.safetensors import Tensor
from .model import Model
from .models import gemma, griffin

GRIFFIN_PRESETS = {
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

# Gemma presets in GemmaConfig fields; "pattern" = every pattern-th layer is global (0: all
# global).  Everything not named takes the generation's defaults below (docs/model-math.md,
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
GEMMA_PRESETS = {
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
PRESETS = {**GRIFFIN_PRESETS, **GEMMA_PRESETS}


def _unknown(preset):
    return InvalidArgumentError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")


def _griffin_config(preset, overrides):
    fields = dict(GRIFFIN_PRESETS[preset], block_types=None)
    fields.update(overrides)
    if fields["block_types"] is None:
        fields["block_types"] = tuple(("recurrent", "recurrent", "attention")[i % 3]
                                      for i in range(fields["num_layers"]))
    try:
        cfg = griffin.GriffinConfig(**fields)
    except TypeError as e:
        raise InvalidArgumentError(f"bad config override: {e}") from None
    griffin._check_config(cfg)
    return cfg


def _gemma_config(preset, overrides, dtype):
    base = GEMMA_PRESETS[preset]
    fields = dict(_GEN_DEFAULTS[base["architecture"]], **base)
    fields.update(overrides)
    pattern = fields.pop("pattern")
    if "layer_types" not in overrides:
        n = fields["num_layers"]
        fields["layer_types"] = tuple("global" if pattern == 0 or (i + 1) % pattern == 0
                                      else "sliding" for i in range(n))
    fields.setdefault("query_pre_attn_scalar", float(fields["head_dim"]))
    fields.setdefault("embed_scale", gemma.rounded_sqrt(fields["width"], dtype))
    try:
        cfg = gemma.GemmaConfig(**fields)
    except TypeError as e:
        raise InvalidArgumentError(f"bad config override: {e}") from None
    if len(cfg.layer_types) != cfg.num_layers:
        raise InvalidArgumentError(f"layer_types has {len(cfg.layer_types)} entries for "
                                   f"{cfg.num_layers} layers")
    gemma.check_config(cfg)
    return cfg


def preset_config(preset: str, dtype: str = "bfloat16", **overrides):
    """The config (GriffinConfig or GemmaConfig) random_model(preset, ...) would build."""
    if not isinstance(preset, str) or preset not in PRESETS:
        raise _unknown(preset)
    want = canonical_dtype(dtype)
    if preset in GRIFFIN_PRESETS:
        return _griffin_config(preset, overrides)
    return _gemma_config(preset, overrides, want)


def _bf16_bits(rng, shape, std):
    """Random bfloat16 bits: random sign and mantissa, exponent so |x| is in [std, 2 std)."""
    e = int(math.floor(math.log2(std))) + 127
    n = int(np.prod(shape))
    # Raw 64-bit draws viewed as four uint16 each (fastest), masked in place: keep the sign
    # (bit 15) and mantissa (bits 0-6), set the exponent.
    bits = rng.bit_generator.random_raw((n + 3) // 4).view(np.uint16)[:n]
    bits &= np.uint16(0x807F)
    bits |= np.uint16(e << 7)
    return bits.reshape(shape)


# With tied embeddings a random model whose residual stream is dominated by the token's own
# embedding predicts "repeat the current token" forever; the matrices that write into the
# residual stream (Griffin, Gemma 1) or the post-norms after them (Gemma 2/3) get this gain so
# greedy output varies.
RESIDUAL_GAIN = 8.0
_GRIFFIN_WRITERS = ("linear_out.weight", "down_proj.weight", "o_proj.weight")


def _tensor(rng, name, shape, kind):
    if kind in ("matrix", "residual"):
        fan_in = shape[-1] if len(shape) == 2 else shape[-2]
        gain = RESIDUAL_GAIN if kind == "residual" else 1.0
        return Tensor(name, "bfloat16", tuple(shape), _bf16_bits(rng, shape,
                                                                 gain / math.sqrt(fan_in)),
                      "<random>")
    if kind == "a_param":
        # official init: r^2 ~ U[0.81, 0.998]; stored so that softplus(a_param) = -ln r
        r = np.sqrt(rng.uniform(0.81, 0.998, size=shape))
        data = np.log(np.expm1(-np.log(r))).astype(np.float32)
    elif kind == "post_norm":  # Gemma 2/3 norms on the residual writes: the same gain
        data = rng.normal(RESIDUAL_GAIN - 1.0, 0.5, size=shape).astype(np.float32)
    else:  # norms (zero-centred, used as 1 + w), biases, conv taps
        data = rng.normal(0.0, 0.05, size=shape).astype(np.float32)
    return Tensor(name, "float32", tuple(shape), data, "<random>")


def random_model(preset: str = "recurrentgemma-tiny", dtype: str = "bfloat16", seed: int = 0,
                 device: str = "cpu", activations: str = "int8", **overrides) -> Model:
    """A Model with random weights at a named shape (see PRESETS); config fields may be
    overridden (e.g. num_layers=2, vocab_size=1024).  Same seed and arguments -> same weights.
    It has no tokenizer: generate from token ids.  dtype: float32, bfloat16 or float16 for
    the large matrices (norms and biases are always float32), or int8 (Q8_0 blocks).  device
    and activations: as for :func:`gemma_native.load`."""
    device = check_device(device)
    if activations not in ("int8", "float32"):
        raise InvalidArgumentError(f"activations must be 'int8' or 'float32', got {activations!r}")
    float_act = {"float_activations": activations == "float32"}
    cfg = preset_config(preset, dtype, **overrides)
    want = canonical_dtype(dtype)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidArgumentError(f"seed must be an integer >= 0, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    tensors = {}

    def add(name, shape, kind):
        tensors[name] = _tensor(rng, name, shape, kind)

    if isinstance(cfg, griffin.GriffinConfig):
        add("model.embed_tokens.weight", (cfg.vocab_size, cfg.width), "matrix")
        add("model.final_norm.weight", (cfg.width,), "small")
        for i, kind in enumerate(cfg.block_types):
            for hf, _eng, shape, is_matrix in griffin._layer_specs(cfg, kind):
                if is_matrix:
                    k = "residual" if hf.endswith(_GRIFFIN_WRITERS) else "matrix"
                else:
                    k = "a_param" if hf.endswith("recurrent_param") else "small"
                add(f"model.layers.{i}.{hf}", shape, k)
        weights = griffin.engine_weights(cfg, tensors, want)
        core = _core.GriffinModel({**cfg.engine_dict(), **float_act}, weights, device)
    else:
        add("model.embed_tokens.weight", (cfg.vocab_size, cfg.width), "matrix")
        add("model.norm.weight", (cfg.width,), "small")
        for i in range(cfg.num_layers):
            for hf, _eng, shape, is_matrix in gemma.hf_layer_names(cfg):
                if is_matrix:
                    kind = "residual" if hf.endswith(("o_proj.weight", "down_proj.weight")) \
                        and not cfg.post_norms else "matrix"
                else:
                    kind = "post_norm" if cfg.post_norms and hf.startswith(
                        ("post_attention", "post_feedforward")) else "small"
                add(f"model.layers.{i}.{hf}", shape, kind)
        weights = gemma.engine_weights(cfg, tensors, want)
        core = _core.GemmaModel({**cfg.engine_dict(), **float_act}, weights, device)
    model = Model(cfg, core, None, path=f"random:{preset}", weight_dtype=want)
    model.weights_nbytes = sum(a.nbytes for a, _ in weights.values())
    return model


random_model.PRESETS = PRESETS
