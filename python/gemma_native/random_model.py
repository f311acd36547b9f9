"""Models with random weights at real (or tiny) shapes, for benchmarks and tests without
downloads.  ``gn.random_model("recurrentgemma-2b")`` builds the real 2B shape in bfloat16.

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
from .errors import InvalidArgumentError
from .loading.safetensors import Tensor
from .model import Model
from .models import griffin

PRESETS = {
    # MODELS.md 1.1
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


def random_model(preset: str = "recurrentgemma-tiny", dtype: str = "bfloat16", seed: int = 0,
                 **overrides) -> Model:
    """A Model with random weights at a named shape (see PRESETS); config fields may be
    overridden (e.g. num_layers=2).  It has no tokenizer: generate from token ids."""
    if preset not in PRESETS:
        raise InvalidArgumentError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    want = canonical_dtype(dtype)
    fields = dict(PRESETS[preset], block_types=None)
    fields.update(overrides)
    if fields["block_types"] is None:
        fields["block_types"] = tuple(("recurrent", "recurrent", "attention")[i % 3]
                                      for i in range(fields["num_layers"]))
    try:
        cfg = griffin.GriffinConfig(**fields)
    except TypeError as e:
        raise InvalidArgumentError(f"bad config override: {e}") from None
    griffin._check_config(cfg)
    rng = np.random.default_rng(seed)
    tensors = {}

    def add(name, shape, kind):
        if kind == "matrix":
            data, dt = _bf16_bits(rng, shape, 1.0 / math.sqrt(shape[-1] if len(shape) == 2
                                                              else shape[-2])), "bfloat16"
        elif kind == "a_param":
            # official init: a = r^8c with r^2 ~ U[0.81, 0.998]; a_param = log(1/r - 1)... in
            # softplus form, softplus(a_param) = -ln r
            r = np.sqrt(rng.uniform(0.81, 0.998, size=shape))
            data, dt = np.log(np.expm1(-np.log(r))).astype(np.float32), "float32"
        else:
            data, dt = rng.normal(0.0, 0.05, size=shape).astype(np.float32), "float32"
        tensors[name] = Tensor(name, dt, tuple(shape), data, "<random>")

    add("model.embed_tokens.weight", (cfg.vocab_size, cfg.width), "matrix")
    add("model.final_norm.weight", (cfg.width,), "small")
    for i, kind in enumerate(cfg.block_types):
        for hf, _eng, shape, is_matrix in griffin._layer_specs(cfg, kind):
            name = f"model.layers.{i}.{hf}"
            add(name, shape, "matrix" if is_matrix else
                ("a_param" if hf.endswith("recurrent_param") else "small"))
    weights = griffin.engine_weights(cfg, tensors, want)
    core = _core.GriffinModel(cfg.engine_dict(), weights)
    model = Model(cfg, core, None, path=f"random:{preset}", weight_dtype=want)
    model.weights_nbytes = sum(a.nbytes for a, _ in weights.values())
    return model
