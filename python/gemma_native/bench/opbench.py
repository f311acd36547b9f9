"""The ``ops`` part: microbenchmarks of gemma_native.ops at a model's shapes, in this process.
Memory-bound ops report GB/s (the bytes they must move), GEMM-like ones GFLOP/s."""

from __future__ import annotations

import math

import numpy as np

from gemma_native import ops

from .probes import now


def bf16_bits(x) -> np.ndarray:
    """Finite float32 values rounded to bfloat16 (nearest, ties to even), as the uint16 bit
    patterns the ops take in ``(bits, "bfloat16")`` weights."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    # add just under half of the dropped 16 bits' range, plus the kept part's lowest bit
    # (ties go to the even neighbour), then drop them
    return ((u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) >> 16).astype(np.uint16)


def _best_time(fn, reps):
    fn()  # warm-up
    best = math.inf
    for _ in range(reps):
        t0 = now()
        fn()
        best = min(best, now() - t0)
    return best


def measure_ops(c: dict, settings: dict) -> list:
    """One record per op ({"op", "shape", "seconds", "bytes"/"gb_per_s", "flops"/
    "gflop_per_s"}) at the shapes of the config dict `c`; best of ``settings["op_reps"]``,
    prefill-sized inputs of ``settings["prefill_t"]`` rows."""
    rng = np.random.default_rng(7)
    reps = settings["op_reps"]
    D, F = c["width"], c["mlp_width"]
    T = settings["prefill_t"]
    out = []

    def rec(name, shape, seconds, nbytes=None, flops=None):
        r = {"op": name, "shape": shape, "seconds": seconds}
        if nbytes is not None:
            r["bytes"] = nbytes
            r["gb_per_s"] = nbytes / seconds / 1e9
        if flops is not None:
            r["flops"] = flops
            r["gflop_per_s"] = flops / seconds / 1e9
        out.append(r)

    w = (bf16_bits(rng.standard_normal((F, D), dtype=np.float32) / math.sqrt(D)), "bfloat16")
    w32 = rng.standard_normal((F, D), dtype=np.float32) / math.sqrt(D)
    x1 = rng.standard_normal((1, D), dtype=np.float32)
    xT = rng.standard_normal((T, D), dtype=np.float32)
    for label, wt, wb in (("bf16", w, 2), ("f32", w32, 4)):
        s = _best_time(lambda: ops.linear(x1, wt), reps)
        rec(f"linear decode GEMV {label}", [1, D, F], s, nbytes=F * D * wb + 4 * (D + F),
            flops=2 * D * F)
        s = _best_time(lambda: ops.linear(xT, wt), max(1, reps // 4))
        rec(f"linear prefill GEMM {label}", [T, D, F], s, flops=2 * T * D * F,
            nbytes=F * D * wb + 4 * T * (D + F))
    g = rng.standard_normal((T, F), dtype=np.float32)
    s = _best_time(lambda: ops.geglu(g, g), reps)
    rec("geglu", [T, F], s, nbytes=3 * 4 * T * F)
    nw = rng.standard_normal(D, dtype=np.float32) * 0.1
    s = _best_time(lambda: ops.rmsnorm(xT, nw), reps)
    rec("rmsnorm", [T, D], s, nbytes=2 * 4 * T * D)
    if c.get("architecture") == "recurrent_gemma":
        L = c["lru_width"]
        xs = rng.standard_normal((1, T, L), dtype=np.float32)
        ap = rng.standard_normal(L, dtype=np.float32)
        pos = np.arange(T, dtype=np.int32)[None]
        h = np.zeros((1, L), np.float32)
        s = _best_time(lambda: ops.rglru_scan(xs, xs, xs, ap, pos, h), reps)
        rec("rglru_scan", [1, T, L], s, nbytes=4 * 4 * T * L)
        window = c["attention_window_size"]
    else:
        window = c["sliding_window"] or min(c["max_position_embeddings"], 4096)
    kv, H, hd = c["num_kv_heads"], c["num_heads"], c["head_dim"]
    kc = rng.standard_normal((1, window, kv, hd), dtype=np.float32)
    vc = kc.copy()
    q = rng.standard_normal((1, 1, H, hd), dtype=np.float32)
    k = rng.standard_normal((1, 1, kv, hd), dtype=np.float32)
    cnt = np.array([window], np.int64)
    pos1 = np.array([[window]], np.int32)
    s = _best_time(lambda: ops.attention(q, k, k, pos1, window, hd ** -0.5, 0.0, kc, vc, cnt),
                   reps)
    rec("attention decode (full window)", [H, kv, window, hd], s, nbytes=2 * kc.nbytes)
    return out
