"""The compute modes (the ``activations=`` argument of load, random_model, the CLI and bench):
how activations meet the weights, checked in one place, and the one-line description of the
mode that runs, which ``Model.compute_mode``, ``gemma-native info`` and the bench report.

- ``"int8"`` (default): quantized weights (GGUF blocks, ``dtype="int8"``) meet activations
  quantized to 8 bits per block (exact integer products, llama.cpp's arithmetic; weights
  quantized at load, Q8_0R16, take their prefill to AMX-INT8 tiles where the CPU has them, with
  the same results); float weights
  meet float32 activations (exact mode: bit-identical on every CPU kernel set).
- ``"float32"``: every weight meets float32 activations (quantized ones widened).
- ``"bfloat16"``: float weights only.  Products of >= 16 rows of activations (prefill, batched
  logits) round the activations and weights to bfloat16 and sum in float32 on the CPU's matrix
  unit (Intel AMX), else with AVX512-BF16 dot products (AMD Zen 4/5, Intel Cooper Lake); where
  the CPU has neither, the exact path runs.  Decode steps (fewer rows) run exactly either way.
"""

from __future__ import annotations

from . import _core
from ._dtypes import QUANT_CODES
from .errors import InvalidArgumentError

ACTIVATIONS = ("int8", "float32", "bfloat16")


def check_activations(activations) -> str:
    if activations not in ACTIVATIONS:
        raise InvalidArgumentError(f"activations must be one of {', '.join(map(repr, ACTIVATIONS))}"
                                   f", got {activations!r}")
    return activations


def core_options(activations: str, weights: dict) -> dict:
    """The native model's options for `activations` and the engine weights {name: (array,
    dtype code)}; InvalidArgumentError when the mode does not fit the weights."""
    check_activations(activations)
    if activations == "bfloat16":
        quantized = sorted({name for name, (_, code) in weights.items()
                            if code in QUANT_CODES.values()})
        if quantized:
            raise InvalidArgumentError(
                "activations='bfloat16' is for float weights, but this model's matrices are "
                f"quantized (e.g. {quantized[0]!r}); load with dtype='bfloat16' to convert them, "
                "or use activations='int8' / 'float32'")
        return {"bf16_activations": True}
    return {"float_activations": activations == "float32"}


def describe(activations: str, weight_dtype: str | None, device: str = "cpu") -> str:
    """What runs, e.g. 'bfloat16 (amx; decode steps exact)' or 'exact float32 (...)'."""
    quantized = any(part in QUANT_CODES or part == "int8"
                    for part in (weight_dtype or "").split("/"))
    if activations == "bfloat16":
        kernel = _core.bf16_gemm()
        if kernel == "none":
            return ("exact float32 (activations='bfloat16' asked; no bf16 unit in use: "
                    "no AMX or AVX512-BF16 here, or set_bf16_gemm('none'))")
        return f"bfloat16 ({kernel}; decode steps exact)"
    if quantized and activations == "int8":
        if weight_dtype == "int8":  # quantized at load: linear matrices in Q8_0R16 (_dtypes)
            tiles = _core.int8_gemm()
            prefill = "" if tiles == "none" else f"; prefill on AMX-INT8 tiles ({tiles})"
            return f"int8 activations (Q8_0R16 weights: whole-block int32 sums{prefill})"
        return "int8 activations (quantized weights)"
    return "exact float32"
