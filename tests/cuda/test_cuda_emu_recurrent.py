"""The CUDA RG-LRU scan's chunked prefill path (T > 64: per-chunk affine summaries, carries in
order, then each chunk from its starting h) on the SIMT emulator against the CPU op: chunk
boundaries, resets inside and at chunk starts, batch > 1, channels over one block, a carried h,
and the decode step after it."""

from __future__ import annotations

import numpy as np
import pytest

from gemma_native import ops


@pytest.mark.parametrize("T,resets", [(65, []), (200, [0, 64, 130]), (257, [5, 191])])
def test_chunked_scan_matches_cpu(T, resets):
    rng = np.random.default_rng(T)
    B, L = 2, 150
    x = rng.standard_normal((B, T, L)).astype(np.float32)
    gx = rng.standard_normal((B, T, L)).astype(np.float32)
    ga = rng.standard_normal((B, T, L)).astype(np.float32)
    a_param = rng.standard_normal(L).astype(np.float32)
    pos = np.tile(np.arange(1, T + 1, dtype=np.int32), (B, 1))
    for t in resets:
        pos[1, t] = 0
    h0 = rng.standard_normal((B, L)).astype(np.float32)
    hc, he = h0.copy(), h0.copy()
    want = ops.rglru_scan(x, gx, ga, a_param, pos, hc)
    got = ops.rglru_scan(x, gx, ga, a_param, pos, he, device=ops.EMULATOR)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(he, hc, rtol=1e-5, atol=1e-5)
    # a decode step continues from the carried state
    step = rng.standard_normal((B, 1, L)).astype(np.float32)
    p1 = np.full((B, 1), T + 1, np.int32)
    want = ops.rglru_scan(step, step, step, a_param, p1, hc)
    got = ops.rglru_scan(step, step, step, a_param, p1, he, device=ops.EMULATOR)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
