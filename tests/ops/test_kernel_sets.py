"""Every CPU kernel set (scalar, AVX2, AVX-512, the AVX-512 code emulated through SIMDe, and NEON
on aarch64) gives bit-identical results.

The kernels share one arithmetic (csrc/ops/cpu/simd.h): every float reduction runs over the same
8 lanes in the same order, fma rounds once in every set, the lanes are added in one fixed tree,
and the transcendental functions are the project's own (csrc/include/gemma_native/math.h), not
the C library's.  So the same input gives the same bits on every set -- and, since nothing
depends on the CPU or the C library, on every machine.  These tests compare the raw bits (NaN
payloads and the sign of zero included) of every op and of whole models across all the sets
this CPU runs; on a CPU with one set only they skip.  The emulated set ("avx512emu": the same
AVX-512 source compiled over SIMDe's portable intrinsics, with fma kept to one rounding) runs on
every CPU, so the AVX-512 code paths are checked here even where the CPU has no AVX-512; CI sets
GEMMA_NATIVE_EXPECT_AVX512EMU=1 so that a build without it fails instead of skipping.

The accuracy of the shared math functions is checked here too, against float64 numpy: within
one unit in the last place of the float result everywhere.
"""

from __future__ import annotations

import os
import platform

import numpy as np
import pytest

import gemma_native as gn
from gemma_native import ops
from gemma_native._dtypes import pack_q8_0r16
from gemma_native.loading.gguf import block_size_of

from tests.helpers.arrays import rnd, weight_arg

SETS = list(gn.backend_info()["available_isas"])
needs_two = pytest.mark.skipif(len(SETS) < 2, reason=f"one CPU kernel set runs here: {SETS}")


def on_each_set(fn):
    out = {}
    for name in SETS:
        gn.set_cpu_isa(name)
        out[name] = fn()
    gn.set_cpu_isa("auto")
    return out


def bits(a):
    a = np.ascontiguousarray(a)
    return a.view(np.uint32) if a.dtype == np.float32 else a


def assert_identical(results, what):
    names = list(results)
    first = results[names[0]]
    first = first if isinstance(first, tuple) else (first,)
    for other in names[1:]:
        got = results[other]
        got = got if isinstance(got, tuple) else (got,)
        for i, (a, b) in enumerate(zip(first, got)):
            a, b = np.asarray(a), np.asarray(b)
            assert a.shape == b.shape, f"{what}: output {i} shape {b.shape} vs {a.shape}"
            diff = bits(a) != bits(b)
            if diff.any():
                j = np.unravel_index(int(np.argmax(diff)), a.shape)
                raise AssertionError(
                    f"{what}: {other} differs from {names[0]} in output {i} at "
                    f"{int(diff.sum())} of {a.size} elements; first at {j}: "
                    f"{b[j]!r} vs {a[j]!r}")


@pytest.mark.parametrize("name", ["avx512emu", "avx512vnniemu"])
def test_emulated_avx512_set(name):
    """The emulated AVX-512 sets are built where CI expects them, run on any CPU, and "auto"
    never picks them."""
    info = gn.backend_info()
    if name not in info["compiled_isas"]:
        assert os.environ.get("GEMMA_NATIVE_EXPECT_AVX512EMU") != "1", (
            f"GEMMA_NATIVE_EXPECT_AVX512EMU=1 but the build has no {name} set: were the "
            "SIMDe headers found (GEMMA_NATIVE_SIMDE_INCLUDE)?")
        pytest.skip("built without the SIMDe headers: no emulated AVX-512 sets")
    assert name in info["available_isas"]
    gn.set_cpu_isa("auto")
    assert not gn.backend_info()["cpu_isa"].endswith("emu")
    gn.set_cpu_isa(name)
    try:
        assert gn.backend_info()["cpu_isa"] == name
    finally:
        gn.set_cpu_isa("auto")



def test_neon_sets():
    """On aarch64 the NEON sets are built and "auto" picks the best that runs (neondot where the
    CPU has the dot-product extension); tools/test_aarch64.sh sets GEMMA_NATIVE_EXPECT_NEON=1 so
    that a build without them fails instead of skipping."""
    info = gn.backend_info()
    if platform.machine() != "aarch64":
        assert os.environ.get("GEMMA_NATIVE_EXPECT_NEON") != "1", "NEON expected on aarch64 only"
        assert "neon" not in info["compiled_isas"]
        pytest.skip("not an aarch64 machine")
    if os.environ.get("GEMMA_NATIVE_EXPECT_NEON") == "1":
        assert {"neon", "neondot"} <= set(info["compiled_isas"]), info["compiled_isas"]
    assert "neon" in info["available_isas"]
    gn.set_cpu_isa("auto")
    best = "neondot" if info["cpu_features"]["dotprod"] else "neon"
    assert gn.backend_info()["cpu_isa"] == best


SPECIAL = np.array([0.0, -0.0, 1e-30, -1e-30, 1e-40, 3e38, -3e38, np.inf, -np.inf, np.nan,
                    88.7, 89.0, -103.9, -104.0, 9.0, 19.99, 20.0, 20.01, 1e-4, 0.0624, 0.0626],
                   np.float32)

# Sizes with vector bodies and every tail length (the lanes are 8), on both sides of the GEMV /
# GEMM switch (16 rows).
KS = [1, 7, 8, 9, 16, 23, 100, 263]
NS = [1, 2, 3, 4, 5, 15, 16, 17, 40]


# ---------------------------------------------------------------------------------------------
# ops
# ---------------------------------------------------------------------------------------------


@needs_two
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_linear(dtype):
    rng = np.random.default_rng(1)
    for k in KS:
        w = weight_arg(rnd(rng, 37, k), dtype)
        bias = rnd(rng, 37)
        for n in NS:
            x = rnd(rng, n, k)
            assert_identical(on_each_set(lambda: ops.linear(x, w, bias)), f"linear {dtype} "
                             f"n={n} k={k}")


@needs_two
def test_linear_gemm_blocking():
    """Shapes that cross every blocking boundary of the packed GEMM (csrc/ops/cpu/gemm.h): several
    K blocks with a tail, several x blocks and row chunks (a partial last one), several W tasks
    with a partial last sliver; the sets' GEMMs use different register tiles and must still agree
    bit for bit."""
    rng = np.random.default_rng(2)
    w = weight_arg(rnd(rng, 75, 611), "bfloat16")
    bias = rnd(rng, 75)
    x = rnd(rng, 1100, 611)
    assert_identical(on_each_set(lambda: ops.linear(x, w, bias)), "linear gemm blocking")


def q_blocks(kind, rows, cols, rng):
    """Random blocks with modest fp16 scales (any bit pattern is a valid block)."""
    per, nbytes = block_size_of(kind)
    raw = rng.integers(0, 256, size=(rows, cols // per, nbytes), dtype=np.uint8)
    offsets = {"Q8_0": [0], "Q4_0": [0], "Q5_0": [0], "Q4_K": [0, 2], "Q6_K": [208]}[kind]
    for off in offsets:
        sc = rng.uniform(0.001, 0.05, size=raw.shape[:2]).astype(np.float16)
        raw[:, :, off:off + 2] = sc.view(np.uint8).reshape(raw.shape[0], raw.shape[1], 2)
    return raw.reshape(rows, -1)


@needs_two
@pytest.mark.parametrize("kind", ["Q8_0", "Q4_0", "Q5_0", "Q4_K", "Q6_K"])
@pytest.mark.parametrize("float_activations", [False, True], ids=["int8_act", "f32_act"])
def test_quantized_linear(kind, float_activations):
    rng = np.random.default_rng(2)
    # 544 columns: an odd count of 32-value blocks (the AVX-512 decode takes blocks in pairs)
    for cols in (512, 544) if block_size_of(kind)[0] == 32 else (512,):
        w = (q_blocks(kind, 21, cols, rng), kind)
        for n in (1, 3, 4, 5, 17, 20):
            x = rnd(rng, n, cols, scale=3.0)
            x[0, :7] = [0.0, -0.0, 1e-30, 65504.0, -1e5, 0.5, -0.5]
            assert_identical(on_each_set(
                lambda: ops.linear(x, w, float_activations=float_activations)),
                f"{kind} n={n} cols={cols} float_activations={float_activations}")


@needs_two
@pytest.mark.parametrize("kind", ["Q8_0", "Q4_0", "Q5_0"])
def test_quantized_decode_long_rows(kind):
    """Decode (< 4 activation rows) on AVX2 takes rows shorter than 4 KiB one at a time and
    longer ones in tiles of 4; the AVX-512 sets take every row alone, two blocks per step
    (qlinear.cc).  8224 columns (257 blocks, an odd count) make every 32-value type's rows longer
    than 4 KiB.  The tiles must give each row what it gets alone, on every set."""
    rng = np.random.default_rng(3)
    raw = q_blocks(kind, 9, 8224, rng)
    for n in (1, 3):
        x = rnd(rng, n, 8224, scale=3.0)
        got = on_each_set(lambda: ops.linear(x, (raw, kind)))
        assert_identical(got, f"{kind} n={n} long rows")
        alone = np.concatenate([ops.linear(x, (raw[m:m + 1], kind)) for m in range(9)], axis=1)
        np.testing.assert_array_equal(next(iter(got.values())), alone)


@needs_two
def test_q8_0r16_linear():
    """dtype="int8"'s own format (Q8_0R16: whole-block int32 sums, q8_0r16.cc): one and several
    16-row groups and blocks, every tile height 1-12 and partial last tiles, with a bias; 48 and
    160 rows give threads odd and even group counts (VNNI takes groups in pairs).  Random bytes
    include the weight -128, the one value whose |w| does not fit a signed byte."""
    rng = np.random.default_rng(5)
    for rows, cols in ((16, 32), (48, 544), (160, 64)):
        w = (pack_q8_0r16(q_blocks("Q8_0", rows, cols, rng)), "Q8_0R16")
        bias = rnd(rng, rows)
        for n in (1, 2, 3, 4, 5, 7, 11, 12, 13, 25, 40):
            x = rnd(rng, n, cols, scale=3.0)
            x[0, :7] = [0.0, -0.0, 1e-30, 65504.0, -1e5, 0.5, -0.5]
            assert_identical(on_each_set(lambda: ops.linear(x, w, bias)),
                             f"Q8_0R16 rows={rows} cols={cols} n={n}")


@needs_two
def test_quantize_activations():
    from gemma_native import _core

    rng = np.random.default_rng(3)
    x = rnd(rng, 9, 512, scale=10.0)
    x[1, :32] = 0.0
    x[2, 3] = np.nan
    x[3, 5] = np.inf
    for block in (32, 256):
        assert_identical(on_each_set(lambda: _core.quantize_activations(x, block)),
                         f"quantize_activations {block}")


@needs_two
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_embedding_rmsnorm_block_diag(dtype):
    rng = np.random.default_rng(4)
    for d in KS:
        table = weight_arg(rnd(rng, 11, d), dtype)
        ids = rng.integers(0, 11, size=6)
        assert_identical(on_each_set(lambda: ops.embedding(table, ids, 1.7)), f"embedding {d}")
        x = rnd(rng, 5, d, scale=3.0)
        wn = rnd(rng, d)
        assert_identical(on_each_set(lambda: ops.rmsnorm(x, wn, 1e-6, 1.0)), f"rmsnorm {d}")
    for blocks, bs in ((1, 7), (3, 8), (2, 33), (4, 64), (2, 72), (2, 160)):  # 160: tiles, then the rest
        w = weight_arg(rnd(rng, blocks, bs, bs), dtype)
        b = rnd(rng, blocks, bs)
        x = rnd(rng, 13, blocks * bs)  # whole and partial groups of rows (2 or 6 per tile)
        outs = on_each_set(lambda: ops.block_diag_linear(x, w, b))
        assert_identical(outs, f"block_diag_linear {blocks}x{bs}")
        # batch invariance: a row alone (decode) equals the row in a batch (prefill)
        single = np.concatenate([ops.block_diag_linear(x[i:i + 1], w, b) for i in range(13)])
        np.testing.assert_array_equal(single, next(iter(outs.values())))
        # and every partial tile (decode batches 2..5 share one tile of rows)
        for n in (2, 3, 4, 5, 11):
            for name, out in on_each_set(lambda: ops.block_diag_linear(x[:n], w, b)).items():
                np.testing.assert_array_equal(out, single[:n], err_msg=f"{name}, {n} rows")


@needs_two
def test_recurrent_ops():
    rng = np.random.default_rng(5)
    for channels in (1, 9, 70):
        x = rnd(rng, 2, 13, channels)
        pos = np.tile(np.arange(13, dtype=np.int32), (2, 1))
        pos[1, 6] = 0  # a document start inside the chunk
        w = rnd(rng, 4, channels)
        bias = rnd(rng, channels)

        def conv():
            state = rnd(np.random.default_rng(6), 2, 3, channels)
            return ops.conv1d(x, pos, w, bias, state), state

        assert_identical(on_each_set(conv), f"conv1d {channels}")
        gx, ga = rnd(rng, 2, 13, channels, scale=4.0), rnd(rng, 2, 13, channels, scale=4.0)
        gx.reshape(-1)[:SPECIAL.size] = SPECIAL[: gx.size]
        a_param = rnd(rng, channels, scale=3.0)

        def scan():
            h = rnd(np.random.default_rng(7), 2, channels)
            return ops.rglru_scan(x, gx, ga, a_param, pos, h), h

        assert_identical(on_each_set(scan), f"rglru_scan {channels}")


@needs_two
def test_rope():
    rng = np.random.default_rng(8)
    for head_dim, rot in ((4, 4), (12, 6), (36, 36), (256, 256), (256, 128)):
        x = rnd(rng, 9, 3, head_dim)
        pos = np.array([0, 1, 7, 4095, 65537, 100000, 2**20 + 3, 2**24 + 1, 2**31 - 1], np.int32)
        for base, factor in ((10000.0, 1.0), (1e6, 8.0), (500.0, 1.0)):
            assert_identical(on_each_set(lambda: ops.rope(x, pos, rot, base, factor)),
                             f"rope hd={head_dim} rot={rot} base={base}")


@needs_two
@pytest.mark.parametrize("softcap", [0.0, 2.5])
def test_attention(softcap):
    rng = np.random.default_rng(9)
    # (10, 1, 40): Griffin's 10 heads on one K/V head (head blocks 4 + 4 + 2 on AVX-512) and a
    # head_dim with one 8-lane vector after the 16-float steps (it goes into the first chain).
    for heads, kv, hd in ((1, 1, 7), (4, 1, 33), (4, 2, 16), (8, 2, 256), (10, 1, 40)):
        q, k, v = rnd(rng, 2, 11, heads, hd), rnd(rng, 2, 11, kv, hd), rnd(rng, 2, 11, kv, hd)
        pos = np.tile(np.arange(5, 16, dtype=np.int32), (2, 1))

        def run():
            kc = rnd(np.random.default_rng(10), 2, 6, kv, hd)
            vc = rnd(np.random.default_rng(11), 2, 6, kv, hd)
            out = ops.attention(q, k, v, pos, 4, hd ** -0.5, softcap, kc, vc,
                                np.array([5, 5], np.int64))
            return out, kc, vc

        assert_identical(on_each_set(run), f"attention H={heads} KV={kv} hd={hd}")


@needs_two
def test_elementwise_ops_on_special_values():
    rng = np.random.default_rng(12)
    x = np.concatenate([SPECIAL, rnd(rng, 2000, scale=8.0)])
    up = np.concatenate([SPECIAL[::-1], rnd(rng, 2000)])
    assert_identical(on_each_set(lambda: ops.geglu(x, up)), "geglu")
    for cap in (1.0, 30.0, 50.0):
        assert_identical(on_each_set(lambda: ops.softcap(x, cap)), f"softcap {cap}")
    assert_identical(on_each_set(lambda: ops.add(x, up)), "add")


# ---------------------------------------------------------------------------------------------
# whole models
# ---------------------------------------------------------------------------------------------

MODELS = [("recurrentgemma-tiny", "float32"), ("recurrentgemma-tiny", "bfloat16"),
          ("recurrentgemma-tiny", "float16"), ("recurrentgemma-tiny", "int8"),
          ("gemma-tiny", "float32"), ("gemma2-tiny", "bfloat16"), ("gemma3-tiny", "float16"),
          ("gemma3-tiny", "int8")]


@needs_two
@pytest.mark.parametrize("preset,dtype", MODELS, ids=[f"{p}-{d}" for p, d in MODELS])
def test_random_models(preset, dtype):
    model = gn.random_model(preset, dtype=dtype, seed=3)
    ids = np.random.default_rng(13).integers(0, model.config.vocab_size, size=(2, 41))

    def run():
        logits = model.logits(ids)  # batch of two, every position (the GEMM path)
        state = model.new_state()
        last = model.forward(ids[0, :20], state)  # chunked prefill then decode (GEMV)
        steps = [model.forward([int(t)], state) for t in ids[0, 20:24]]
        return (logits, last, *steps)

    assert_identical(on_each_set(run), f"{preset} {dtype}")


@needs_two
@pytest.mark.parametrize("activations", ["int8", "float32"])
def test_gemma3_270m_gguf(demo_gguf, activations):
    """The real Gemma 3 270M (Q4_K_M with Q5_0/Q6_K/Q8_0 tensors), both activation modes."""
    model = gn.load(demo_gguf, activations=activations)
    ids = model.encode("The kernels of every instruction set agree, bit for bit: ")
    if activations == "float32":
        ids = ids[:8]  # the scalar set widens every weight: keep it short

    def run():
        return model.logits(ids), model.generate(ids, max_tokens=4, stop_token_ids=()).token_ids

    res = on_each_set(run)
    assert_identical({k: v[0] for k, v in res.items()}, f"270M {activations}")
    assert len({tuple(v[1]) for v in res.values()}) == 1, res


# ---------------------------------------------------------------------------------------------
# the shared math functions: within one float ulp of float64 numpy
# ---------------------------------------------------------------------------------------------


def _within_one_ulp(got, want64, what):
    got = np.asarray(got, np.float32)
    want32 = want64.astype(np.float32)
    finite = np.isfinite(want32)
    assert np.array_equal(np.isnan(got), np.isnan(want32)), what
    assert np.array_equal(got[~finite & ~np.isnan(want32)], want32[~finite & ~np.isnan(want32)])
    ulp = np.spacing(np.abs(want32[finite])).astype(np.float64)
    err = np.abs(got[finite].astype(np.float64) - want64[finite])
    worst = float((err / np.maximum(ulp, np.finfo(np.float32).smallest_subnormal)).max())
    assert worst <= 1.0, f"{what}: {worst:.3f} ulp"


def test_math_accuracy():
    rng = np.random.default_rng(14)
    x = np.concatenate([SPECIAL, rnd(rng, 20000, scale=6.0),
                        rng.uniform(-100, 100, 5000).astype(np.float32),
                        rng.uniform(-0.1, 0.1, 5000).astype(np.float32)])
    x64 = x.astype(np.float64)
    with np.errstate(all="ignore"):
        _within_one_ulp(ops.softcap(x, 1.0), np.tanh(x64), "tanh (softcap, cap 1)")
        u = 0.7978845608028654 * (x64 + 0.044715 * x64 ** 3)
        gelu = np.where(np.isfinite(x64), x64 / (1.0 + np.exp(-2.0 * u)), np.nan)
        _within_one_ulp(ops.geglu(x[np.isfinite(x)], np.ones(np.isfinite(x).sum(), np.float32)),
                        gelu[np.isfinite(x)], "gelu (geglu, up 1)")
    # rope at position p, dim pair 0 (inv_freq 1): cos/sin of the float32 angle p
    p = np.concatenate([np.arange(0, 4096), rng.integers(0, 2**31 - 1, 4096)]).astype(np.int32)
    v = np.zeros((p.size, 1, 2), np.float32)
    v[..., 0] = 1.0
    r = ops.rope(v, p, 2)
    theta = p.astype(np.float32).astype(np.float64)
    _within_one_ulp(r[:, 0, 0], np.cos(theta), "cos (rope)")
    _within_one_ulp(r[:, 0, 1], np.sin(theta), "sin (rope)")
