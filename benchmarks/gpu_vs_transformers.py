"""RecurrentGemma and Gemma 3 on a GPU: our CUDA backend against Hugging Face transformers'
model on the same GPU, with the same random weights: logit agreement, prefill and decode
tokens/s.

    python benchmarks/gpu_vs_transformers.py                        # RecurrentGemma 2B shape
    python benchmarks/gpu_vs_transformers.py --model gemma3         # Gemma 3 270M shape
    python benchmarks/gpu_vs_transformers.py --json out.json
    python benchmarks/gpu_vs_transformers.py --device cpu --preset tiny   # dry run, no GPU

The weights are drawn by transformers (seeded), rounded to bfloat16 and saved as a Hugging Face
folder that gemma_native loads.  Agreement: transformers in float32 (the bf16 values widened,
TF32 off) against ours (bf16 weights, fp32 math), last-position logits of a prompt inside the
attention window (past it transformers' RecurrentGemma sees one key fewer than the official
model).  Speed:
transformers in bfloat16, ours with bfloat16 weights; prefill = one forward of the prompt,
decode = one-token steps after a 16-token prompt, greedy; best of a few runs, synchronised.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

import numpy as np


def hf_model(model: str, preset: str):
    """(transformers model class, its config, the attention window) for a shape."""
    import transformers as tf

    if model == "recurrentgemma":
        if preset == "2b":  # transformers' defaults are the 2B shape
            cfg = tf.RecurrentGemmaConfig()
        else:
            cfg = tf.RecurrentGemmaConfig(
                num_hidden_layers=3, vocab_size=512, hidden_size=64, intermediate_size=192,
                num_attention_heads=4, lru_width=64, attention_window_size=32, conv1d_width=4,
                logits_soft_cap=30.0, block_types=["recurrent", "recurrent", "attention"])
        return tf.RecurrentGemmaForCausalLM, cfg, cfg.attention_window_size
    if preset == "2b":  # Gemma 3 270M
        cfg = tf.Gemma3TextConfig(vocab_size=262144, hidden_size=640, intermediate_size=2048,
                                  num_hidden_layers=18, num_attention_heads=4,
                                  num_key_value_heads=1, head_dim=256, sliding_window=512,
                                  query_pre_attn_scalar=256, max_position_embeddings=32768)
    else:
        cfg = tf.Gemma3TextConfig(vocab_size=512, hidden_size=64, intermediate_size=96,
                                  num_hidden_layers=7, num_attention_heads=4,
                                  num_key_value_heads=1, head_dim=32, sliding_window=32,
                                  max_position_embeddings=1024)
    return tf.Gemma3ForCausalLM, cfg, cfg.sliding_window


def timed(fn, sync, reps):
    best = float("inf")
    for _ in range(reps):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (a dry run)")
    ap.add_argument("--model", default="recurrentgemma", choices=["recurrentgemma", "gemma3"])
    ap.add_argument("--preset", default=None,
                    help="2b (default on cuda: RecurrentGemma 2B / Gemma 3 270M) or tiny")
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--decode-steps", type=int, default=32)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    preset = args.preset or ("2b" if args.device.startswith("cuda") else "tiny")

    import torch
    import gemma_native as gn

    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device visible to torch", file=sys.stderr)
        return 2
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    hf_cls, cfg, window = hf_model(args.model, preset)
    res = {"model": args.model, "preset": preset, "device": args.device,
           "torch": torch.__version__,
           "gemma_native": gn.__version__}
    if dev.type == "cuda":
        res["gpu"] = torch.cuda.get_device_name(0)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with dev:
        hf = hf_cls(cfg).to(torch.bfloat16).eval()
    if args.model == "gemma3":
        hf.config._attn_implementation = "eager"  # the reference attention (no sdpa masks)
    res["init_s"] = time.perf_counter() - t0
    T = min(args.prefill, window)
    rng = np.random.default_rng(0)
    prompt = [2] + rng.integers(3, cfg.vocab_size, T - 1).tolist()

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        hf.save_pretrained(tmp)
        ours = gn.load(tmp, device="cuda" if dev.type == "cuda" else "cpu")
        res["save_and_load_s"] = time.perf_counter() - t0

    # --- agreement: transformers in float32 (bf16 values widened) vs ours
    ids_t = torch.tensor([prompt], device=dev)
    with torch.no_grad():
        hf.float()
        ref = hf(ids_t, use_cache=False).logits[0, -1].float().cpu().numpy()
        hf.to(torch.bfloat16)
    got = ours.forward(prompt, ours.new_state())
    res["agreement"] = {
        "prompt_tokens": T,
        "max_abs_diff_last_logits": float(np.abs(got - ref).max()),
        "logit_scale": float(np.abs(ref).max()),
        "same_top1": bool(int(np.argmax(got)) == int(np.argmax(ref))),
    }

    # --- speed: prefill of T tokens
    def ours_prefill():
        ours.forward(prompt, ours.new_state())

    def hf_prefill():
        with torch.no_grad():
            hf(ids_t, use_cache=False)

    reps = 3
    res["prefill"] = {"tokens": T,
                      "ours_tok_s": T / timed(ours_prefill, sync, reps),
                      "transformers_bf16_tok_s": T / timed(hf_prefill, sync, reps)}

    # --- speed: decode, greedy one-token steps after a 16-token prompt
    n = args.decode_steps
    head = prompt[:16]

    def ours_decode():
        st = ours.new_state()
        logits = ours.forward(head, st)
        for _ in range(n):
            logits = ours.forward([int(np.argmax(logits))], st)

    def hf_decode():
        with torch.no_grad():
            hf.generate(torch.tensor([head], device=dev), max_new_tokens=n, min_new_tokens=n,
                        do_sample=False, pad_token_id=0)

    t_ours = timed(ours_decode, sync, 2) - timed(lambda: ours.forward(head, ours.new_state()),
                                                 sync, 2)
    t_hf = timed(hf_decode, sync, 2) - timed(hf_prefill_head(hf, head, dev), sync, 2)
    res["decode"] = {"steps": n, "ours_tok_s": n / max(t_ours, 1e-9),
                     "transformers_bf16_tok_s": n / max(t_hf, 1e-9)}
    for part in ("prefill", "decode"):
        r = res[part]
        r["ours_vs_transformers"] = r["ours_tok_s"] / r["transformers_bf16_tok_s"]
    print(json.dumps(res, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    ok = res["agreement"]["same_top1"] and (
        res["agreement"]["max_abs_diff_last_logits"] < 0.05 * max(1.0, res["agreement"]["logit_scale"]))
    return 0 if ok else 1


def hf_prefill_head(hf, head, dev):
    import torch

    def run():
        with torch.no_grad():
            hf.generate(torch.tensor([head], device=dev), max_new_tokens=1, do_sample=False,
                        pad_token_id=0)

    return run


if __name__ == "__main__":
    sys.exit(main())
