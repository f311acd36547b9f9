"""Prefill GEMM and decode GEMV speed of gemma_native.ops.linear next to the machine's limits.

Measured in the same run (these machines are shared, so the ratios are what to read):
  * the cores' peaks: gn.core_peaks, the register-only multiply-add loops `gemma-native bench`
    uses (fp32 FMA on zmm where the kernel set is an AVX-512 one and on ymm otherwise; VPDPBUSD
    where the CPU has AVX512-VNNI), taken before and after the GEMMs and the higher kept: a CPU
    coming out of idle can run the first loop well below its clock, and a peak measured low
    makes every ratio read high (a ratio above 100% is flagged);
  * memory read bandwidth: gn.read_bandwidth over 512 MiB (the bench's decode ceiling), at the
    start and right before and after each GEMV sweep (the GEMV ratios use the higher of those two);
  * numpy's fp32 matmul and, when torch is installed, torch's fp32/bf16 matmul (same threads).
gn_f32 / gn_bf16 are the exact GEMM on row-major fp32 / bf16 weights (packed per call);
gn_bf16r32 is the exact GEMM on bf16 weights in the BF16R32 layout that loaded models use on
the AVX-512 kernel sets (packed once, read in place); gn_bf16_mode_amx /
gn_bf16_mode_avx512bf16 (each where usable, see gn.backend_info()["available_bf16_gemms"]) are
the bf16 compute mode on AMX tiles / AVX512-BF16 dot products, to compare with torch_bf16.
gn_q8_0 / gn_q8_0r16 are int8 weights with 8-bit activations: GGML's Q8_0 (llama.cpp's
arithmetic) and the engine's Q8_0R16 (dtype="int8"), next to the VPDPBUSD peak.

    python benchmarks/ops_gemm.py [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import gemma_native as gn
from gemma_native import ops
from gemma_native._dtypes import f32_to_bf16_bits, pack_bf16r32


def core_peaks(threads):
    """gn.core_peaks in GFLOP/s (GOP/s for int8_dot_512); {} off x86-64."""
    return {key: v / 1e9 for key, v in gn.core_peaks(threads).items()}


def fp32_peak_key():
    """The FMA loop of the vector width the picked kernel set multiplies with."""
    return "fp32_fma_512" if gn.backend_info()["cpu_isa"].startswith("avx512") else "fp32_fma_256"


_READ_BUF = []  # one 512 MiB buffer for every read-rate measurement, made at the first


def read_gbs(threads):
    if not _READ_BUF:
        _READ_BUF.append(np.ones(512 * 2**20 // 8, np.float64))
    return gn.read_bandwidth(_READ_BUF[0], threads) / 1e9


def pct(v, ref):
    return f"{v / ref:.0%}" if ref == ref and ref > 0 else "n/a"


def best_time(fn, reps=3):
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _shapes(text):
    """'512,2560,7680;...' -> [(512, 2560, 7680), ...] (every size a positive integer)."""
    try:
        out = [tuple(int(v) for v in part.split(",")) for part in text.split(";") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated integers: {text!r}") from None
    if not out or len({len(t) for t in out}) != 1 or any(v <= 0 for t in out for v in t):
        raise argparse.ArgumentTypeError(f"bad shapes: {text!r}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true", help="fewer shapes")
    ap.add_argument("--only", choices=("gemm", "gemv"), help="run one half")
    ap.add_argument("--shapes", type=_shapes, help="GEMM shapes N,K,M[;N,K,M...] (default: the "
                    "2B prefill's 512,2560,7680;512,7680,2560;2048,2560,2560)")
    ap.add_argument("--gemv-shape", type=_shapes, default=[(7680, 2560)],
                    help="decode GEMV weight shape M,K (default: the 2B MLP's 7680,2560)")
    ap.add_argument("--gemv-mib", type=int, default=384,
                    help="MiB of weight copies each GEMV sweep reads (default 384, several "
                    "times the last-level cache, so every call reads from DRAM)")
    args = ap.parse_args()
    if args.shapes and any(len(t) != 3 for t in args.shapes):
        ap.error("--shapes takes N,K,M triples")
    if len(args.gemv_shape) != 1 or len(args.gemv_shape[0]) != 2:
        ap.error("--gemv-shape takes one M,K pair")
    # BF16R32 needs M % 32 and K % 16, the int8 blocks K % 32 (and Q8_0R16 M % 16)
    if any(m % 32 or k % 32 for _, k, m in args.shapes or ()) or any(
            m % 32 or k % 32 for m, k in args.gemv_shape):
        ap.error("every M and K must be a multiple of 32")
    if args.gemv_mib <= 0:
        ap.error("--gemv-mib must be positive")
    gn.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    try:
        import torch  # noqa: F401
        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    isa = gn.backend_info()["cpu_isa"]
    peaks_before = core_peaks(args.threads)
    bw = read_gbs(args.threads)
    rng = np.random.default_rng(0)
    gemm_shapes = args.shapes or [(512, 2560, 7680), (512, 7680, 2560), (2048, 2560, 2560)]
    if args.quick:
        gemm_shapes = gemm_shapes[:1]
    if args.only == "gemv":
        gemm_shapes = []
    rows = []
    for n, k, m in gemm_shapes:
        x = rng.standard_normal((n, k), dtype=np.float32)
        wf = rng.standard_normal((m, k), dtype=np.float32)
        wb = f32_to_bf16_bits(wf)
        flops = 2.0 * n * k * m
        res = {"kind": "gemm", "n": n, "k": k, "m": m}
        res["gn_f32"] = flops / best_time(lambda: ops.linear(x, wf)) / 1e9
        res["gn_bf16"] = flops / best_time(lambda: ops.linear(x, (wb, "bfloat16"))) / 1e9
        w32 = (pack_bf16r32(wb), "BF16R32")
        res["gn_bf16r32"] = flops / best_time(lambda: ops.linear(x, w32)) / 1e9
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
        rows.append(res)
    peaks_after = core_peaks(args.threads) if gemm_shapes else peaks_before
    peaks = {key: max(v, peaks_after.get(key, 0.0)) for key, v in peaks_before.items()}
    nan = float("nan")
    peak, int8_peak = peaks.get(fp32_peak_key(), nan), peaks.get("int8_dot_512", nan)
    before, after = peaks_before.get(fp32_peak_key(), nan), peaks_after.get(fp32_peak_key(), nan)
    print(f"machine ({args.threads} threads, {isa}): fp32 FMA peak {peak:.1f} GFLOP/s "
          f"({fp32_peak_key()}; {before:.1f} before the GEMMs, {after:.1f} after), VPDPBUSD peak "
          f"{int8_peak:.0f} GOP/s, read bandwidth {bw:.1f} GB/s")
    high = []
    for res in rows:
        vals = {key: v for key, v in res.items() if key not in ("kind", "n", "k", "m")}
        high += [key for key, v in vals.items() if key in ("gn_f32", "gn_bf16", "gn_bf16r32",
                                                            "numpy_f32", "torch_f32")
                 and v > 1.0 * peak]
        print(f"GEMM {res['n']}x{res['k']} @ {res['k']}x{res['m']}: " + ", ".join(
            f"{key} {v:.1f} GFLOP/s ({pct(v, peak)} of peak)" for key, v in vals.items()))
        best_bf16 = max(v for key, v in vals.items() if key.startswith("gn_bf16"))
        print(f"  int8 vs VPDPBUSD peak: Q8_0 {pct(vals['gn_q8_0'], int8_peak)}, "
              f"Q8_0R16 {pct(vals['gn_q8_0r16'], int8_peak)}; Q8_0R16 / Q8_0 "
              f"{vals['gn_q8_0r16'] / vals['gn_q8_0']:.2f}x, Q8_0R16 / best bf16 "
              f"{vals['gn_q8_0r16'] / best_bf16:.2f}x")
    if high:
        print(f"(fp32 GEMMs above the FMA peak: {', '.join(sorted(set(high)))} -- the peak was "
              "measured low, so read these ratios as unreliable and run again)")
    # Decode, by default the 2B MLP up projection shape; bytes are the weight bytes read once.  Each
    # timing runs over enough copies of the matrix (>= 384 MiB) that every call reads its
    # weights from DRAM (by default), not from the last-level cache left warm by the previous call.
    (m, k), = args.gemv_shape
    wf = rng.standard_normal((m, k), dtype=np.float32)
    wb = f32_to_bf16_bits(wf)
    cases = (("bf16", (wb, "bfloat16")), ("bf16r32", (pack_bf16r32(wb), "BF16R32")),
             ("f32", (wf, "float32")), ("q8_0", ops.quantize_int8(wf, "Q8_0")),
             ("q8_0r16", ops.quantize_int8(wf)))
    for name, (arr, layout) in cases if args.only != "gemm" else ():
        nbytes = arr.nbytes
        ws = [(arr.copy(), layout) for _ in range(max(2, -(-args.gemv_mib * 2**20 // nbytes)))]
        for n in (1, 2, 4):
            x = rng.standard_normal((n, k), dtype=np.float32)

            def sweep():
                for w in ws:
                    ops.linear(x, w)

            # The memory's read rate on these shared machines moves by 2x within minutes, so
            # the ceiling is measured right before and after each sweep; the higher is used.
            rb = read_gbs(args.threads)
            dt = best_time(sweep) / len(ws)
            rb = max(rb, read_gbs(args.threads))
            gbs = nbytes / dt / 1e9
            print(f"GEMV {name} N={n} {m}x{k}: {gbs:.1f} GB/s ({pct(gbs, rb)} of the read "
                  f"bandwidth beside it, {rb:.1f} GB/s), {n / dt:.0f} rows/s")
            rows.append({"kind": "gemv", "dtype": name, "n": n, "k": k, "m": m, "gbs": gbs,
                         "read_gbs_beside": rb, "rows_per_s": n / dt})
    if args.json:
        print(json.dumps({"cpu_isa": isa, "core_peaks_before": peaks_before,
                          "core_peaks_after": peaks_after, "fp32_peak_gflops": peak,
                          "read_gbs": bw, "results": rows}))


if __name__ == "__main__":
    main()
