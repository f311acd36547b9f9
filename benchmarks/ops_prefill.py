"""Time the non-GEMM prefill ops of RecurrentGemma-2B on real shapes next to one linear.

    python benchmarks/ops_prefill.py [--tokens 512] [--threads 2]

Per recurrent layer a 2B prefill runs 2 input linears (2560 -> 2560), conv1d (width 4), the
two RG-LRU gate block-diagonal linears, the scan and the output linear, plus the MLP
(2 x 2560 -> 7680, 7680 -> 2560, and the GeGLU between); attention layers run local MQA (10 heads
x 256, 1 KV head, window 2048).  Where a bf16 GEMM is usable the bf16 compute mode's linear is
timed too.  Printed: ms per call and the ratio to one 2560 x 2560 linear on the same tokens.
"""

import argparse

import numpy as np
from ops_gemm import best_time  # same folder: the one best-of-n timer

import gemma_native as gn
from gemma_native import ops


def best_ms(fn, reps=3):
    return best_time(fn, reps) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    gn.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    t, width, heads, hd = args.tokens, 2560, 10, 256
    x = rng.standard_normal((1, t, width), dtype=np.float32)
    w = rng.standard_normal((width, width), dtype=np.float32)
    base = best_ms(lambda: ops.linear(x[0], w))
    rows = [("linear 2560x2560 (f32)", base)]
    pos = np.arange(t, dtype=np.int32)[None]
    cw = rng.standard_normal((4, width), dtype=np.float32)
    rows.append(("conv1d width 4", best_ms(lambda: ops.conv1d(x, pos, cw))))
    ga = rng.standard_normal((1, t, width), dtype=np.float32)
    ap_ = rng.uniform(-7, 2, width).astype(np.float32)
    h = np.zeros((1, width), np.float32)
    rows.append(("rglru_scan", best_ms(lambda: ops.rglru_scan(x, ga, ga, ap_, pos, h.copy()))))
    bw = rng.standard_normal((heads, width // heads, width // heads), dtype=np.float32)
    rows.append(("block_diag_linear", best_ms(lambda: ops.block_diag_linear(x[0], bw))))
    q = rng.standard_normal((1, t, heads, hd), dtype=np.float32)
    kv = rng.standard_normal((1, t, 1, hd), dtype=np.float32)
    rows.append(("attention 10x256 MQA w2048",
                 best_ms(lambda: ops.attention(q, kv, kv, pos, 2048, hd ** -0.5))))
    g = rng.standard_normal((t, 7680), dtype=np.float32)
    rows.append(("geglu 7680 (MLP)", best_ms(lambda: ops.geglu(g, g))))
    if gn.backend_info().get("bf16_gemm", "none") != "none":
        rows.append(("linear 2560x2560 (bf16 mode)",
                     best_ms(lambda: ops.linear(x[0], w, bf16_activations=True))))
    for name, ms in rows:
        print(f"{name:28s} {ms:8.2f} ms  ({ms / base:.2f} x linear), T={t}")


if __name__ == "__main__":
    main()
