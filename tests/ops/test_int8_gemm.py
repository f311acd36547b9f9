"""The int8 GEMM of Q8_0R16 weights on AMX-INT8 tiles (csrc/ops/cpu/q8_0r16_amx.cc): what
dtype="int8" models' prefill (16 or more activation rows) runs on CPUs with AMX.

Run on every machine through emulation ("amx-emulated": the same kernel source with the tile
registers, their configured shapes and TDPBSUD done in C++) and on the real tiles where this
CPU has them and the OS grants them ("amx").  The tiles form the same exact integer block sums
as the kernel sets, so the verdict is bit-for-bit equality: with the definition evaluated in
exact rational arithmetic (tests/helpers/q8_exact.py), and with every available kernel set's
own products ("none")."""

from __future__ import annotations

import numpy as np
import pytest

import gemma_native as gn
from gemma_native import _core, ops
from gemma_native._dtypes import pack_q8_0r16
from gemma_native.random_model import random_model

from tests.helpers.q8_exact import q8_0r16_exact

KERNELS = ["amx-emulated", "amx"]


@pytest.fixture(params=KERNELS)
def kernel(request):
    name = request.param
    if name not in gn.backend_info()["available_int8_gemms"]:
        pytest.skip(f"int8 GEMM {name!r} cannot run here (not built, no AMX-INT8 on this CPU, "
                    "or the tiles not granted by the OS)")
    yield name
    gn.set_int8_gemm("auto")


def _q8(rows, cols, seed, scale=1.0):
    w = np.random.default_rng(seed).normal(size=(rows, cols)).astype(np.float32) * scale
    return _core.quantize_q8_0(w)


def _bits(a):
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


def _linear(name, x, q8, bias=None):
    gn.set_int8_gemm(name)
    try:
        return ops.linear(x, (pack_q8_0r16(q8), "Q8_0R16"), bias)
    finally:
        gn.set_int8_gemm("auto")


def test_tiles_give_the_definition_bit_for_bit(kernel):
    """17 rows (one full 16-row tile and one of a single row, padded), 48 weight rows (a pair of
    groups and a lone one), 3 blocks; a bias; a zero row and a row with one huge value."""
    rows, cols, n = 48, 96, 17
    q8 = _q8(rows, cols, 21)
    x = np.random.default_rng(22).normal(size=(n, cols)).astype(np.float32) * 2
    x[5] = 0.0
    x[9, 40] = 3e4
    bias = np.random.default_rng(23).normal(size=rows).astype(np.float32)
    got = _linear(kernel, x, q8, bias)
    np.testing.assert_array_equal(_bits(got), _bits(q8_0r16_exact(q8, x, bias)))


@pytest.mark.parametrize("n,rows,cols", [(16, 16, 32), (31, 32, 64), (32, 80, 32), (33, 16, 160),
                                         (64, 112, 96), (100, 32, 2560)])
def test_tiles_equal_every_kernel_set(kernel, n, rows, cols):
    """Against the kernel sets' own Q8_0R16 products on every set this machine runs (the
    emulated AVX-512 ones included), at tile edges: rows of x 16k, 16k +- 1; 1, 2, 5, 7 groups."""
    q8 = _q8(rows, cols, n + rows + cols, scale=0.5)
    x = np.random.default_rng(n).normal(size=(n, cols)).astype(np.float32)
    got = _linear(kernel, x, q8)
    start = gn.backend_info()["cpu_isa"]
    try:
        for isa in gn.backend_info()["available_isas"]:
            gn.set_cpu_isa(isa)
            np.testing.assert_array_equal(_bits(got), _bits(_linear("none", x, q8)), err_msg=isa)
    finally:
        gn.set_cpu_isa(start)


def test_int8_model_prefill_is_the_same_on_the_tiles(kernel):
    """A random int8 model's prefill logits (a 40-token prompt, so every linear has >= 16 rows)
    with the tiles and without: the same bits."""
    m = random_model("recurrentgemma-tiny", dtype="int8", seed=5)
    assert "Q8_0R16" in m.weight_layouts
    ids = np.arange(3, 43, dtype=np.int32)
    try:
        gn.set_int8_gemm("none")
        base = m.forward(ids, m.new_state(), all_positions=True)
        gn.set_int8_gemm(kernel)
        tiles = m.forward(ids, m.new_state(), all_positions=True)
    finally:
        gn.set_int8_gemm("auto")
    np.testing.assert_array_equal(_bits(tiles), _bits(base))


def test_choice_and_errors():
    info = gn.backend_info()
    avail = info["available_int8_gemms"]
    assert "none" in avail and "amx-emulated" in avail
    gn.set_int8_gemm("auto")
    want = "amx" if "amx" in avail else "none"
    assert gn.backend_info()["int8_gemm"] == want and _core.int8_gemm() == want
    with pytest.raises(gn.DeviceError, match="unknown"):
        gn.set_int8_gemm("tpu")
    if "amx" not in avail:
        with pytest.raises(gn.DeviceError):
            gn.set_int8_gemm("amx")
    assert gn.backend_info()["int8_gemm"] == want  # a refused choice changes nothing
    gn.set_int8_gemm("none")
    try:
        assert gn.backend_info()["int8_gemm"] == "none"
    finally:
        gn.set_int8_gemm("auto")
