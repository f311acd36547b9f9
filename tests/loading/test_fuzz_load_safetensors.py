"""Fuzzing the public loader with corrupted Hugging Face folders: ``gemma_native.load(path)`` on
thousands of mutants of a tiny valid RecurrentGemma folder (``config.json`` +
``model.safetensors``), and repros of what it found.

* the seed loads and runs;
* ``test_fuzz_hf_folder``: ``HF_CASES`` mutants, each through load + one forward pass in worker
  subprocesses; every call must succeed or raise a :class:`gemma_native.GemmaNativeError`
  subclass, anything else (another exception, a crash, a hang, absurd memory) is a finding;
* ``test_repro_hf_*``: the findings of the campaigns as small explicit repro tests, which fail
  until the loader is fixed.

The seed and the mutations are in tests/helpers/fuzz_load_hf.py; the harness (workers,
timeouts, memory caps, the report, running under AddressSanitizer) is
tests/helpers/fuzz_load_runner.py.  The GGUF half is test_fuzz_load_gguf.py.  The harness
imports the GGUF mutations too, which need the ``gguf`` package: this file skips without it.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("gguf")

import gemma_native as gn  # noqa: E402
from tests.helpers.fuzz_load_hf import write_hf_seed  # noqa: E402
from tests.helpers.fuzz_load_runner import (  # noqa: E402
    _report,
    assert_clean_isolated,
    load_and_forward,
    run_campaign,
    write_seeds,
)

HF_CASES = 2000


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return write_seeds(tmp_path_factory.mktemp("fuzz_seeds"))


# ----------------------------------------------------------------------------------- tests


def test_seed_hf_loads(seeds):
    model = gn.load(seeds["hf"])
    assert model.config.architecture == "recurrent_gemma"
    out = model.logits([1, 2, 3])
    assert out.shape == (3, model.config.vocab_size) and np.isfinite(out).all()


def test_fuzz_hf_folder(seeds, tmp_path):
    _report(run_campaign("hf", seeds["hf"], tmp_path, HF_CASES))


# ---------------------------------------------------------------------------------- repros
#
# Minimal reproductions of what the campaign above found.  Each builds the seed with one
# thing changed and requires the contract: load + logits succeed, or a GemmaNativeError.
# Cases that can hang or allocate gigabytes run in a memory-capped subprocess
# (run_isolated); the others run in-process so that the traceback shows the faulty line.


_RAW = "__raw_json__"


def _hf_variant(tmp_path, name, edit, raw: str | None = None) -> str:
    """The seed Hugging Face folder with ``edit(config_dict)`` applied; a value set to
    ``_RAW`` is written as the JSON text ``raw`` (NaN, Infinity, a 400-digit integer ...)."""
    folder = tmp_path / name
    write_hf_seed(folder)
    cfg_path = folder / "config.json"
    cfg = json.loads(cfg_path.read_text())
    edit(cfg)
    text = json.dumps(cfg)
    if raw is not None:
        text = text.replace(json.dumps(_RAW), raw)
    cfg_path.write_text(text)
    return str(folder)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("key", ["hidden_size", "num_hidden_layers", "vocab_size"])
def test_repro_hf_integer_key_not_finite(tmp_path, key, text):
    """An integer config.json key holding NaN / Infinity (Python's json accepts both):
    ValueError / OverflowError from ``int(v)`` in griffin._get (cases 75, 220)."""
    load_and_forward(_hf_variant(tmp_path, "nonfinite", lambda c: c.__setitem__(key, _RAW),
                                 raw=text))


@pytest.mark.parametrize("key,value", [
    ("eos_token_id", None), ("eos_token_id", [None]), ("bos_token_id", "gemma"),
    ("pad_token_id", {"a": 1}), ("pad_token_id", math.inf), ("bos_token_id", [2])])
def test_repro_hf_special_token_id_of_wrong_type(tmp_path, key, value):
    """bos/eos/pad_token_id are converted with a bare ``int(...)`` in griffin.parse_config:
    TypeError / ValueError / OverflowError (cases 11, 794, 1113, 1870)."""
    load_and_forward(_hf_variant(tmp_path, "ids", lambda c: c.__setitem__(key, value)))


@pytest.mark.parametrize("layers", ["4611686018427387904", "1" + "0" * 400])
def test_repro_hf_huge_num_hidden_layers(tmp_path, layers):
    """num_hidden_layers of 2**62 or 10**400: the block pattern list is built for every layer
    before the tensors are checked, MemoryError / OverflowError ("cannot fit 'int' into an
    index-sized integer") at griffin.parse_config (cases 291, 319); 10**9 would take ~8 GB."""
    assert_clean_isolated(_hf_variant(
        tmp_path, "layers", lambda c: c.__setitem__("num_hidden_layers", _RAW), raw=layers))


@pytest.mark.parametrize("value", [{"a": 1}, ["recurrent_gemma"]])
def test_repro_hf_model_type_not_a_string(tmp_path, value):
    """model_type holding an object or a list: TypeError (unhashable) at
    ``mt in gemma.MODEL_TYPES`` in loader.load (case 1722)."""
    load_and_forward(_hf_variant(tmp_path, "mt", lambda c: c.__setitem__("model_type", value)))


def test_repro_hf_architectures_not_a_list(tmp_path):
    """No model_type and ``architectures`` an integer: TypeError ("argument of type 'int' is
    not iterable") in griffin.parse_config (case 2244 of a 12000-case run)."""
    def edit(c):
        c.pop("model_type", None)
        c["architectures"] = 3
    load_and_forward(_hf_variant(tmp_path, "archs", edit))
