"""GPU microbenchmarks: each CUDA op at the real RecurrentGemma-2B shapes with its buffers
resident on the device (gemma_native._core.device_bench), and the device-resident model's
decode step (weights read per token / time), as GB/s and as a fraction of the card's
theoretical memory bandwidth -- decode is a bandwidth problem, so that ratio is what "fast"
means here.

    python benchmarks/cuda_ops.py                 # needs a CUDA GPU and a CUDA build
    python benchmarks/cuda_ops.py --json out.json
    python benchmarks/cuda_ops.py --device cuda-emu --tiny   # smoke run on the SIMT emulator
                                                             # (its times mean nothing)
"""

from __future__ import annotations

import argparse
import json
import sys
import time


import gemma_native as gn
from gemma_native import _core

# (name, op, params): RecurrentGemma-2B decode shapes (width 2560, MLP 15360, 10 heads x 256,
# window 2048, vocab 256000), then a prefill-sized scan.
FULL = [
    ("linear 2560x2560 bf16, N=1", "linear", dict(rows=2560, cols=2560, n=1)),
    ("linear 15360x2560 bf16, N=1 (MLP up)", "linear", dict(rows=15360, cols=2560, n=1)),
    ("linear 2560x15360 bf16, N=1 (MLP down)", "linear", dict(rows=2560, cols=15360, n=1)),
    ("linear 256000x2560 bf16, N=1 (logits)", "linear", dict(rows=256000, cols=2560, n=1)),
    ("linear 15360x2560 bf16, N=4", "linear", dict(rows=15360, cols=2560, n=4)),
    ("attention decode, 10 heads/1 kv x 256, 2048 slots", "attention_decode",
     dict(heads=10, kv_heads=1, head_dim=256, slots=2048)),
    ("rglru_scan decode, 2560 channels", "rglru_scan", dict(batch=1, time=1, channels=2560)),
    ("rglru_scan prefill, 2048 x 2560", "rglru_scan", dict(batch=1, time=2048, channels=2560)),
    ("rmsnorm 1 x 2560", "rmsnorm", dict(n=1, d=2560)),
]
TINY = [
    ("linear 96x64 bf16, N=1", "linear", dict(rows=96, cols=64, n=1)),
    ("attention decode, 2 heads x 32, 16 slots", "attention_decode",
     dict(heads=2, kv_heads=1, head_dim=32, slots=16)),
    ("rglru_scan decode, 96 channels", "rglru_scan", dict(batch=1, time=1, channels=96)),
    ("rmsnorm 1 x 64", "rmsnorm", dict(n=1, d=64)),
]


def card_bandwidth() -> float | None:
    """Theoretical GB/s of device 0 as the CUDA runtime reports it, or None."""
    info = gn.backend_info().get("cuda", {})
    devices = info.get("devices") or []
    if not devices:
        return None
    d = devices[0]
    for key in ("bandwidth_gb_per_s", "bandwidth_gbs", "memory_bandwidth_gb_s"):
        if d.get(key):
            return float(d[key])
    return None


def bench_model(device: str, tiny: bool, steps: int) -> dict:
    preset = "recurrentgemma-tiny" if tiny else "recurrentgemma-2b"
    model = gn.random_model(preset, dtype="bfloat16", device=device)
    state = model.new_state()
    model.forward([2, 3, 4, 5], state)  # prompt; the first decode step captures the graph
    model.forward([6], state)
    t0 = time.perf_counter()
    for i in range(steps):
        model.forward([7 + i % 50], state)
    dt = (time.perf_counter() - t0) / steps
    nbytes = float(model.weights_nbytes) if getattr(model, "weights_nbytes", None) else None
    return {"preset": preset, "seconds_per_token": dt, "tokens_per_s": 1.0 / dt,
            "weight_bytes": nbytes, "gb_per_s": (nbytes / dt / 1e9) if nbytes else None,
            "graph_replays": model._core.graph_replays}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cuda-emu")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--steps", type=int, default=50, help="decode steps for the model")
    ap.add_argument("--tiny", action="store_true", help="small shapes (for the emulator)")
    ap.add_argument("--no-model", action="store_true")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)

    try:
        _core.device_bench(a.device, "rmsnorm", {"n": 1, "d": 32}, 1)
    except gn.DeviceError as e:
        print(f"cannot run on {a.device!r}: {e}", file=sys.stderr)
        return 2
    peak = card_bandwidth() if a.device.startswith("cuda") and a.device != "cuda-emu" else None
    print(f"device {a.device}; theoretical memory bandwidth: "
          f"{f'{peak:.0f} GB/s' if peak else 'unknown'}")
    if a.device == "cuda-emu":
        print("(SIMT emulator on the CPU: times say nothing about a GPU)")
    results = {"device": a.device, "peak_gb_per_s": peak, "ops": [], "model": None}
    print(f"{'op':52s} {'us':>10s} {'GB/s':>9s} {'of peak':>8s} {'GFLOP/s':>9s}")
    for name, op, params in (TINY if a.tiny else FULL):
        try:
            r = _core.device_bench(a.device, op, params, a.iters)
        except gn.DeviceError as e:  # an op without a kernel yet
            print(f"{name:52s} {'-':>10s}  ({e})")
            results["ops"].append({"name": name, "op": op, "error": str(e)})
            continue
        frac = r["gb_per_s"] / peak if peak else float("nan")
        print(f"{name:52s} {r['seconds'] * 1e6:10.1f} {r['gb_per_s']:9.2f} {frac:8.2%} "
              f"{r['gflop_per_s']:9.2f}")
        results["ops"].append({"name": name, **r, "fraction_of_peak": frac if peak else None})
    if not a.no_model:
        try:
            m = bench_model(a.device, a.tiny, a.steps)
        except gn.DeviceError as e:
            print(f"model decode: not run ({e})")
            results["model"] = {"error": str(e)}
            m = None
    if not a.no_model and m is not None:
        frac = m["gb_per_s"] / peak if (peak and m["gb_per_s"]) else None
        print(f"model {m['preset']} decode: {m['tokens_per_s']:.2f} tokens/s, weights "
              f"{(m['weight_bytes'] or 0) / 1e9:.3f} GB/token -> "
              f"{m['gb_per_s'] or float('nan'):.2f} GB/s"
              + (f" = {frac:.1%} of peak" if frac else "")
              + f"; {m['graph_replays']} steps replayed from a captured graph")
        results["model"] = {**m, "fraction_of_peak": frac}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
