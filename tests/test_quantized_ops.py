"""Linear layers and embeddings on GGML block-quantized weights (Q8_0, Q4_0, Q5_0, Q4_K, Q6_K),
read in place: equal to the same op on the dequantized fp32 weights, on every ISA.  The
dequantized truth comes from gemma_native.loading.gguf's numpy dequantizers, which
test_loading_gguf.py checks bit for bit against the gguf package's."""

import numpy as np
import pytest

import gemma_native as gn
from gemma_native import ops, reference
from gemma_native.loading.gguf import block_size_of

# byte offsets of the fp16 scale fields in each block
SCALES = {"Q8_0": [0], "Q4_0": [0], "Q5_0": [0], "Q4_K": [0, 2], "Q6_K": [208]}
ISAS = ["scalar", "avx2", "avx512"]


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
    if request.param not in gn.backend_info()["available_isas"]:
        pytest.skip(f"this CPU cannot run the {request.param} kernels")
    gn.set_cpu_isa(request.param)
    yield request.param
    gn.set_cpu_isa("auto")


@pytest.mark.parametrize("kind", sorted(SCALES))
@pytest.mark.parametrize("n", [1, 3, 6])
def test_linear_equals_dequantized(isa, kind, n):
    rows, cols = 37, 512
    raw = random_blocks(kind, rows, cols, seed=n)
    w = reference.linear(np.eye(cols, dtype=np.float32), (raw, kind)).T  # dequantized [rows, cols]
    x = np.random.default_rng(n).normal(size=(n, cols)).astype(np.float32)
    bias = np.random.default_rng(1).normal(size=rows).astype(np.float32)
    got = ops.linear(x, (raw, kind), bias)
    ref = reference.linear(x, (raw, kind), bias)
    scale = np.abs(x).astype(np.float64) @ np.abs(w).T.astype(np.float64) + 1
    assert np.all(np.abs(got - ref) <= 1e-5 * scale)
    # and exactly what the float kernel computes on the dequantized weights
    np.testing.assert_array_equal(got, ops.linear(x, w.astype(np.float32), bias))


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
