"""The CUDA attention kernels on the SIMT emulator against the CPU op, on what test_ops.py's
small shapes do not reach: decode against long rings (several key splits and the log-sum-exp
combine), a ring that has wrapped, window < slots, head_dim 256, 8 query heads per kv head,
batch 3 with different counts, and a decode continuation equal to one whole prefill."""

from __future__ import annotations

import numpy as np
import pytest

from gemma_native import ops

from tests.helpers.arrays import rnd

EMU = ops.EMULATOR


def _both(q, k, v, pos, window, scale, softcap=0.0, k_cache=None, v_cache=None, count=None):
    """(CPU result, emulated result), each with its own copy of the caches."""
    out = []
    caches = []
    for dev in ("cpu", EMU):
        kc = None if k_cache is None else k_cache.copy()
        vc = None if v_cache is None else v_cache.copy()
        out.append(ops.attention(q, k, v, pos, window, scale, softcap, kc, vc, count, device=dev))
        caches.append((kc, vc))
    return out, caches


@pytest.mark.parametrize("hd,heads,kv,slots,window,counts", [
    (256, 8, 1, 600, 600, [900]),            # wrapped ring, 3 splits, MQA 8:1, hd 256
    (40, 6, 2, 520, 300, [2000, 5, 519]),    # window < slots, batch 3, GQA 3:1, odd hd
    (64, 4, 4, 1100, 1100, [1099]),          # MHA, 5 splits, ring exactly full
])
def test_decode_against_long_rings(hd, heads, kv, slots, window, counts):
    rng = np.random.default_rng(hd + slots)
    B = len(counts)
    q, k, v = rnd(rng, B, 1, heads, hd), rnd(rng, B, 1, kv, hd), rnd(rng, B, 1, kv, hd)
    kc, vc = rnd(rng, B, slots, kv, hd), rnd(rng, B, slots, kv, hd)
    count = np.array(counts, np.int64)
    pos = count.reshape(B, 1).astype(np.int32)
    (want, got), ((kw, vw), (kg, vg)) = _both(q, k, v, pos, window, hd ** -0.5, 0.0, kc, vc, count)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    np.testing.assert_array_equal(kg, kw)  # the ring writes are exact copies
    np.testing.assert_array_equal(vg, vw)


@pytest.mark.parametrize("device", ["cpu", EMU])
def test_chunks_and_decode_steps_equal_one_whole_prefill(device):
    """Prefill chunks then decode steps through a ring that wraps equal one whole prefill (a
    document start inside a chunk masks the keys before it for that chunk's queries)."""
    rng = np.random.default_rng(7)
    T, heads, kv, hd, slots, window = 40, 4, 1, 32, 16, 16
    q, k, v = rnd(rng, 1, T, heads, hd), rnd(rng, 1, T, kv, hd), rnd(rng, 1, T, kv, hd)
    pos = np.arange(T, dtype=np.int32)[None]
    pos[0, 25] = 0  # a document starts at 25, inside the chunk [21, 33)
    whole = ops.attention(q, k, v, pos, window, 0.3, 4.0, device="cpu")
    kc = np.zeros((1, slots, kv, hd), np.float32)
    vc = np.zeros_like(kc)
    count = np.zeros(1, np.int64)
    pieces = []
    for a, b in ((0, 20), (20, 21), (21, 33)):
        pieces.append(ops.attention(q[:, a:b], k[:, a:b], v[:, a:b], pos[:, a:b], window, 0.3,
                                    4.0, kc, vc, count, device=device))
        count += b - a
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), whole[:, :33], rtol=2e-5,
                               atol=2e-5)


def test_head_dim_and_group_limits_are_clear_errors():
    rng = np.random.default_rng(1)
    q, k = rnd(rng, 1, 2, 1, 264), rnd(rng, 1, 2, 1, 264)
    pos = np.array([[0, 1]], np.int32)
    with pytest.raises(ops.ShapeError, match="head_dim"):
        ops.attention(q, k, k, pos, 4, 1.0, device=EMU)
    q = rnd(rng, 1, 2, 33, 8)
    k = rnd(rng, 1, 2, 1, 8)
    with pytest.raises(ops.ShapeError, match="query heads per kv head"):
        ops.attention(q, k, k, pos, 4, 1.0, device=EMU)


def test_chunk_then_decode_schedule_matches_cpu():
    """The same prefill chunks and decode steps (ring wrapping, a document start in a chunk)
    on the CPU op and on the CUDA kernels give the same outputs and the same rings."""
    rng = np.random.default_rng(8)
    T, heads, kv, hd, slots, window = 45, 8, 2, 48, 12, 10
    q, k, v = rnd(rng, 2, T, heads, hd), rnd(rng, 2, T, kv, hd), rnd(rng, 2, T, kv, hd)
    pos = np.tile(np.arange(T, dtype=np.int32), (2, 1))
    pos[1, 14] = 0
    state = {dev: (np.zeros((2, slots, kv, hd), np.float32),
                   np.zeros((2, slots, kv, hd), np.float32), np.zeros(2, np.int64))
             for dev in ("cpu", EMU)}
    for a, b in ((0, 9), (9, 30), *[(i, i + 1) for i in range(30, T)]):
        outs = {}
        for dev, (kc, vc, count) in state.items():
            outs[dev] = ops.attention(q[:, a:b], k[:, a:b], v[:, a:b], pos[:, a:b], window, 0.2,
                                      0.0, kc, vc, count, device=dev)
            count += b - a
        np.testing.assert_allclose(outs[EMU], outs["cpu"], rtol=2e-5, atol=2e-5,
                                   err_msg=f"tokens [{a}, {b})")
    np.testing.assert_array_equal(state[EMU][0], state["cpu"][0])
