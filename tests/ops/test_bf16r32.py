"""BF16R32: the packed layout bfloat16 linear matrices get at load on the CPU (32-row panels,
two values of a row per 32-bit word, in the exact kernels' lane order).  The exact kernels read
it with the same summation order as the row-major matrix, so results are the same bit for bit on
every kernel set; the bf16 compute mode's GEMMs read its words as their value pairs."""

import mmap
import warnings

import gemma_native as gn
import numpy as np
import pytest
from gemma_native import ops, reference
from gemma_native._dtypes import (BF16R32, PACKED_CODES, bf16_bits_to_f32, bf16_layout,
                                  cpu_layout, f32_to_bf16_bits, pack_bf16r32, unpack_bf16r32)
from gemma_native.random_model import random_model

from tests.helpers.arrays import rnd

SETS = list(gn.backend_info()["available_isas"])
BF16_GEMMS = [g for g in gn.backend_info()["available_bf16_gemms"] if g != "none"]
# (rows, cols): one panel; several with a K tail of 16 (cols % 32 == 16); the 2B's K.
SHAPES = [(32, 16), (64, 48), (96, 272), (160, 2560)]
N_ROWS = [1, 2, 3, 4, 5, 7, 15, 16, 17, 29]


def _bf16(rng, rows, cols):
    return f32_to_bf16_bits(rnd(rng, rows, cols))


def _bits(a):
    return np.ascontiguousarray(a).view(np.uint32)


def test_layout_puts_each_value_where_the_definition_says():
    rows, cols = 64, 48
    w = np.arange(rows * cols, dtype=np.uint16).reshape(rows, cols)  # value = its own position
    words = pack_bf16r32(w).reshape(-1).view(np.uint32)
    for m in range(rows):
        for k in range(cols):
            q, t, p, lane, half = m // 32, m % 32, k // 16, k % 8, (k // 8) % 2
            word = ((q * 8 + lane) * (cols // 16) + p) * 32 + t
            assert (int(words[word]) >> (16 * half)) & 0xFFFF == m * cols + k
    assert np.array_equal(unpack_bf16r32(pack_bf16r32(w)), w)
    into = np.zeros_like(w)  # into another array, a panel at a time as the loader does
    for r in range(0, rows, 32):
        pack_bf16r32(w[r:r + 32], out=into[r:r + 32])
    assert np.array_equal(into, pack_bf16r32(w))
    with pytest.raises(gn.DTypeError):
        pack_bf16r32(w, out=np.zeros((rows, cols), np.float32))
    with pytest.raises(gn.ShapeError):
        pack_bf16r32(w, out=np.zeros((32, cols), np.uint16))


@pytest.mark.parametrize("rows,cols", SHAPES)
def test_exact_linear_is_the_row_major_result_bit_for_bit_on_every_set(rows, cols):
    rng = np.random.default_rng(rows + cols)
    w = _bf16(rng, rows, cols)
    w[0, :5] = [0, 0x8000, 0x0001, 0x7F7F, 0xFF7F]  # zeros, a subnormal, the largest finites
    packed = pack_bf16r32(w)
    bias = rnd(rng, rows)
    for n in N_ROWS:
        x = rnd(rng, n, cols)
        x[0, 1] = -0.0
        want = {}
        for isa in SETS:
            gn.set_cpu_isa(isa)
            try:
                got = ops.linear(x, (packed, BF16R32), bias)
                want[isa] = ops.linear(x, (w, "bfloat16"), bias)
            finally:
                gn.set_cpu_isa("auto")
            assert np.array_equal(_bits(got), _bits(want[isa])), (isa, n)
        first = next(iter(want.values()))
        for isa, y in want.items():  # and so the same on every set
            assert np.array_equal(_bits(y), _bits(first)), (isa, n)


@pytest.mark.parametrize("rows,cols", SHAPES)
def test_embedding_lookup_gives_the_row_major_rows_bit_for_bit_on_every_set(rows, cols):
    rng = np.random.default_rng(rows * cols)
    w = _bf16(rng, rows, cols)
    w[rows - 1, :4] = [0x8000, 0x0001, 0x7F7F, 0xFF7F]  # -0, a subnormal, the largest finites
    packed = pack_bf16r32(w)
    ids = [rows - 1, 0, 31, rows - 1, rows // 2] + list(rng.integers(0, rows, 11))
    for scale in (1.0, 3.5):
        want = ops.embedding((w, "bfloat16"), ids, scale)
        assert np.array_equal(_bits(want), _bits(bf16_bits_to_f32(w[ids]) * np.float32(scale)))
        for isa in SETS:
            gn.set_cpu_isa(isa)
            try:
                got = ops.embedding((packed, BF16R32), ids, scale)
            finally:
                gn.set_cpu_isa("auto")
            assert np.array_equal(_bits(got), _bits(want)), (isa, scale)


def test_exact_linear_does_not_depend_on_the_thread_count():
    rng = np.random.default_rng(3)
    w = pack_bf16r32(_bf16(rng, 192, 640))
    x = rnd(rng, 40, 640)
    before = gn.backend_info()["num_threads"]
    try:
        out = []
        for threads in (1, 2, 3):
            with warnings.catch_warnings():  # 3 threads may oversubscribe the CPU: allowed
                warnings.simplefilter("ignore", RuntimeWarning)
                gn.set_num_threads(threads)
            out.append((ops.linear(x, (w, BF16R32)), ops.linear(x[:5], (w, BF16R32))))
    finally:
        gn.set_num_threads(before)
    for y, y5 in out[1:]:
        assert np.array_equal(_bits(y), _bits(out[0][0]))
        assert np.array_equal(_bits(y5), _bits(out[0][1]))
    assert np.array_equal(_bits(out[0][1]), _bits(out[0][0][:5]))  # GEMV rows == GEMM rows


def _fp32_sum_bound(xb, wf, bias):
    """Products of bf16 values are exact in float32; any order of float32 additions of K of them
    and the bias is within (K + 1) * 2^-24 * (sum of |terms|) of the exact sum."""
    k = xb.shape[1]
    exact = xb @ wf.T + bias
    bound = (k + 1) * 2.0 ** -24 * (np.abs(xb) @ np.abs(wf).T + np.abs(bias))
    return exact, bound


@pytest.mark.skipif(not BF16_GEMMS, reason="no bf16 GEMM compiled in")
@pytest.mark.parametrize("rows,cols", SHAPES)
def test_bf16_mode_reads_the_packed_words_as_its_value_pairs(rows, cols):
    rng = np.random.default_rng(7 * rows + cols)
    w = _bf16(rng, rows, cols)
    packed = pack_bf16r32(w)
    bias = rnd(rng, rows)
    x = rnd(rng, 37, cols)
    xb = bf16_bits_to_f32(f32_to_bf16_bits(x)).astype(np.float64)
    exact, bound = _fp32_sum_bound(xb, bf16_bits_to_f32(w).astype(np.float64), bias)
    for gemm in BF16_GEMMS:
        gn.set_bf16_gemm(gemm)
        try:
            got = ops.linear(x, (packed, BF16R32), bias, bf16_activations=True)
        finally:
            gn.set_bf16_gemm("auto")
        err = np.abs(got - exact)
        assert np.all(err <= bound), (gemm, float((err - bound).max()))


def test_reference_and_bad_input():
    rng = np.random.default_rng(5)
    w = _bf16(rng, 32, 32)
    x = rnd(rng, 3, 32)
    np.testing.assert_array_equal(reference.linear(x, (pack_bf16r32(w), BF16R32)),
                                  reference.linear(x, (w, "bfloat16")))
    with pytest.raises(gn.ShapeError):
        pack_bf16r32(np.zeros((48, 32), np.uint16))  # rows % 32
    with pytest.raises(gn.ShapeError):
        ops.linear(np.ones((1, 40), np.float32), (np.zeros((32, 40), np.uint16), BF16R32))
    with pytest.raises(gn.DTypeError):
        ops.linear(np.ones((1, 32), np.float32), (np.zeros((32, 32), np.float16), BF16R32))
    with pytest.raises(gn.ShapeError):  # x's width is not W's
        ops.linear(np.ones((1, 16), np.float32), (pack_bf16r32(w), BF16R32))
    with pytest.raises(gn.ShapeError):  # a table of whole panels only
        ops.embedding((np.zeros((32, 40), np.uint16), BF16R32), [0, 1])
    with pytest.raises(gn.InvalidArgumentError):  # ids are checked as for any table
        ops.embedding((pack_bf16r32(w), BF16R32), [32])
    with pytest.raises(gn.DTypeError):
        ops.embedding((pack_bf16r32(w), BF16R32), [0], device="cuda-emu")
    with pytest.raises(gn.DTypeError):  # no CUDA kernel reads it
        ops.linear(x, (pack_bf16r32(w), BF16R32), device="cuda-emu")


def test_bf16_layout_packs_only_whole_panel_matrices_on_the_cpu():
    rng = np.random.default_rng(1)
    bf16, f32 = 1, 0
    weights = {"embed": (_bf16(rng, 64, 32), bf16), "a": (_bf16(rng, 64, 32), bf16),
               "odd_rows": (_bf16(rng, 48, 32), bf16), "odd_cols": (_bf16(rng, 32, 40), bf16),
               "f32": (rnd(rng, 64, 32), f32), "conv": (_bf16(rng, 4, 32), bf16)}
    before = dict(weights)
    weights_a = before["a"][0].copy()
    assert bf16_layout(dict(weights), "cuda:0") == weights
    assert cpu_layout(dict(weights), "int8", "cpu", False) == weights
    out = bf16_layout(weights, "cpu")  # in place
    assert out is weights and out["a"][1] == PACKED_CODES[BF16R32]
    assert np.array_equal(unpack_bf16r32(out["a"][0]), before["a"][0])
    for name in ("embed", "a"):  # the table too: it is also the tied output layer
        assert out[name][1] == PACKED_CODES[BF16R32]
        assert np.array_equal(unpack_bf16r32(out[name][0]), before[name][0])
    for name in ("odd_rows", "odd_cols", "f32", "conv"):
        assert out[name] is before[name]
    assert cpu_layout(dict(before), "int8", "cpu", True)["a"][1] == PACKED_CODES[BF16R32]
    assert np.array_equal(before["a"][0], weights_a)  # shared arrays are copied, not rewritten


def test_bf16_layout_packs_arrays_nothing_else_holds_in_place():
    rng = np.random.default_rng(4)
    values = _bf16(rng, 96, 64)
    shared = values.copy()
    weights = {"a": (values.copy(), 1), "b": (values.copy(), 1), "c": (values.copy(), 1),
               "d": (shared, 1), "e": (shared, 1)}
    at = weights["a"][0].ctypes.data
    view = weights["b"][0][:64]  # a view keeps "b" from being rewritten under it
    outside = weights["c"][0]  # so does a reference from outside
    del shared  # "d" and "e" hold one array: neither may rewrite it for the other
    # views of a whole array as 16-bit words (how random weights are drawn): one whose array
    # nothing else holds is rewritten, one whose array is held outside is not
    raw, raw_held = values.copy().view(np.uint64), values.copy().view(np.uint64)
    weights["f"], weights["g"] = (raw.view(np.uint16), 1), (raw_held.view(np.uint16), 1)
    at_f = raw.ctypes.data
    del raw
    out = bf16_layout(weights, "cpu")
    assert out["a"][0].ctypes.data == at  # the same memory, rewritten
    assert out["f"][0].ctypes.data == at_f
    for name in "abcdefg":
        assert np.array_equal(out[name][0], pack_bf16r32(values)), name
    assert np.array_equal(view, values[:64]) and np.array_equal(outside, values)
    assert np.array_equal(raw_held.view(np.uint16), values)


def test_packing_a_mapped_matrix_drops_its_pages(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "w.bin"
    w = _bf16(rng, 64, 4096)  # 512 KiB: whole pages
    w.tofile(path)
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    mapped = np.frombuffer(mm, np.uint16).reshape(64, 4096)
    assert np.array_equal(mapped, w)  # every page read: resident in the mapping
    resident = _mapping_rss_kib(mapped.ctypes.data)
    out = bf16_layout({"a": (mapped, 1)}, "cpu")
    assert np.array_equal(unpack_bf16r32(out["a"][0]), w)
    if resident is not None:  # Linux: the mapping's resident size, before and after
        assert resident >= 512 and _mapping_rss_kib(mapped.ctypes.data) == 0
    assert np.array_equal(mapped, w)  # the mapping still reads the file (pages fault back in)


def _mapping_rss_kib(addr):
    """Rss (KiB) of the mapping holding addr, from /proc/self/smaps; None where there is none."""
    try:
        lines = open("/proc/self/smaps").read().splitlines()
    except OSError:
        return None
    inside = False
    for line in lines:
        head = line.split()[0]
        if "-" in head and all(c in "0123456789abcdef-" for c in head):
            lo, hi = (int(v, 16) for v in head.split("-"))
            inside = lo <= addr < hi
        elif inside and line.startswith("Rss:"):
            return int(line.split()[1])
    return None


@pytest.mark.parametrize("preset", ["recurrentgemma-tiny", "gemma3-tiny"])
def test_packed_models_give_the_row_major_models_logits_bit_for_bit(preset):
    ids = list(range(3, 40))
    plain = random_model(preset, pack_weights=False)
    packed = random_model(preset, pack_weights=True)
    assert BF16R32 in packed.weight_layouts and BF16R32 not in plain.weight_layouts
    assert np.array_equal(_bits(plain.logits(ids)), _bits(packed.logits(ids)))
    s0, s1 = plain.new_state(), packed.new_state()
    plain.forward(ids[:20], s0)
    packed.forward(ids[:20], s1)
    for t in ids[20:24]:  # decode steps: the GEMV path
        assert np.array_equal(_bits(plain.forward([t], s0)), _bits(packed.forward([t], s1)))
    with pytest.raises(gn.InvalidArgumentError):
        random_model(preset, pack_weights="yes")
