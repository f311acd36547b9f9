"""Facts the Python and C++ layers share are defined once, in C++, and read by Python from
_core: the weight dtype codes (and GGML block geometry), the exception class of each C++ error
kind, and the engine config keys of each model family (with their validation)."""

from __future__ import annotations

import pytest

import gemma_native as gn
from gemma_native import _core, _dtypes, errors
from gemma_native.random_model import preset_config


def test_error_kinds_map_to_exception_classes():
    assert set(_core.ERROR_KINDS) == {"kInvalidArgument", "kShape", "kDType", "kModelFormat",
                                      "kUnsupported", "kDevice"}
    for kind, name in _core.ERROR_KINDS.items():
        cls = getattr(errors, name, None)
        assert isinstance(cls, type) and issubclass(cls, errors.GemmaNativeError), (kind, name)


def test_python_dtype_codes_are_the_native_ones():
    native = dict(_core.DTYPE_CODES)
    assert {**_dtypes.DTYPE_CODES, **_dtypes.QUANT_CODES, **_dtypes.PACKED_CODES} == native
    assert sorted(native.values()) == list(range(len(native)))
    assert set(_core.QUANT_BLOCKS) == set(_dtypes.QUANT_CODES)


@pytest.mark.parametrize("preset,cls,family", [
    ("recurrentgemma-tiny", _core.GriffinModel, "griffin"),
    ("gemma-tiny", _core.GemmaModel, "gemma"),
    ("gemma2-tiny", _core.GemmaModel, "gemma"),
    ("gemma3-tiny", _core.GemmaModel, "gemma"),
])
def test_engine_config_dicts_use_the_native_keys(preset, cls, family):
    d = preset_config(preset).engine_dict()
    keys = cls.config_keys
    assert set(d) <= set(keys), set(d) - set(keys)
    assert {k for k, v in keys.items() if v == "required"} <= set(d)
    _core.check_config(family, d)  # what the constructor accepts
    with pytest.raises(gn.ModelFormatError, match="unknown config key 'windw'"):
        _core.check_config(family, {**d, "windw": 3})
    missing = dict(d)
    del missing["width"]
    with pytest.raises(gn.ModelFormatError, match="missing 'width'"):
        _core.check_config(family, missing)
    with pytest.raises(gn.ModelFormatError, match="width must be > 0"):
        _core.check_config(family, {**d, "width": 0})
    with pytest.raises(gn.ModelFormatError, match="wrong type"):
        _core.check_config(family, {**d, "width": "wide"})
    with pytest.raises(gn.InvalidArgumentError):
        _core.check_config("mamba", d)
