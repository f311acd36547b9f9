"""Models with random weights at real (or tiny) shapes, for benchmarks and tests without
downloads.  ``gn.random_model("recurrentgemma-2b")`` builds the real 2B shape in bfloat16.

Presets (``gn.random_model.PRESETS`` lists them; ``preset_config(name)`` gives the config
without building weights; each family's presets live with it in ``gemma_native.models``):

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
seconds for 2.7 B parameters) and converted when another dtype is asked for.  They are made
under the tensors' Hugging Face names (:func:`random_tensors`; written out with a config.json
they form a checkpoint :func:`gemma_native.load` reads) and mapped like a loaded checkpoint.

Model specs: the command line and the benchmark name a model as a path or as
``random:PRESET``; :func:`parse_model_spec` and :func:`model_from_spec` read such a spec.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import numpy as np

from ._dtypes import canonical_dtype, check_pack_weights, cpu_layout
from ._modes import check_activations, core_options
from .device import check_device
from .errors import InvalidArgumentError
from .loader import finish_load
from .loading.safetensors import Tensor
from .model import Model
from .models import GEMMA, GRIFFIN, PRESETS, for_config, for_preset
from .models.tensors import MATRIX

GRIFFIN_PRESETS = GRIFFIN.presets
GEMMA_PRESETS = GEMMA.presets
#: A model spec naming a random model: "random:PRESET".
SPEC_PREFIX = "random:"


def _unknown(preset):
    return InvalidArgumentError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")


def preset_config(preset: str, dtype: str = "bfloat16", **overrides):
    """The config (GriffinConfig or GemmaConfig) random_model(preset, ...) would build."""
    arch = for_preset(preset) if isinstance(preset, str) else None
    if arch is None:
        raise _unknown(preset)
    return arch.preset_config(preset, overrides, canonical_dtype(dtype))


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


# With tied embeddings a random model whose residual stream is dominated by the token's own
# embedding predicts "repeat the current token" forever; the matrices that write into the
# residual stream (Griffin, Gemma 1) or the post-norms after them (Gemma 2/3) get this gain so
# greedy output varies.  (Engine names, per layer.)
RESIDUAL_GAIN = 8.0
_RESIDUAL_WRITERS = ("rec.linear_out", "mlp.down", "attn.o")
_POST_NORMS = ("post_attn_norm", "post_mlp_norm")


def _init_kind(cfg, spec) -> str:
    post_norms = getattr(cfg, "post_norms", False)
    if spec.kind == MATRIX:
        return "residual" if spec.engine in _RESIDUAL_WRITERS and not post_norms else "matrix"
    if spec.engine == "rec.a_param":
        return "a_param"
    return "post_norm" if post_norms and spec.engine in _POST_NORMS else "small"


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidArgumentError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def random_tensors(cfg, seed: int = 0) -> dict:
    """The random tensors of a config (see :func:`preset_config`) under their Hugging Face
    checkpoint names: ``{name: loading.safetensors.Tensor}``, matrices as bfloat16 bits,
    norms, biases and the like as float32.  ``random_model(..., seed=s)`` maps exactly these."""
    return dict(_TensorsOnDemand(cfg, seed).items())


class _TensorsOnDemand(Mapping):
    """random_tensors(cfg, seed) made one tensor at a time, in their one order, as they are
    asked for; ``take(name)`` hands a tensor out and forgets it.  random_model converts the
    weights as the loader takes them, so with dtype="int8" the random bfloat16 matrices never
    all exist at once (RecurrentGemma 2B: they are 5.4 GB; building the whole dict first made
    the int8 model peak at ~8 GB for 2.9 GB of weights)."""

    def __init__(self, cfg, seed: int):
        self._rng = np.random.default_rng(_check_seed(seed))
        specs = list(for_config(cfg).hf_tensors.expand(cfg))
        self._todo = iter(specs)
        self._names = {name: None for _spec, name, _e, _shape in specs}  # ordered, fast lookups
        self._made: dict = {}
        self._taken: set = set()
        self._cfg = cfg

    def _make_until(self, name) -> None:
        for spec, made, _engine, shape in self._todo:  # same draws, same order as ever
            self._made[made] = _tensor(self._rng, made, shape, _init_kind(self._cfg, spec))
            if made == name:
                return

    def __getitem__(self, name):
        if name not in self._made:
            if name not in self._names or name in self._taken:
                raise KeyError(name)
            self._make_until(name)
        return self._made[name]

    def take(self, name):
        """The tensor `name` (None if the config has none such), no longer held here."""
        if name not in self._names or name in self._taken:
            return None
        self[name]
        self._taken.add(name)
        return self._made.pop(name)

    def __iter__(self):
        return iter(self._names)

    def __len__(self):
        return len(self._names)


def random_model(preset: str = "recurrentgemma-tiny", dtype: str = "bfloat16", seed: int = 0,
                 device: str = "cpu", activations: str = "int8", pack_weights: bool | None = None,
                 **overrides) -> Model:
    """A Model with random weights at a named shape (see PRESETS); config fields may be
    overridden (e.g. num_layers=2, vocab_size=1024).  Same seed and arguments -> same weights.
    It has no tokenizer: generate from token ids.  dtype: float32, bfloat16 or float16 for
    the large matrices (norms and biases are always float32), or int8 (Q8_0 blocks).  device
    activations and pack_weights: as for :func:`gemma_native.load`."""
    device = check_device(device)
    check_activations(activations)
    cfg = preset_config(preset, dtype, **overrides)
    want = canonical_dtype(dtype)
    _check_seed(seed)
    arch = for_config(cfg)
    check_pack_weights(pack_weights)
    weights = cpu_layout(arch.hf_weights(cfg, _TensorsOnDemand(cfg, seed), want),
                         activations, device, pack_weights)
    core = arch.build_core(cfg, weights, device, **core_options(activations, weights))
    model = Model(cfg, core, None, path=f"{SPEC_PREFIX}{preset}", weight_dtype=want,
                  activations=activations)
    return finish_load(model, weights)


random_model.PRESETS = PRESETS


def parse_model_spec(spec) -> str | None:
    """The preset of a ``random:PRESET`` spec (checked: InvalidArgumentError names the known
    ones), or None for anything else (a path to load)."""
    if isinstance(spec, os.PathLike):
        return None
    if not isinstance(spec, str):
        raise InvalidArgumentError(f"a model spec must be a path or 'random:PRESET', got "
                                   f"{spec!r}")
    if not spec.startswith(SPEC_PREFIX):
        return None
    preset = spec[len(SPEC_PREFIX):]
    if for_preset(preset) is None:
        raise _unknown(preset)
    return preset


def model_from_spec(spec, dtype: str | None = None, n_threads: int | None = None,
                    seed: int = 0, device: str = "cpu", activations: str = "int8",
                    pack_weights: bool | None = None) -> Model:
    """The model a spec names: ``random:PRESET`` -> :func:`random_model` (dtype None:
    bfloat16), a path -> :func:`gemma_native.load` (dtype None: as stored).  n_threads,
    device, activations and pack_weights as for load (n_threads: process-wide kernel threads;
    None keeps the setting)."""
    from .loader import apply_n_threads, load

    preset = parse_model_spec(spec)
    if preset is None:
        return load(spec, dtype=dtype, n_threads=n_threads, device=device,
                    activations=activations, pack_weights=pack_weights)
    apply_n_threads(n_threads)
    return random_model(preset, dtype=dtype or "bfloat16", seed=seed, device=device,
                        activations=activations, pack_weights=pack_weights)
