"""Prefill and decode speed of one model, next to this machine's memory bandwidth.

    python benchmarks/decode_speed.py random:recurrentgemma-2b
    python benchmarks/decode_speed.py path/to/model.gguf --prefill 256 --decode 32

Decode is bound by memory bandwidth: every token reads every weight byte once, so
tokens/s x weight bytes / bandwidth is the fraction of the ceiling reached.  The bandwidth is
measured here, in this process, with a large numpy copy (read + write; one thread).  Absolute
times on shared machines are noisy: compare ratios taken in the same run.
"""

import argparse
import time

import numpy as np

import gemma_native as gn


def copy_bandwidth(nbytes=1 << 30, reps=5):
    a = np.ones(nbytes // 8)
    b = np.empty_like(a)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return 2 * a.nbytes / best  # bytes read + written per second


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--prefill", type=int, default=128)
    ap.add_argument("--decode", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        gn.set_num_threads(args.threads)
    t = time.perf_counter()
    if args.model.startswith("random:"):
        model = gn.random_model(args.model[7:], dtype="bfloat16")
    else:
        model = gn.load(args.model)
    load_s = time.perf_counter() - t
    v = model.config.vocab_size
    ids = list(np.random.default_rng(0).integers(3, v, size=args.prefill))
    state = model.new_state()
    t = time.perf_counter()
    logits = model.forward(ids, state)
    prefill_s = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(args.decode):
        logits = model.forward([int(np.argmax(logits))], state)
    decode_s = time.perf_counter() - t
    bw = copy_bandwidth()
    tps = args.decode / decode_s
    wbytes = model.weights_nbytes
    print(f"model {model.path} ({model.weight_dtype}, {wbytes / 1e9:.2f} GB of weights), "
          f"{gn.backend_info()['cpu_isa']}, {gn.backend_info()['num_threads']} threads")
    print(f"load {load_s:.1f} s | prefill {args.prefill} tokens: {args.prefill / prefill_s:.1f} "
          f"tokens/s | decode: {tps:.2f} tokens/s")
    print(f"memory bandwidth (numpy copy, 1 thread): {bw / 1e9:.1f} GB/s -> decode ceiling "
          f"{bw / wbytes:.2f} tokens/s; reached {tps * wbytes / bw:.0%}")


if __name__ == "__main__":
    main()
