"""Seeded random inputs used across the test folders."""

from __future__ import annotations

import numpy as np

from gemma_native._dtypes import f32_to_bf16_bits


def rnd(rng: np.random.Generator, *shape, scale: float = 1.0) -> np.ndarray:
    """float32 standard-normal values of ``shape`` times ``scale``."""
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def random_ids(shape, vocab: int, seed: int = 0, dtype=np.int32) -> np.ndarray:
    """Token ids uniform in [0, vocab) of ``shape`` (an int or a tuple), from ``seed``."""
    return np.random.default_rng(seed).integers(0, vocab, size=shape).astype(dtype)


def weight_arg(values: np.ndarray, dtype: str):
    """float32 ``values`` as the weight argument of ops.linear in ``dtype``: the array itself
    (float32, float16) or (bf16 bit patterns, "bfloat16")."""
    if dtype == "float32":
        return values
    if dtype == "float16":
        return values.astype(np.float16)
    return (f32_to_bf16_bits(values), "bfloat16")
