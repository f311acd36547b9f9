"""Per-token cost of choosing the next token, next to greedy (argmax), at a large vocabulary.

Times ops.sample on one row of V logits (default 262144, Gemma 3's vocabulary) for greedy,
temperature, top-k, top-p, min-p (via SamplingParams' logit processing) and combinations,
and the logit processing of the penalties; prints each as a ratio to greedy measured in the
same run (absolute times on shared machines are noise).  Where torch and transformers are
installed, the same settings through transformers' logits warpers (temperature, top-k, top-p,
min-p) and torch.multinomial are timed as a peer, in the same run.

    python benchmarks/sampling.py [--vocab 262144] [--repeat 50]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import gemma_native as gn
from gemma_native import _logits, ops


def best(fn, repeat):
    fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab", type=int, default=262144)
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    # a language-model-like row: a few likely ids, a long flat tail
    row = (rng.standard_normal((1, args.vocab)) * 2.0).astype(np.float32)
    row[0, rng.integers(0, args.vocab, 20)] += 12.0
    cases = {
        "greedy": dict(temperature=0.0),
        "temperature 0.8": dict(temperature=0.8),
        "top_k 40": dict(temperature=0.8, top_k=40),
        "top_p 0.9": dict(temperature=0.8, top_p=0.9),
        "top_k 40 + top_p 0.9": dict(temperature=0.8, top_k=40, top_p=0.9),
        "min_p 0.05 + top_p 0.9": dict(temperature=0.8, top_p=0.9, min_p=0.05),
        "penalties + logit_bias + top_p 0.9": dict(
            temperature=0.8, top_p=0.9, presence_penalty=0.5, frequency_penalty=0.3,
            repetition_penalty=1.1, logit_bias={5: 2.0}),
    }
    history = _logits.TokenHistory(rng.integers(0, args.vocab, 200))
    for t in rng.integers(0, args.vocab, 100).tolist():
        history.add(t)
    times = {}
    for name, kw in cases.items():
        p = gn.SamplingParams(**kw)

        def step(p=p):
            x = row
            if _logits.needs_processing(p):
                x = _logits.process(row[0], p, history)[None]
            return ops.sample(x, p.temperature, p.top_k, p.top_p, 1, 0)

        times[name] = best(step, args.repeat)
    peer = transformers_times(row, cases, args.repeat)
    print(f"vocab {args.vocab}: per-token sampling cost (best of {args.repeat})")
    head = f"  {'':<36} {'ours':>11}  {'vs greedy':>9}"
    if peer:
        head += f"  {'transformers':>12}  {'ours vs it':>10}"
    print(head)
    for name, t in times.items():
        line = f"  {name:<36} {t * 1e3:8.3f} ms  {t / times['greedy']:8.1f}x"
        if name in peer:
            line += f"  {peer[name] * 1e3:9.3f} ms  {peer[name] / t:9.1f}x"
        print(line)
    if peer:
        print("  (ours vs it: transformers' time / ours, > 1 means ours is faster)")


def transformers_times(row, cases, repeat):
    """The peer: transformers' warpers + softmax + torch.multinomial on the same row."""
    try:
        import torch
        from transformers import generation as g
    except Exception:  # noqa: BLE001 - the peer is optional
        return {}
    x = torch.from_numpy(row.copy())
    out = {}
    for name, kw in cases.items():
        if set(kw) - {"temperature", "top_k", "top_p", "min_p"}:
            continue
        if kw.get("temperature", 1.0) == 0.0:
            out[name] = best(lambda: torch.argmax(x, dim=-1), repeat)
            continue
        warpers = [g.TemperatureLogitsWarper(kw["temperature"])]
        if kw.get("top_k"):
            warpers.append(g.TopKLogitsWarper(kw["top_k"]))
        if kw.get("top_p"):
            warpers.append(g.TopPLogitsWarper(kw["top_p"]))
        if kw.get("min_p"):
            warpers.append(g.MinPLogitsWarper(kw["min_p"]))

        def step(warpers=warpers):
            s = x
            for w in warpers:
                s = w(None, s)
            return torch.multinomial(torch.softmax(s, dim=-1), 1)

        out[name] = best(step, repeat)
    return out


if __name__ == "__main__":
    main()
