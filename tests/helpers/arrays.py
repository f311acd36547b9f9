"""Seeded random inputs used across the test folders."""

from __future__ import annotations

import numpy as np


def rnd(rng: np.random.Generator, *shape, scale: float = 1.0) -> np.ndarray:
    """float32 standard-normal values of ``shape`` times ``scale``."""
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def random_ids(shape, vocab: int, seed: int = 0, dtype=np.int32) -> np.ndarray:
    """Token ids uniform in [0, vocab) of ``shape`` (an int or a tuple), from ``seed``."""
    return np.random.default_rng(seed).integers(0, vocab, size=shape).astype(dtype)
