"""CPU feature detection of our own (csrc/ops/cpu/cpu_features.cc): CPUID + XGETBV on x86-64,
the kernel's hwcaps on aarch64, instead of the compiler runtime's __builtin_cpu_supports (which
some wheel toolchains stub out, and which knows no AMX in GCC 12).

The decoding is checked on made-up register values (CPUs and operating systems we do not have),
and this machine's answer against Linux's own reading of the same CPU in /proc/cpuinfo.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

import gemma_native as gn
from gemma_native import _core

X86_NAMES = ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512bf16",
             "avx512vnni", "amx_tile", "amx_bf16", "amx_int8"]
ARM_NAMES = ["neon", "dotprod", "i8mm", "bf16"]
# Our names -> the flag names Linux prints in /proc/cpuinfo.
LINUX_X86 = {"avx512bf16": "avx512_bf16", "avx512vnni": "avx512_vnni"}
LINUX_ARM = {"neon": "asimd", "dotprod": "asimddp"}

# Register bits (Intel SDM vol. 2, CPUID; XCR0 state components).
FMA, OSXSAVE, AVX, F16C = 1 << 12, 1 << 27, 1 << 28, 1 << 29
AVX2, AVX512F, AVX512DQ, AVX512BW, AVX512VL = 1 << 5, 1 << 16, 1 << 17, 1 << 30, 1 << 31
VNNI = 1 << 11
AMX_BF16, AMX_TILE, AMX_INT8 = 1 << 22, 1 << 24, 1 << 25
AVX512_BF16 = 1 << 5
XCR0_AVX = 0x7  # x87, SSE, AVX
XCR0_AVX512 = 0xE0  # opmask, ZMM_Hi256, Hi16_ZMM
XCR0_AMX = 0x60000  # XTILECFG, XTILEDATA

LEAF1 = FMA | OSXSAVE | AVX | F16C
LEAF7_AVX512 = AVX2 | AVX512F | AVX512DQ | AVX512BW | AVX512VL


def decode(leaf1=0, ebx=0, ecx=0, edx=0, eax71=0, xcr0=0):
    return _core.decode_x86_cpuid(leaf1, ebx, ecx, edx, eax71, xcr0)


def on(features):
    return sorted(k for k, v in features.items() if v)


def test_x86_decoding_of_made_up_cpus():
    assert list(decode()) == X86_NAMES
    assert on(decode()) == []
    # A Haswell-class CPU under an OS that saves the YMM state.
    assert on(decode(LEAF1, AVX2, xcr0=XCR0_AVX)) == ["avx2", "f16c", "fma"]
    # The same CPU under an OS that does not (XCR0 without the AVX state): nothing usable.
    assert on(decode(LEAF1, AVX2, xcr0=0x3)) == []
    # OSXSAVE clear: XCR0 cannot be trusted, so no AVX at all.
    assert on(decode(LEAF1 & ~OSXSAVE, AVX2, xcr0=XCR0_AVX)) == []
    # AVX-512 CPU, OS without the ZMM state (e.g. a hypervisor masking it): AVX2 only.
    assert on(decode(LEAF1, LEAF7_AVX512, VNNI, xcr0=XCR0_AVX)) == ["avx2", "f16c", "fma"]
    # AMD Zen 4: AVX-512 with VNNI and BF16, no AMX.
    zen4 = decode(LEAF1, LEAF7_AVX512, VNNI, eax71=AVX512_BF16, xcr0=XCR0_AVX | XCR0_AVX512)
    assert on(zen4) == sorted(["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                               "avx512dq", "avx512bf16", "avx512vnni"])
    # Sapphire Rapids with and without the tile state enabled in XCR0.
    spr = (LEAF1, LEAF7_AVX512, VNNI, AMX_BF16 | AMX_TILE | AMX_INT8, AVX512_BF16)
    assert on(decode(*spr, xcr0=XCR0_AVX | XCR0_AVX512 | XCR0_AMX)) == sorted(X86_NAMES)
    no_tiles = on(decode(*spr, xcr0=XCR0_AVX | XCR0_AVX512))
    assert "amx_tile" not in no_tiles and "amx_bf16" not in no_tiles and "avx512f" in no_tiles
    # AMX-BF16 without AMX-TILE is not usable.
    assert not decode(LEAF1, LEAF7_AVX512, 0, AMX_BF16, 0,
                      XCR0_AVX | XCR0_AVX512 | XCR0_AMX)["amx_bf16"]
    # AVX512-BF16 needs AVX512F.
    assert not decode(LEAF1, AVX2, eax71=AVX512_BF16, xcr0=XCR0_AVX | XCR0_AVX512)["avx512bf16"]


def test_arm_decoding_of_made_up_cpus():
    assert list(_core.decode_arm_hwcaps(0, 0)) == ARM_NAMES
    asimd, asimddp, i8mm, bf16 = 1 << 1, 1 << 20, 1 << 13, 1 << 14
    assert on(_core.decode_arm_hwcaps(asimd, 0)) == ["neon"]
    assert on(_core.decode_arm_hwcaps(asimd | asimddp, i8mm | bf16)) == sorted(ARM_NAMES)
    assert on(_core.decode_arm_hwcaps(asimddp, i8mm)) == []  # no NEON, no extensions


def linux_flags():
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return None


def test_this_machine_matches_linux():
    feats = gn.backend_info()["cpu_features"]
    machine = platform.machine()
    if machine == "x86_64":
        assert list(feats) == X86_NAMES
        table = LINUX_X86
    elif machine == "aarch64":
        assert list(feats) == ARM_NAMES
        table = LINUX_ARM
    else:
        pytest.skip(f"no feature detection on {machine}")
    flags = linux_flags()
    if flags is None or (machine == "aarch64" and "asimd" not in flags):
        # qemu-user shows the host's /proc/cpuinfo to an emulated aarch64 process.
        pytest.skip("/proc/cpuinfo does not describe this CPU")
    for name, value in feats.items():
        assert value == (table.get(name, name) in flags), (name, value)


def test_kernel_sets_follow_the_features():
    info = gn.backend_info()
    feats, avail = info["cpu_features"], set(info["available_isas"])
    assert "scalar" in avail
    if "avx2" in info["compiled_isas"]:
        assert ("avx2" in avail) == (feats["avx2"] and feats["fma"] and feats["f16c"])
    if "avx512" in info["compiled_isas"]:
        want = feats["avx2"] and all(feats[f] for f in ("avx512f", "avx512bw", "avx512vl",
                                                        "avx512dq"))
        assert ("avx512" in avail) == want
    if "neon" in info["compiled_isas"]:
        assert ("neon" in avail) == feats["neon"]
        assert ("neondot" in avail) == (feats["neon"] and feats["dotprod"])
    # "auto" picks the last (best) native set that runs here.
    native = [s for s in info["available_isas"] if not s.endswith("emu")]
    gn.set_cpu_isa("auto")
    assert gn.backend_info()["cpu_isa"] == native[-1]


def words(vendor: str):
    """CPUID.0's EBX, EDX, ECX for a 12-character vendor string (4 bytes each, little-endian)."""
    raw = vendor.encode()
    return tuple(int.from_bytes(raw[i:i + 4], "little") for i in (0, 4, 8))


def leaf1_eax(family: int, model: int, stepping: int = 1) -> int:
    """CPUID.1:EAX as a vendor encodes a display family and model (family >= 15 in the
    extended family field, the model's high nibble in the extended model field)."""
    base = min(family, 15)
    return (((family - base) << 20) | ((model >> 4) << 16) | (base << 8) | ((model & 15) << 4)
            | stepping)


def test_x86_model_decoding():
    # Values as real CPUs report them: AMD EPYC Zen 4 (Genoa) 00A10F11, Zen 5 (Turin) 00B00F21,
    # Intel Xeon Sapphire Rapids 000806F8; family 6's model takes the extended field too.
    for vendor, eax, family, model in (("AuthenticAMD", 0x00A10F11, 0x19, 0x11),
                                       ("AuthenticAMD", 0x00B00F21, 0x1A, 0x02),
                                       ("GenuineIntel", 0x000806F8, 6, 0x8F),
                                       ("GenuineIntel", 0x00000F29, 15, 0x02)):
        assert _core.decode_x86_model(*words(vendor), eax) == (vendor, family, model)
        assert leaf1_eax(family, model, eax & 15) == eax
    # a family below 15 other than 6 leaves the extended model out
    assert _core.decode_x86_model(*words("AuthenticAMD"), 0x00010500)[1:] == (5, 0)
    assert _core.decode_x86_model(0, 0, 0, 0) == ("", 0, 0)


def test_int8_prefetch_distance_per_cpu():
    """Zen 4 models: no prefetch for one activation row, 16 KiB for more; every other CPU (Zen 3
    and Zen 5 of the neighbouring models and families, Intel) the 4 KiB default."""
    zen4 = [0x10, 0x11, 0x1F, 0x61, 0x74, 0x7F, 0xA0, 0xAF]
    others = [("AuthenticAMD", 0x19, m) for m in (0x01, 0x21, 0x44, 0x50, 0x80, 0xB0)] + [
        ("AuthenticAMD", 0x1A, m) for m in (0x02, 0x11, 0x44)] + [
        ("AuthenticAMD", 0x17, 0x31), ("GenuineIntel", 6, 0x8F), ("GenuineIntel", 0x19, 0x11),
        ("", 0, 0)]
    for m in zen4:
        assert [_core.int8_prefetch_bytes_for("AuthenticAMD", 0x19, m, r)
                for r in (1, 2, 4, 12)] == [0, 16384, 16384, 16384], hex(m)
    for vendor, family, model in others:
        for rows in (1, 4):
            assert _core.int8_prefetch_bytes_for(vendor, family, model, rows) == 4096, (
                vendor, family, hex(model), rows)
    # the same from the CPUID words such CPUs report, through the decoding
    for vendor, family, model in [("AuthenticAMD", 0x19, m) for m in zen4] + others[:-1]:
        cpu = _core.decode_x86_model(*words(vendor), leaf1_eax(family, model))
        assert cpu == (vendor, family, model)
        assert _core.int8_prefetch_bytes_for(*cpu, 4) == (16384 if model in zen4 and
                                                          family == 0x19 and
                                                          vendor == "AuthenticAMD" else 4096)
    info = gn.backend_info()
    cpu = info["cpu_model"]
    assert set(cpu) == {"vendor", "family", "model"}
    if platform.machine() == "x86_64":
        assert len(cpu["vendor"]) == 12 and cpu["family"] > 0
    if "GEMMA_NATIVE_INT8_PREFETCH" not in os.environ:
        assert info["int8_prefetch_bytes"] == {
            key: _core.int8_prefetch_bytes_for(cpu["vendor"], cpu["family"], cpu["model"], rows)
            for key, rows in (("one_row", 1), ("more_rows", 4))}


_LINEAR_BITS = """
import hashlib, numpy as np, gemma_native as gn
from gemma_native import ops
rng = np.random.default_rng(5)
w = ops.quantize_int8(rng.standard_normal((96, 320), dtype=np.float32))
h = hashlib.sha256()
for n in (1, 2, 3, 5, 12, 13):
    h.update(ops.linear(rng.standard_normal((n, 320), dtype=np.float32), w).tobytes())
pf = gn.backend_info()["int8_prefetch_bytes"]
print(pf["one_row"], pf["more_rows"], h.hexdigest())
"""


def _linear_bits(setting):
    env = dict(os.environ)
    env.pop("GEMMA_NATIVE_INT8_PREFETCH", None)
    if setting is not None:
        env["GEMMA_NATIVE_INT8_PREFETCH"] = setting
    return subprocess.run([sys.executable, "-c", _LINEAR_BITS], env=env, capture_output=True,
                          text=True, timeout=120)


def test_int8_prefetch_setting_changes_no_bits_and_bad_values_are_refused():
    """GEMMA_NATIVE_INT8_PREFETCH replaces the distance (0: the decode tiles without
    prefetch); the Q8_0R16 products are the same bits at every distance.  Anything but a byte
    count in [0, 2^20] is a clean error at first use."""
    runs = {s: _linear_bits(s) for s in (None, "0", "64", "16384", "1048576")}
    for s, r in runs.items():
        assert r.returncode == 0, (s, r.stderr)
    got = {s: r.stdout.split() for s, r in runs.items()}
    for s in ("0", "64", "16384", "1048576"):
        assert got[s][:2] == [s, s]  # every row count
    assert len({v[2] for v in got.values()}) == 1, got
    for bad in ("abc", "-1", "1048577", "16k", " 4096"):
        r = _linear_bits(bad)
        assert r.returncode != 0 and "GEMMA_NATIVE_INT8_PREFETCH" in r.stderr, (bad, r.stderr)
        assert "InvalidArgumentError" in r.stderr and "Segmentation" not in r.stderr
