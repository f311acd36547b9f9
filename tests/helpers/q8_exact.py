"""The Q8_0R16 linear's definition (csrc/ops/cpu/q8_0r16.cc) evaluated in exact rational
arithmetic, each step rounded once to float32: per output acc = 0, then per block in order
acc = fma(s_b, dw * dx, acc), s_b the exact integer sum of the block's 32 products, then
+ bias.  What every int8 kernel (each kernel set, the AMX tiles) must equal bit for bit."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from gemma_native import reference


def round_f32(v: Fraction) -> np.float32:
    """v rounded to the nearest float32, ties to even (exactly, from a rational)."""
    c = np.float32(float(v))
    best = None
    for cand in (np.nextafter(c, np.float32(-np.inf)), c, np.nextafter(c, np.float32(np.inf))):
        err = abs(Fraction(float(cand)) - v)
        even = int(cand.view(np.uint32)) % 2 == 0
        if best is None or err < best[0] or (err == best[0] and even):
            best = (err, cand)
    return best[1]


def q8_0r16_exact(q8: np.ndarray, x: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """y[n, m] for Q8_0 blocks q8 ([rows, cols / 32 * 34] uint8, GGML's layout: the same values
    as their Q8_0R16 packing) and float32 activations x [n, cols]."""
    rows = q8.shape[0]
    n, cols = x.shape
    dx, qx = reference.quantize_activations(x, 32)
    b = q8.reshape(rows, cols // 32, 34)
    dw = np.ascontiguousarray(b[:, :, :2]).view(np.float16)[:, :, 0].astype(np.float32)
    qw = b[:, :, 2:].view(np.int8).astype(np.int64)
    want = np.empty((n, rows), np.float32)
    for t in range(n):
        for m in range(rows):
            acc = np.float32(0)
            for k in range(cols // 32):
                s = int(qw[m, k] @ qx[t, k].astype(np.int64))
                dd = np.float32(dw[m, k] * dx[t, k])  # exact: the product of two half values
                assert Fraction(float(dd)) == Fraction(float(dw[m, k])) * Fraction(float(dx[t, k]))
                acc = round_f32(Fraction(s) * Fraction(float(dd)) + Fraction(float(acc)))
            want[t, m] = acc if bias is None else np.float32(acc + bias[m])
    return want
