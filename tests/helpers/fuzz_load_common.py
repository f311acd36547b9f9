"""Test helper: the seeded random choices shared by the loader fuzzer's mutations.

Used by ``fuzz_load_gguf`` and ``fuzz_load_hf`` (the mutations of the GGUF file and of the
Hugging Face folder): the campaign seed, boundary integers and floats, and small helpers to
pick one, pack it into a field and describe it briefly.  numpy only.
"""

from __future__ import annotations

import math

import numpy as np

SEED = 0x6E61_7469

INT_EDGES = [0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 96, 127, 128, 129,
             255, 256, 1000, 1023, 1024, 4095, 4096, 65535, 65536, 1 << 20, 1 << 24,
             (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32, (1 << 32) + 1, 1 << 40, 1 << 48,
             1 << 62, (1 << 63) - 1, 1 << 63, (1 << 63) + 1, (1 << 64) - 1]
FLOAT_EDGES = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 1e-45, 1e-38, 1e-6, 1e6, 1e30, 3.4e38, 1e300,
               -1e6, math.nan, math.inf, -math.inf]


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def edge_int(rng, orig=None, file_size=None, signed=False):
    c = list(INT_EDGES)
    if orig is not None:
        c += [orig - 1, orig + 1, orig * 2, orig // 2, orig + 32, orig - 32, orig << 32,
              orig * 3]
    if file_size is not None:
        c += [file_size, file_size - 1, file_size + 1, file_size // 2]
    if signed:
        c += [-1, -2, -32, -(1 << 31), -(1 << 63)]
    return int(_pick(rng, c))


def _pack_int(value, size):
    return (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def _pack_float(value, size):
    with np.errstate(over="ignore"):  # 1e300 as float32 is inf, on purpose
        return np.array([value], dtype=np.float32 if size == 4 else np.float64).tobytes()


def _short(v, n=40):
    s = repr(v)
    return s if len(s) <= n else s[:n - 3] + "..."
