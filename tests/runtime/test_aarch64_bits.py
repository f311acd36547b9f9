"""The aarch64 build gives the same bits as this x86-64 build.

Every kernel set computes in one arithmetic (csrc/ops/cpu/simd.h), so the scalar, NEON and
NEON+dot-product sets of an aarch64 build must reproduce the logits and seeded samples of the
x86 sets bit for bit.  The aarch64 build runs under qemu-aarch64 in the interpreter that
tools/aarch64_env.sh prepares; GEMMA_NATIVE_AARCH64_PYTHON names it (.ci/run sets it).  Without
it the test skips.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

import gemma_native as gn

ARM_PYTHON = os.environ.get("GEMMA_NATIVE_AARCH64_PYTHON")

pytestmark = pytest.mark.skipif(
    not ARM_PYTHON, reason="set GEMMA_NATIVE_AARCH64_PYTHON=DIR/python (tools/aarch64_env.sh DIR)")

CASES = [("recurrentgemma-tiny", dtype, act) for dtype, act in
         [("float32", "float32"), ("bfloat16", "float32"), ("float16", "float32"),
          ("int8", "int8"), ("int8", "float32")]]
CASES += [("gemma3-tiny", "bfloat16", "float32"), ("gemma3-tiny", "int8", "int8")]
IDS = [2, 17, 99, 5, 300, 41, 7, 123, 64, 9, 250, 3]

SCRIPT = r"""
import json, sys
import numpy as np
import gemma_native as gn
cases = json.loads(sys.argv[2])
ids = json.loads(sys.argv[3])
info = gn.backend_info()
out = {}
sets = list(info["available_isas"])
for isa in sets:
    gn.set_cpu_isa(isa)
    for name, dtype, act in cases:
        m = gn.random_model(name, dtype=dtype, activations=act, seed=11)
        key = f"{isa}|{name}|{dtype}|{act}"
        out[key + "|logits"] = m.logits(ids)
        toks = m.generate(ids[:4], max_tokens=6, temperature=0.9, top_p=0.95, seed=5)
        out[key + "|sample"] = np.asarray(toks.token_ids, dtype=np.int64)
np.savez(sys.argv[1], **out)
print(json.dumps({"sets": sets, "isa": info["cpu_isa"]}))
"""


def native(name, dtype, act):
    m = gn.random_model(name, dtype=dtype, activations=act, seed=11)
    logits = m.logits(IDS)
    toks = m.generate(IDS[:4], max_tokens=6, temperature=0.9, top_p=0.95, seed=5)
    return logits, np.asarray(toks.token_ids, dtype=np.int64)


def test_aarch64_sets_match_x86_bit_for_bit(tmp_path):
    assert os.path.exists(ARM_PYTHON), f"GEMMA_NATIVE_AARCH64_PYTHON={ARM_PYTHON} does not exist"
    out = tmp_path / "arm.npz"
    res = subprocess.run([ARM_PYTHON, "-c", SCRIPT, str(out), json.dumps(CASES), json.dumps(IDS)],
                         capture_output=True, text=True, timeout=900, cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert {"scalar", "neon", "neondot"} <= set(info["sets"]), info
    arm = np.load(out)
    gn.set_cpu_isa("scalar")
    try:
        for name, dtype, act in CASES:
            logits, toks = native(name, dtype, act)
            for isa in info["sets"]:
                key = f"{isa}|{name}|{dtype}|{act}"
                got = arm[key + "|logits"]
                same = np.array_equal(got.view(np.uint32), logits.view(np.uint32))
                assert same, (f"{key}: logits differ from x86 scalar at "
                              f"{int((got.view(np.uint32) != logits.view(np.uint32)).sum())} places")
                np.testing.assert_array_equal(arm[key + "|sample"], toks, err_msg=key)
    finally:
        gn.set_cpu_isa("auto")
