"""Linear layers and embeddings on GGML block-quantized weights (Q8_0, Q4_0, Q5_0, Q4_K, Q6_K),
read in place, on every ISA.
- float_activations=True: equal to the same op on the dequantized fp32 weights (the dequantized
  truth comes from gemma_native.loading.gguf's numpy dequantizers, which test_loading_gguf.py
  checks bit for bit against the gguf package's).
- the default, 8-bit activations: equal to reference.linear's integer twin, within the
  quantization error of the float result, and (test_ggml_dot_products_*) equal to ggml's own
  quantize + vec_dot functions on real rows of the Gemma 3 270M file."""

import os

import numpy as np
import pytest

import gemma_native as gn
from gemma_native import ops, reference
from gemma_native.loading.gguf import block_size_of

from tests.helpers import FIXTURES_DIR

# byte offsets of the fp16 scale fields in each block
SCALES = {"Q8_0": [0], "Q4_0": [0], "Q5_0": [0], "Q4_K": [0, 2], "Q6_K": [208]}
ISAS = ["scalar", "avx2", "avx512", "avx512vnni", "avx512emu", "avx512vnniemu", "neon", "neondot"]


def random_blocks(kind, rows, cols, seed):
    """Random bytes with finite, modest fp16 scales: valid blocks of any content."""
    per, nbytes = block_size_of(kind)
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, size=(rows, cols // per, nbytes), dtype=np.uint8)
    for off in SCALES[kind]:
        scales = rng.uniform(0.001, 0.05, size=raw.shape[:2]).astype(np.float16)
        raw[:, :, off:off + 2] = scales.view(np.uint8).reshape(raw.shape[0], raw.shape[1], 2)
    if kind == "Q6_K":  # int8 sub-block scales: keep them small too
        raw[:, :, 192:208] = rng.integers(-20, 20, size=raw.shape[:2] + (16,)).astype(np.int8
                                                                                     ).view(np.uint8)
    return raw.reshape(rows, -1)


@pytest.fixture(params=ISAS)
def isa(request):
    """The CPU kernel sets only: replaces tests/ops/conftest.py's isa, which adds the CUDA
    devices."""
    if request.param not in gn.backend_info()["available_isas"]:
        pytest.skip(f"the {request.param} kernels are not built or this CPU cannot run them")
    gn.set_cpu_isa(request.param)
    yield request.param
    gn.set_cpu_isa("auto")


@pytest.mark.parametrize("kind", sorted(SCALES))
@pytest.mark.parametrize("n", [1, 3, 6])
def test_linear_equals_dequantized(isa, kind, n):
    rows, cols = 37, 512
    raw = random_blocks(kind, rows, cols, seed=n)
    w = reference.linear(np.eye(cols, dtype=np.float32), (raw, kind),
                         float_activations=True).T  # dequantized [rows, cols]
    x = np.random.default_rng(n).normal(size=(n, cols)).astype(np.float32)
    bias = np.random.default_rng(1).normal(size=rows).astype(np.float32)
    got = ops.linear(x, (raw, kind), bias, float_activations=True)
    ref = reference.linear(x, (raw, kind), bias, float_activations=True)
    scale = np.abs(x).astype(np.float64) @ np.abs(w).T.astype(np.float64) + 1
    assert np.all(np.abs(got - ref) <= 1e-5 * scale)
    # and exactly what the float kernel computes on the dequantized weights
    np.testing.assert_array_equal(got, ops.linear(x, w.astype(np.float32), bias))


@pytest.mark.parametrize("kind", sorted(SCALES))
@pytest.mark.parametrize("n", [1, 2, 4, 7, 21])
def test_linear_int8_activations_match_integer_reference(isa, kind, n):
    """n spans the decode paths (n < 4: one weight row at a time, on AVX-512 two blocks per
    step), whole groups of four activation rows and tails; 37 rows leave a tail of weight rows
    too, and 25 blocks of 32 (3 of 256) an odd block count."""
    rows, cols = 37, (800 if block_size_of(kind)[0] == 32 else 768)
    raw = random_blocks(kind, rows, cols, seed=10 + n)
    rng = np.random.default_rng(n)
    x = (rng.normal(size=(n, cols)) * rng.uniform(0.1, 10, size=(n, 1))).astype(np.float32)
    x[0, 5] = 0.0
    if n > 1:
        x[1, :256] = 0.0  # an all-zero block: scale 0
    bias = rng.normal(size=rows).astype(np.float32)
    got = ops.linear(x, (raw, kind), bias)
    ref = reference.linear(x, (raw, kind), bias)
    # float32 combination of exact integer block sums: relative to the sum of |terms|
    w = np.abs(reference.linear(np.eye(cols, dtype=np.float32), (raw, kind),
                                float_activations=True).T.astype(np.float64))
    mag = np.abs(x).astype(np.float64) @ w.T + np.abs(bias)
    assert np.all(np.abs(got - ref) <= 2e-6 * mag + 1e-6), np.max(np.abs(got - ref) / (mag + 1))
    # 8-bit activations stay within their quantization error of the float result: each value
    # moves by at most half a step (amax/254 per block of 32 or 256)
    exact = reference.linear(x, (raw, kind), bias, float_activations=True).astype(np.float64)
    block = 32 if kind in ("Q8_0", "Q4_0", "Q5_0") else 256
    step = np.abs(x).reshape(n, -1, block).max(axis=2) / 127.0
    bound = (np.repeat(step, block, axis=1) * 0.5 * (1 + 1e-3)) @ w.T
    assert np.all(np.abs(got - exact) <= bound + 1e-4 * mag + 1e-5)
    # a row's result does not depend on the batch it came in
    for i in range(n):
        np.testing.assert_array_equal(got[i], ops.linear(x[i:i + 1], (raw, kind), bias)[0])


def test_activation_quantization_matches_its_definition():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 256)).astype(np.float32)
    x[1, 17] = -9.0  # the value of largest magnitude is negative
    d, q = reference.quantize_activations(x, 256)
    # q8_K maps the first value of largest magnitude to -127, whatever its sign
    assert q.dtype == np.int8 and q[1, 0, 17] == -127 and d[1, 0] > 0
    j = int(np.abs(x[0]).argmax())
    assert q[0, 0, j] == -127 and np.sign(d[0, 0]) == -np.sign(x[0, j])
    assert np.all(np.abs(q) <= 127)
    np.testing.assert_allclose(d[:, :, None] * q, x.reshape(3, 1, 256), atol=np.max(np.abs(d)) / 2 + 1e-7)
    d32, q32 = reference.quantize_activations(x, 32)
    assert np.all(np.abs(q32).max(axis=2) == 127) and d32.shape == (3, 8)
    assert np.all(d32 == (np.abs(x).reshape(3, 8, 32).max(axis=2) / np.float32(127)).astype(np.float16))


def _tricky_activations(rng, rows, k):
    """Rows that exercise the 8-bit activation rules: exact .5 ties (the scale is exactly 1 when
    the block's largest magnitude is 127), equal magnitudes of both signs (the first one is
    the q8_K pivot), all-zero blocks, tiny and huge values."""
    x = (rng.normal(size=(rows, k)) * rng.uniform(0.01, 100, size=(rows, 1))).astype(np.float32)
    x[0, :] = rng.integers(-254, 255, size=k) / np.float32(2)  # multiples of 0.5
    x[0, ::32] = 127.0
    x[0, 1::256] = -127.0  # same magnitude as the first, other sign: q8_K keeps the first
    x[1, :256] = 0.0
    x[2, 300] = 3e38
    x[3, 7] = -1e-30
    return x


@pytest.mark.parametrize("block", [32, 256])
def test_activation_kernels_equal_the_definition_bit_for_bit(isa, block):
    """The SIMD activation quantizers (what every int8 product starts from, and what must be
    byte-identical to llama.cpp's) against reference.quantize_activations on finite rows, and
    against the scalar build (quant.h's loops) on rows with NaN / inf too."""
    from gemma_native import _core
    x = _tricky_activations(np.random.default_rng(block), 6, 1024)
    d, q, bsums = _core.quantize_activations(x, block)
    with np.errstate(over="ignore"):  # the 3e38 block: its q8_0 scale overflows float16
        rd, rq = reference.quantize_activations(x, block)
    np.testing.assert_array_equal(q, rq)
    np.testing.assert_array_equal(d, rd)
    if block == 256:
        np.testing.assert_array_equal(bsums, rq.reshape(6, 4, 16, 16).astype(np.int64).sum(axis=3))
    else:
        assert bsums is None
    bad = x.copy()
    bad[0, 3] = np.nan
    bad[1, 600] = np.inf
    bad[2, 40] = -np.inf
    bad[3, 5:40] = np.nan
    got = _core.quantize_activations(bad, block)
    gn.set_cpu_isa("scalar")
    want = _core.quantize_activations(bad, block)
    gn.set_cpu_isa(isa)
    for g, w in zip(got, want):
        if w is not None:
            np.testing.assert_array_equal(g, w)
    assert np.all(np.abs(got[1]) <= 127)


def test_activation_quantizer_rejects_bad_blocks():
    from gemma_native import _core
    with pytest.raises(gn.GemmaNativeError, match="block must be 32 or 256"):
        _core.quantize_activations(np.ones((1, 64), np.float32), 64)
    with pytest.raises(gn.GemmaNativeError, match="multiple of 256"):
        _core.quantize_activations(np.ones((1, 320), np.float32), 256)


def test_nonfinite_activations_do_not_break_the_kernel(isa):
    raw = random_blocks("Q8_0", 8, 64, seed=1)
    x = np.ones((2, 64), np.float32)
    x[0, 3] = np.nan
    x[1, 40] = np.inf
    y = ops.linear(x, (raw, "Q8_0"))
    assert y.shape == (2, 8)  # garbage in, but no crash and no out-of-range byte


@pytest.mark.parametrize("kind", sorted(SCALES))
def test_embedding_rows_are_dequantized_rows(isa, kind):
    raw = random_blocks(kind, 20, 256, seed=3)
    table = reference.embedding((raw, kind), np.arange(20))
    ids = np.array([0, 19, 7, 7, 3])
    np.testing.assert_array_equal(ops.embedding((raw, kind), ids, 2.0), table[ids] * 2.0)


def test_partial_blocks_and_bad_arrays_are_rejected():
    raw = random_blocks("Q4_K", 4, 256, seed=0)
    with pytest.raises(gn.ShapeError):
        ops.linear(np.ones((1, 256), np.float32), (raw[:, :-1].copy(), "Q4_K"))
    with pytest.raises(gn.DTypeError):
        ops.linear(np.ones((1, 256), np.float32), (raw.astype(np.int16), "Q4_K"))
    with pytest.raises(gn.ShapeError):
        ops.linear(np.ones((1, 200), np.float32), (raw, "Q4_K"))


GGML_FIX = os.path.join(FIXTURES_DIR, "ggml_dot_products.npz")


def _unpack_ggml_act(act, block):
    """ggml's block_q8_0 (half d, 32 x int8) / block_q8_K (float d, 256 x int8, 16 x int16)."""
    n = act.shape[0]
    if block == 32:
        b = act.reshape(n, -1, 34)
        return (np.ascontiguousarray(b[:, :, :2]).view(np.float16)[:, :, 0].astype(np.float32),
                b[:, :, 2:].view(np.int8))
    b = act.reshape(n, -1, 292)
    return (np.ascontiguousarray(b[:, :, :4]).view(np.float32)[:, :, 0],
            b[:, :, 4:260].view(np.int8))


@pytest.mark.parametrize("kind", ["Q8_0", "Q5_0", "Q4_K", "Q6_K"])
def test_ggml_dot_products_on_real_rows(isa, kind):
    """Fixture made by ggml itself (tests/tools/make_ggml_dot_fixtures.py): our 8-bit activations are
    byte-identical to ggml's and our products equal ggml's vec_dot (float32 rounding apart)."""
    fx = np.load(GGML_FIX)
    raw, x, y, act = (fx[f"{kind}_{k}"] for k in ("raw", "x", "y", "act"))
    block = 32 if kind in ("Q8_0", "Q5_0") else 256
    d_ref, q_ref = _unpack_ggml_act(act, block)
    d, q = reference.quantize_activations(x, block)
    np.testing.assert_array_equal(q, q_ref)
    np.testing.assert_array_equal(d, d_ref)
    got = ops.linear(x, (raw, kind))
    np.testing.assert_allclose(got, y, rtol=2e-6, atol=2e-6 * np.abs(y).max())
    np.testing.assert_allclose(reference.linear(x, (raw, kind)), y, rtol=2e-6,
                               atol=2e-6 * np.abs(y).max())


@pytest.mark.parametrize("kind", ["Q8_0", "Q4_0", "Q5_0", "Q4_K", "Q6_K"])
def test_ggml_dot_products_live(kind):
    """The same against the installed llama-cpp-python's ggml on random blocks and inputs."""
    pytest.importorskip("llama_cpp")
    from tests.helpers.ggml_ref import ggml_dots, load_ggml_cpu

    lib = load_ggml_cpu()
    raw = random_blocks(kind, 9, 512, seed=5)
    x = (np.random.default_rng(7).normal(size=(3, 512)) * [[0.01], [1.0], [50.0]]).astype(
        np.float32)
    y, _ = ggml_dots(lib, raw, kind, x)
    np.testing.assert_allclose(ops.linear(x, (raw, kind)), y, rtol=2e-6,
                               atol=2e-6 * np.abs(y).max())


@pytest.mark.parametrize("n", [1, 5, 20])  # the GEMV kernel (n <= 8) and the tiled GEMM
def test_q8_0_on_the_cuda_emulator_equals_the_cpu(n):
    """The CUDA kernels widen Q8_0 blocks per element: linear with float activations and the
    embedding lookup match the CPU to fp32 rounding; 8-bit activations and other GGML types
    have no CUDA kernel and say so."""
    rows, cols = 37, 256
    raw = random_blocks("Q8_0", rows, cols, seed=30 + n)
    x = np.random.default_rng(n).normal(size=(n, cols)).astype(np.float32)
    bias = np.random.default_rng(2).normal(size=rows).astype(np.float32)
    want = ops.linear(x, (raw, "Q8_0"), bias, float_activations=True)
    got = ops.linear(x, (raw, "Q8_0"), bias, float_activations=True, device=ops.EMULATOR)
    w = reference.linear(np.eye(cols, dtype=np.float32), (raw, "Q8_0"),
                         float_activations=True).T
    scale = np.abs(x).astype(np.float64) @ np.abs(w).T.astype(np.float64) + 1
    assert np.all(np.abs(got - want) <= 1e-5 * scale)
    ids = np.array([0, 36, 5][:n], np.int32)
    np.testing.assert_array_equal(ops.embedding((raw, "Q8_0"), ids, 0.5, device=ops.EMULATOR),
                                  ops.embedding((raw, "Q8_0"), ids, 0.5))
    with pytest.raises(gn.DTypeError, match="8-bit activations"):
        ops.linear(x, (raw, "Q8_0"), bias, device=ops.EMULATOR)
    with pytest.raises(gn.DTypeError, match="no CUDA kernel"):
        ops.linear(x, (random_blocks("Q4_K", rows, cols, 1), "Q4_K"), float_activations=True,
                   device=ops.EMULATOR)
