"""The GGML type table (gemma_native.loading.ggml) against the PyPI ``gguf`` package's ids and
block layouts, and its consistency with the engine dtype codes the rest of the package uses."""

from __future__ import annotations

import pytest

from gemma_native import _dtypes
from gemma_native.errors import UnsupportedModelError
from gemma_native.loading import gguf as gguf_reader
from gemma_native.loading.ggml import (
    DEQUANTIZABLE_TYPES,
    GGML_TYPES,
    NATIVE_QUANT_CODES,
    block_size_of,
    ggml_type,
)


# Where the gguf package's table is known to differ from ggml: its Q8_1 still has the old
# layout with float32 d and s (4 + 4 + 32 bytes); ggml's block_q8_1 holds two halves (2 + 2 +
# 32, as its static_assert says).  Q8_1 is an activation format that files do not use.
GGUF_PACKAGE_DIFFERS = {"Q8_1": (32, 4 + 4 + 32)}


@pytest.mark.parametrize("type_id", sorted(GGML_TYPES))
def test_table_agrees_with_the_gguf_package(type_id):
    gguf = pytest.importorskip("gguf")
    t = GGML_TYPES[type_id]
    qt = getattr(gguf.GGMLQuantizationType, t.name, None)
    if qt is None:
        pytest.skip(f"gguf {getattr(gguf, '__version__', '?')} does not know {t.name}")
    assert qt.value == type_id
    theirs = gguf.GGML_QUANT_SIZES[qt]
    if t.name in GGUF_PACKAGE_DIFFERS and theirs == GGUF_PACKAGE_DIFFERS[t.name]:
        assert (t.block_size, t.type_size) == (32, 2 + 2 + 32)
    else:
        assert theirs == (t.block_size, t.type_size)
    assert block_size_of(t.name) == (t.block_size, t.type_size)
    assert ggml_type(t.name) is t


def test_native_layouts_and_engine_codes():
    # the GGML formats, and the engine's own Q8_0R16 (not a GGML type)
    assert _dtypes.QUANT_CODES == {**NATIVE_QUANT_CODES, "Q8_0R16": 8}
    assert NATIVE_QUANT_CODES == {"Q8_0": 3, "Q4_0": 4, "Q5_0": 5, "Q4_K": 6, "Q6_K": 7}
    floats = {t.name: t.float_dtype for t in GGML_TYPES.values() if t.float_dtype}
    assert floats == {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
    assert set(floats.values()) == set(_dtypes.DTYPE_CODES)
    codes = [*_dtypes.DTYPE_CODES.values(), *_dtypes.QUANT_CODES.values()]
    assert len(set(codes)) == len(codes)  # one code per engine dtype
    for t in GGML_TYPES.values():
        assert t.native == (t.name in NATIVE_QUANT_CODES or t.name in floats)
        if t.native:
            assert t.name in DEQUANTIZABLE_TYPES  # the reference ops can widen it
    assert ggml_type(_dtypes.INT8_FORMAT).quant_code is not None
    assert gguf_reader.GGML_TYPES is GGML_TYPES  # the reader keeps no copy
    assert gguf_reader.block_size_of is block_size_of
    with pytest.raises(UnsupportedModelError):
        block_size_of("Q9_9")


def test_native_layouts_match_the_engine():
    """The engine's block structs (quant.h, exported as _core.QUANT_BLOCKS) and this table's
    layouts of the formats it multiplies natively agree: values and bytes per block."""
    from gemma_native import _core

    native = {t.name: t for t in GGML_TYPES.values() if t.quant_code is not None}
    assert set(_core.QUANT_BLOCKS) - {"Q8_0R16"} == set(native) == {"Q8_0", "Q4_0", "Q5_0", "Q4_K", "Q6_K"}
    for name, t in native.items():
        assert tuple(_core.QUANT_BLOCKS[name]) == (t.block_size, t.type_size), name
    # Q8_0R16 holds Q8_0's blocks, 16 rows interleaved: the same bytes per 32 values
    assert tuple(_core.QUANT_BLOCKS["Q8_0R16"]) == (32, 34)
