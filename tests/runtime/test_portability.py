"""The built package must run on any x86-64, choosing its kernels at run time.

Runs the installed package in a Python interpreter under qemu user-mode emulation of a CPU
without AVX (Nehalem): the import must pick the scalar kernels, a model must produce the same
logits as the scalar path on this machine, and asking for AVX2 must raise DeviceError.
Skipped when qemu-x86_64 is not installed (.ci/run installs Debian's qemu-user).
"""

import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

import gemma_native as gn

QEMU = shutil.which("qemu-x86_64")

pytestmark = pytest.mark.skipif(
    QEMU is None or platform.machine() != "x86_64",
    reason="needs qemu-x86_64 (Debian package qemu-user) on an x86-64 host")

SCRIPT = r"""
import json, sys
import numpy as np
import gemma_native as gn
info = gn.backend_info()
m = gn.random_model("recurrentgemma-tiny", dtype="bfloat16", seed=3)
logits = m.logits([2, 17, 99, 5, 300, 41])
try:
    gn.set_cpu_isa("avx2")
    err = None
except gn.DeviceError as e:
    err = str(e)
emu_same = None
for name in ("avx512emu", "avx512vnniemu"):  # the AVX-512 code over SIMDe runs here too
    if name in info["available_isas"]:
        gn.set_cpu_isa(name)
        emu = gn.random_model("recurrentgemma-tiny", dtype="bfloat16", seed=3).logits(
            [2, 17, 99, 5, 300, 41])
        same = bool(np.array_equal(emu.view(np.uint32), logits.view(np.uint32)))
        emu_same = same if emu_same is None else (emu_same and same)
np.save(sys.argv[1], logits)
print(json.dumps({"isa": info["cpu_isa"], "available": info["available_isas"],
                  "avx2": info["cpu_features"]["avx2"], "err": err, "emu_same": emu_same}))
"""


def test_runs_on_a_cpu_without_avx(tmp_path):
    out_file = str(tmp_path / "logits.npy")
    env = dict(os.environ)
    env.pop("GEMMA_NATIVE_CPU_ISA", None)
    # Under qemu the interpreter does not see the venv, so hand it the package locations.
    paths = {os.path.dirname(os.path.dirname(gn.__file__)), os.path.dirname(os.path.dirname(
        np.__file__)), sysconfig.get_paths()["purelib"]}
    env["PYTHONPATH"] = os.pathsep.join(sorted(paths))
    # numpy's bundled OpenBLAS picks its kernels by its own CPU detection, which under qemu on
    # some hosts (an AMD Zen 5) chose Haswell's and died on the first AVX instruction while
    # numpy imported; name the emulated core so that only our own dispatch is under test.
    env["OPENBLAS_CORETYPE"] = "Nehalem"
    exe = os.path.realpath(sys.executable)
    res = subprocess.run([QEMU, "-cpu", "Nehalem", exe, "-c", SCRIPT, out_file], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert info["avx2"] is False
    # Only the baseline runs natively; the emulated AVX-512 set (where built) runs anywhere and
    # must give the baseline's bits.
    assert info["isa"] == "scalar"
    assert [x for x in info["available"] if not x.endswith("emu")] == ["scalar"]
    if "avx512emu" in info["available"]:
        assert info["emu_same"] is True
    assert info["err"] and "does not support" in info["err"]
    emulated = np.load(out_file)
    try:
        gn.set_cpu_isa("scalar")
        native = gn.random_model("recurrentgemma-tiny", dtype="bfloat16", seed=3).logits(
            [2, 17, 99, 5, 300, 41])
    finally:
        gn.set_cpu_isa("auto")
    # Same kernels; libm may pick other (non-FMA) code paths under emulation.
    np.testing.assert_allclose(emulated, native, atol=1e-5, rtol=1e-5)
