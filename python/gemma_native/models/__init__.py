"""The model architectures: config parsing, checkpoint-to-engine tensor tables, presets.

:data:`ARCHITECTURES` is the one registry: for each model family the config class, how a
Hugging Face ``config.json`` (and, where supported, GGUF metadata) becomes a config, the tensor
table of each checkpoint format, the native model class that runs it, the devices it runs on
and the random-model presets.  Every family runs on every device (one native runtime).  :func:`gemma_native.load` and
:func:`gemma_native.random_model` both go through it; a new family is one more entry here.

Modules: :mod:`.griffin` (RecurrentGemma), :mod:`.gemma` (Gemma 1/2/3, Hugging Face),
:mod:`.gemma_gguf` (Gemma from GGUF files), :mod:`.tensors` (tables and the mapper).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .. import _core
from ..errors import InvalidArgumentError
from . import gemma, gemma_gguf, griffin
from .tensors import GGUFSource, SafetensorsSource, TensorTable, map_tensors


@dataclass(frozen=True)
class Architecture:
    """One model family and everything the loaders need to know about it."""

    name: str  # the family's configs' .architecture (Gemma: "gemma", "gemma2", "gemma3")
    config_class: type
    hf_model_types: tuple  # config.json model_type values this family parses
    parse_hf_config: Callable[[dict, str], Any]  # (config.json, embedding dtype) -> config
    hf_tensors: TensorTable
    new_core: Callable[[dict, dict, str], Any]  # (engine config, weights, device) -> core
    presets: dict  # random-model preset name -> config fields
    preset_config: Callable[[str, dict, str], Any]  # (preset, overrides, dtype) -> config
    gguf_architectures: tuple = ()  # GGUF general.architecture values
    gguf_config: Callable[[Any], Any] | None = None  # parsed GGUF file -> config
    gguf_tensors: TensorTable | None = None

    def hf_weights(self, cfg, tensors: dict, dtype: str | None = None) -> dict:
        """Engine weights from a Hugging Face checkpoint's tensors."""
        return map_tensors(self.hf_tensors, cfg, SafetensorsSource(tensors), dtype)

    def gguf_weights(self, cfg, gf, dtype: str | None = None) -> dict:
        """Engine weights from a parsed GGUF file."""
        return map_tensors(self.gguf_tensors, cfg, GGUFSource(gf), dtype)

    def build_core(self, cfg, weights: dict, device: str = "cpu", **options):
        """The native model: the config's engine dict (plus ``options``, e.g.
        float_activations) and the engine weights."""
        return self.new_core({**cfg.engine_dict(), **options}, weights, device)


GRIFFIN = Architecture(
    name=griffin.ARCH,
    config_class=griffin.GriffinConfig,
    hf_model_types=(griffin.ARCH,),
    parse_hf_config=lambda config, _embed_dtype: griffin.parse_config(config),
    hf_tensors=griffin.HF_TENSORS,
    new_core=lambda config, weights, device: _core.GriffinModel(config, weights, device),
    presets=griffin.PRESETS,
    preset_config=griffin.preset_config,
)

GEMMA = Architecture(
    name="gemma",
    config_class=gemma.GemmaConfig,
    # "gemma3" (the multimodal model) too: its parser explains that it is not supported
    hf_model_types=(*gemma.MODEL_TYPES, "gemma3"),
    parse_hf_config=gemma.parse_config,
    hf_tensors=gemma.HF_TENSORS,
    new_core=lambda config, weights, device: _core.GemmaModel(config, weights, device),
    presets=gemma.PRESETS,
    preset_config=gemma.preset_config,
    gguf_architectures=tuple(gemma_gguf.ARCHS),
    gguf_config=gemma_gguf.gguf_config,
    gguf_tensors=gemma_gguf.GGUF_TENSORS,
)

#: Family name -> Architecture.
ARCHITECTURES: dict = {a.name: a for a in (GRIFFIN, GEMMA)}
# A config.json no family claims goes to RecurrentGemma's parser: it accepts one without a
# model_type (RecurrentGemmaForCausalLM in "architectures") and names anything else it got.
_HF_FALLBACK = GRIFFIN
# Likewise a GGUF file of an unknown architecture goes to Gemma's parser, which names it.
_GGUF_FALLBACK = GEMMA


def for_hf_config(config: dict) -> Architecture:
    """The family that parses a Hugging Face config.json dict."""
    mt = config.get("model_type")
    for arch in ARCHITECTURES.values():
        if isinstance(mt, str) and mt in arch.hf_model_types:
            return arch
    return _HF_FALLBACK


def for_gguf(gf) -> Architecture:
    """The family that reads a parsed GGUF file (by ``general.architecture``)."""
    name = gf.metadata.get("general.architecture")
    for arch in ARCHITECTURES.values():
        if isinstance(name, str) and name in arch.gguf_architectures:
            return arch
    return _GGUF_FALLBACK


def for_config(cfg) -> Architecture:
    """The family of a config object (GriffinConfig, GemmaConfig ...)."""
    for arch in ARCHITECTURES.values():
        if isinstance(cfg, arch.config_class):
            return arch
    raise InvalidArgumentError(f"not a model config: {type(cfg).__name__}")


def for_preset(preset: str) -> Architecture | None:
    """The family a random-model preset belongs to (None if no family has it)."""
    for arch in ARCHITECTURES.values():
        if preset in arch.presets:
            return arch
    return None


#: Every random-model preset: name -> config fields (families in registry order).
PRESETS: dict = {name: fields for arch in ARCHITECTURES.values()
                 for name, fields in arch.presets.items()}

__all__ = ["ARCHITECTURES", "Architecture", "GEMMA", "GRIFFIN", "PRESETS", "for_config",
           "for_gguf", "for_hf_config", "for_preset"]
