"""Prefill GEMM and decode GEMV speed of gemma_native.ops.linear next to the machine's limits.

Measured in the same run (these machines are shared, so the ratios are what to read):
  * fp32 FMA peak: a tiny C loop (12 independent FMA chains per thread, zmm where the kernel set
    is an AVX-512 one and ymm otherwise, compiled here with the system C compiler into a
    temporary shared library and called through ctypes, one call per thread so the GIL is
    released) on the same number of threads;
  * memory bandwidth: a STREAM-like copy of 256 MiB per thread through the same library;
  * numpy's fp32 matmul and, when torch is installed, torch's fp32/bf16 matmul (same threads).
gn_f32 / gn_bf16 are the exact GEMM on fp32 / bf16 weights; gn_bf16_mode_amx /
gn_bf16_mode_avx512bf16 (each where usable, see gn.backend_info()["available_bf16_gemms"]) are
the bf16 compute mode on AMX tiles / AVX512-BF16 dot products, to compare with torch_bf16.
gn_q8_0 / gn_q8_0r16 are int8 weights with 8-bit activations: GGML's Q8_0 (llama.cpp's
arithmetic) and the engine's Q8_0R16 (dtype="int8"), next to the cores' VPDPBUSD peak
(gn.core_peaks) where the CPU has AVX512-VNNI.

    python benchmarks/ops_gemm.py [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

import gemma_native as gn
from gemma_native import ops

_C_SRC = r"""
#include <immintrin.h>
#include <string.h>
#include <stddef.h>
/* n_iter x 12 independent FMA chains; returns a lane of their sum (so nothing is optimized out).
   One body for both widths: ymm (8 lanes, 192 flops per iteration) and zmm (16 lanes, 384). */
#define GN_PEAK(NAME, ATTR, T, SET1, FMADD, ADD, STORE, LANES)                         \
  ATTR float NAME(long n_iter) {                                                       \
    T b = SET1(0.999999f), c = SET1(1e-7f), a[12];                                     \
    for (int i = 0; i < 12; ++i) a[i] = SET1((float)i);                                \
    for (long it = 0; it < n_iter; ++it) {                                             \
      for (int i = 0; i < 12; ++i) a[i] = FMADD(a[i], b, c);                           \
    }                                                                                  \
    T s = a[0];                                                                        \
    for (int i = 1; i < 12; ++i) s = ADD(s, a[i]);                                     \
    float o[LANES];                                                                    \
    STORE(o, s);                                                                       \
    return o[0];                                                                       \
  }
GN_PEAK(gn_fma_peak, , __m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_storeu_ps, 8)
GN_PEAK(gn_fma_peak512, __attribute__((target("avx512f"))), __m512, _mm512_set1_ps,
        _mm512_fmadd_ps, _mm512_add_ps, _mm512_storeu_ps, 16)
void gn_copy(float* dst, const float* src, size_t n, int reps) {
  for (int r = 0; r < reps; ++r) memcpy(dst, src, n * sizeof(float));
}
"""


def _load_peak_lib():
    cc = os.environ.get("CC", "cc")
    d = tempfile.mkdtemp(prefix="gn_peak_")
    src, lib = os.path.join(d, "peak.c"), os.path.join(d, "peak.so")
    with open(src, "w") as f:
        f.write(_C_SRC)
    try:
        subprocess.run([cc, "-O3", "-mavx2", "-mfma", "-shared", "-fPIC", src, "-o", lib],
                       check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"(no peak measurement: cannot compile with {cc}: {e})", file=sys.stderr)
        return None
    so = ctypes.CDLL(lib)
    so.gn_fma_peak.argtypes = [ctypes.c_long]
    so.gn_fma_peak.restype = ctypes.c_float
    so.gn_fma_peak512.argtypes = [ctypes.c_long]
    so.gn_fma_peak512.restype = ctypes.c_float
    so.gn_copy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return so


def _on_threads(n, fn):
    ts = [threading.Thread(target=fn, args=(i,)) for i in range(n)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return time.perf_counter() - t0


def fma_peak_gflops(so, threads, n_iter=100_000_000 // 4):
    """The FMA peak of the widest vectors the library's kernels use here (zmm where the picked
    kernel set is an AVX-512 one, else ymm)."""
    wide = gn.backend_info()["cpu_isa"].startswith("avx512")
    fn, flops = (so.gn_fma_peak512, 384) if wide else (so.gn_fma_peak, 192)
    best = 0.0
    for _ in range(3):
        dt = _on_threads(threads, lambda i: fn(n_iter))
        best = max(best, threads * n_iter * flops / dt / 1e9)
    return best


def copy_gbs(so, threads, mib=256):
    n = mib * 2**20 // 4
    bufs = [(np.ones(n, np.float32), np.empty(n, np.float32)) for _ in range(threads)]
    best = 0.0
    for _ in range(3):
        dt = _on_threads(threads, lambda i: so.gn_copy(bufs[i][1].ctypes.data,
                                                        bufs[i][0].ctypes.data, n, 2))
        best = max(best, threads * 2 * 2 * n * 4 / dt / 1e9)  # read + write bytes
    return best


def best_time(fn, reps=3):
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def to_bf16(a):
    u = a.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true", help="fewer shapes")
    ap.add_argument("--only", choices=("gemm", "gemv"), help="run one half")
    args = ap.parse_args()
    gn.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    try:
        import torch  # noqa: F401
        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    so = _load_peak_lib()
    rows = []
    peak = fma_peak_gflops(so, args.threads) if so else float("nan")
    bw = copy_gbs(so, args.threads) if so else float("nan")
    int8_peak = gn.core_peaks(args.threads).get("int8_dot_512", float("nan")) / 1e9
    print(f"machine ({args.threads} threads, {gn.backend_info()['cpu_isa']}): fp32 FMA peak "
          f"{peak:.1f} GFLOP/s, VPDPBUSD peak {int8_peak:.0f} GOP/s, copy {bw:.1f} GB/s")
    rng = np.random.default_rng(0)
    gemm_shapes = [(512, 2560, 7680), (512, 7680, 2560), (2048, 2560, 2560)]
    if args.quick:
        gemm_shapes = gemm_shapes[:1]
    if args.only == "gemv":
        gemm_shapes = []
    for n, k, m in gemm_shapes:
        x = rng.standard_normal((n, k), dtype=np.float32)
        wf = rng.standard_normal((m, k), dtype=np.float32)
        wb = to_bf16(wf)
        flops = 2.0 * n * k * m
        res = {"kind": "gemm", "n": n, "k": k, "m": m}
        res["gn_f32"] = flops / best_time(lambda: ops.linear(x, wf)) / 1e9
        res["gn_bf16"] = flops / best_time(lambda: ops.linear(x, (wb, "bfloat16"))) / 1e9
        # the bf16 compute mode (x and W rounded to bf16, fp32 sums) on every unit this CPU
        # has: AMX tiles, AVX512-BF16 dot products
        for unit in ("amx", "avx512bf16"):
            if unit in gn.backend_info()["available_bf16_gemms"]:
                gn.set_bf16_gemm(unit)
                res[f"gn_bf16_mode_{unit}"] = flops / best_time(
                    lambda: ops.linear(x, (wb, "bfloat16"), bf16_activations=True)) / 1e9
        gn.set_bf16_gemm("auto")
        for layout in ("Q8_0", "Q8_0R16"):
            wq = ops.quantize_int8(wf, layout)
            res[f"gn_{layout.lower()}"] = flops / best_time(lambda: ops.linear(x, wq)) / 1e9
        res["numpy_f32"] = flops / best_time(lambda: x @ wf.T) / 1e9
        if torch is not None:
            tx, tw = torch.from_numpy(x), torch.from_numpy(wf)
            res["torch_f32"] = flops / best_time(lambda: tx @ tw.T) / 1e9
            txb, twb = tx.bfloat16(), tw.bfloat16()
            res["torch_bf16"] = flops / best_time(lambda: txb @ twb.T) / 1e9
        line = f"GEMM {n}x{k} @ {k}x{m}: " + ", ".join(
            f"{key} {v:.1f} GFLOP/s ({v / peak:.0%} of peak)" for key, v in res.items()
            if key not in ("kind", "n", "k", "m"))
        print(line)
        print(f"  int8 vs VPDPBUSD peak: Q8_0 {res['gn_q8_0'] / int8_peak:.0%}, "
              f"Q8_0R16 {res['gn_q8_0r16'] / int8_peak:.0%}; Q8_0R16 / Q8_0 "
              f"{res['gn_q8_0r16'] / res['gn_q8_0']:.2f}x, Q8_0R16 / bf16 mode "
              f"{res['gn_q8_0r16'] / max(v for key, v in res.items() if key.startswith('gn_bf16')):.2f}x")
        rows.append(res)
    # Decode: the 2B MLP up projection shape; bytes are the weight bytes read once.
    m, k = 7680, 2560
    wf = rng.standard_normal((m, k), dtype=np.float32)
    wb = to_bf16(wf)
    q8, r16 = ops.quantize_int8(wf, "Q8_0"), ops.quantize_int8(wf)
    cases = (("bf16", (wb, "bfloat16"), wb.nbytes), ("f32", wf, wf.nbytes),
             ("q8_0", q8, q8[0].nbytes), ("q8_0r16", r16, r16[0].nbytes))
    for name, w, nbytes in cases if args.only != "gemm" else ():
        for n in (1, 2, 4):
            x = rng.standard_normal((n, k), dtype=np.float32)
            dt = best_time(lambda: ops.linear(x, w), reps=10)
            gbs = nbytes / dt / 1e9
            print(f"GEMV {name} N={n} {m}x{k}: {gbs:.1f} GB/s ({gbs / bw:.0%} of copy), "
                  f"{n / dt:.0f} rows/s")
            rows.append({"kind": "gemv", "dtype": name, "n": n, "k": k, "m": m, "gbs": gbs,
                         "rows_per_s": n / dt})
    if args.json:
        print(json.dumps({"peak_gflops": peak, "copy_gbs": bw, "results": rows}))


if __name__ == "__main__":
    main()
