"""The CUDA build: the installed module carries SASS for sm_80/86/89/90 and PTX for sm_90 (read
from its .nv_fatbin section), links no CUDA library dynamically (static cudart: it imports on
machines without a driver), and every kernel compiles with no register spills and no local
memory (ptxas resource usage for sm_80 and sm_90; the build itself fails on any, as it turns
-warn-spills / -warn-lmem-usage into errors).

With GEMMA_NATIVE_EXPECT_CUDA=1 (set by CI, whose machines have nvcc) a build without CUDA is a
failure; otherwise the checks that need a CUDA build skip with the reason."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

import gemma_native as gn
from gemma_native import _core

from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT
EXPECT = os.environ.get("GEMMA_NATIVE_EXPECT_CUDA") == "1"
CUDA = gn.backend_info()["cuda"]


def _need_cuda_build():
    if CUDA["compiled"]:
        return
    if EXPECT:
        pytest.fail("GEMMA_NATIVE_EXPECT_CUDA=1 but this build has no CUDA backend")
    pytest.skip("this build has no CUDA backend (no nvcc when it was built)")


def _fatbin_entries(so: Path):
    """(kind, sm) of every entry of the .nv_fatbin section: kind 1 = PTX, 2 = SASS (ELF)."""
    objcopy = shutil.which("objcopy")
    if objcopy is None:
        pytest.skip("objcopy (binutils) is not installed")
    raw = Path(os.environ.get("TMPDIR", "/tmp")) / f"gn_fatbin_{os.getpid()}.bin"
    subprocess.run([objcopy, "-O", "binary", "--only-section=.nv_fatbin", str(so), str(raw)],
                   check=True)
    data = raw.read_bytes()
    raw.unlink()
    entries, off = [], 0
    while off + 16 <= len(data):
        magic, _ver, hsize, fsize = struct.unpack_from("<IHHQ", data, off)
        if magic != 0xBA55ED50:
            off += 8
            continue
        e, end = off + hsize, off + hsize + fsize
        while e < end:
            kind, _ev, ehsize, padded = struct.unpack_from("<HHIQ", data, e)
            entries.append((kind, struct.unpack_from("<I", data, e + 28)[0]))
            e += ehsize + padded
        off = end
    return entries


def test_module_carries_the_four_targets_and_ptx():
    _need_cuda_build()
    entries = _fatbin_entries(Path(_core.__file__))
    sass = {sm for kind, sm in entries if kind == 2}
    ptx = {sm for kind, sm in entries if kind == 1}
    assert sass == {80, 86, 89, 90}, entries
    assert ptx == {90}, entries


def test_module_needs_no_cuda_library_at_run_time():
    _need_cuda_build()
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("readelf is not installed")
    dyn = subprocess.run([readelf, "-d", _core.__file__], capture_output=True, text=True).stdout
    needed = re.findall(r"\(NEEDED\).*\[(.+?)\]", dyn)
    assert needed and not any("cuda" in n.lower() for n in needed), needed


def test_a_machine_without_a_driver_is_told_so():
    """The static runtime reports a missing driver as 'CUDA driver version is insufficient',
    like a driver that is too old; the reason must say which it is."""
    _need_cuda_build()
    import ctypes

    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        pass
    else:
        pytest.skip("this machine has an NVIDIA driver (libcuda.so.1 loads)")
    assert not CUDA["available"]
    assert "no NVIDIA driver found" in CUDA["reason"], CUDA["reason"]
    assert "insufficient" not in CUDA["reason"]
    with pytest.raises(gn.DeviceError, match="no NVIDIA driver found"):
        gn.random_model("recurrentgemma-tiny", device="cuda")


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_no_kernel_spills_or_uses_local_memory(arch, tmp_path):
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc"
                                    if Path("/usr/local/cuda/bin/nvcc").exists() else None)
    if nvcc is None:
        if EXPECT:
            pytest.fail("GEMMA_NATIVE_EXPECT_CUDA=1 but nvcc is not found")
        pytest.skip("nvcc is not installed")
    if not (ROOT / "csrc").is_dir():
        pytest.skip("the C++ sources are not next to the tests")
    r = subprocess.run([nvcc, "-std=c++17", f"-arch={arch}", "--resource-usage",
                        f"-I{ROOT / 'csrc'}", f"-I{ROOT / 'csrc' / 'include'}", "-c",
                        str(ROOT / "csrc" / "ops" / "cuda" / "ops_cuda.cu"), "-o",
                        str(tmp_path / "ops_cuda.o")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    # "Function properties for <name>" then "<a> bytes stack frame, <b> bytes spill stores,
    # <c> bytes spill loads", for every kernel (and any function not inlined).
    props = re.findall(r"Function properties for (\w+)\s+(\d+) bytes stack frame, (\d+) bytes "
                       r"spill stores, (\d+) bytes spill loads", r.stderr)
    kernels = [p for p in props if "kernels_cuda" in p[0]]
    assert len(kernels) >= 15, r.stderr[-3000:]
    bad = [p for p in props if p[1:] != ("0", "0", "0")]
    assert not bad, bad
