"""Fuzzing the public loader with corrupted GGUF files: ``gemma_native.load(path)`` on
thousands of mutants of a tiny valid Gemma 3 GGUF file, and repros of what it found.

* the seed loads and our own parse of its layout understands it; the mutants of both seeds (this
  file's and test_fuzz_load_safetensors.py's) are deterministic;
* ``test_fuzz_gguf``: ``GGUF_CASES`` mutants, each through load + one forward pass in worker
  subprocesses; every call must succeed or raise a :class:`gemma_native.GemmaNativeError`
  subclass, anything else (another exception, a crash, a hang, absurd memory) is a finding;
* ``test_repro_gguf_*``: the findings of the campaigns as small explicit repro tests, which fail
  until the loader is fixed; ``test_gguf_linear_rope_scaling``: the rope.scaling keys of
  Gemma 3 4B+ files.

The seed and the mutations are in tests/helpers/fuzz_load_gguf.py; the harness (workers,
timeouts, memory caps, the report, running under AddressSanitizer) is
tests/helpers/fuzz_load_runner.py.  The Hugging Face folder half is test_fuzz_load_safetensors.py.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("gguf")

import gemma_native as gn  # noqa: E402
from tests.helpers.fuzz_load_gguf import (  # noqa: E402
    ARCH,
    HD,
    NL,
    TOKENS,
    VT,
    GGUFLayout,
    MetaEntry,
    V,
    gguf_mutant,
    gguf_spec,
    write_gguf,
)
from tests.helpers.fuzz_load_hf import hf_mutant  # noqa: E402
from tests.helpers.fuzz_load_runner import (  # noqa: E402
    _report,
    assert_clean_isolated,
    load_and_forward,
    run_campaign,
    write_seeds,
)

GGUF_CASES = 2600


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return write_seeds(tmp_path_factory.mktemp("fuzz_seeds"))


# ----------------------------------------------------------------------------------- tests


def test_seed_gguf_loads(seeds):
    model = gn.load(seeds["gguf"])
    assert model.config.architecture == "gemma3"
    assert model.config.vocab_size == V and model.config.num_layers == NL
    assert model.config.layer_types == ("sliding", "global")
    assert model.config.sliding_window == 8 and model.config.head_dim == HD
    out = model.logits([1, 2, 3])
    assert out.shape == (3, V) and np.isfinite(out).all()
    assert set(model.file_types) == {"F32", "F16", "Q8_0"}
    assert model.tokenizer is not None and model.tokenizer.vocab_size == len(TOKENS)
    assert model.tokenizer.encode("abc abc") == [TOKENS.index("abc"), TOKENS.index("\u2581abc")]


def test_seed_gguf_layout_is_understood(seeds):
    with open(seeds["gguf"], "rb") as f:
        data = f.read()
    lay = GGUFLayout(data)
    kinds = {f.kind for f in lay.fields}
    assert {"count", "len", "vtype", "etype", "int", "float", "bool", "ndims", "ne", "ggml",
            "offset"} <= kinds
    assert lay.regions["kv_cfg"] and lay.regions["kv_tok"] and lay.data_offset < lay.size


def test_mutants_are_deterministic(seeds, tmp_path):
    with open(seeds["gguf"], "rb") as f:
        base = f.read()
    lay, spec = GGUFLayout(base), gguf_spec()
    for i in (0, 7, 123):
        assert gguf_mutant(i, base, lay, spec) == gguf_mutant(i, base, lay, spec)
    with open(os.path.join(seeds["hf"], "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(seeds["hf"], "model.safetensors"), "rb") as f:
        st = f.read()
    for i in (0, 5):
        a = hf_mutant(i, cfg, st, str(tmp_path / f"a{i}"))
        b = hf_mutant(i, cfg, st, str(tmp_path / f"b{i}"))
        assert a == b


def test_fuzz_gguf(seeds, tmp_path):
    _report(run_campaign("gguf", seeds["gguf"], tmp_path, GGUF_CASES))


# ---------------------------------------------------------------------------------- repros
#
# Minimal reproductions of what the campaign above found.  Each builds the seed with one
# thing changed and requires the contract: load + logits succeed, or a GemmaNativeError.
# Cases that can hang or allocate gigabytes run in a memory-capped subprocess
# (run_isolated); the others run in-process so that the traceback shows the faulty line.


def _gguf_variant(tmp_path, name, changes) -> str:
    """The seed GGUF with metadata ``changes`` (key -> (value, vtype[, sub])) applied."""
    meta, tensors = gguf_spec()
    by_key = {m.key: m for m in meta}
    for key, (value, vtype, *sub) in changes.items():
        if key not in by_key:
            by_key[key] = MetaEntry(key, None, None)
            meta.append(by_key[key])
        m = by_key[key]
        m.value, m.vtype, m.sub = value, vtype, (sub[0] if sub else None)
    path = tmp_path / f"{name}.gguf"
    write_gguf(path, meta, tensors)
    return str(path)


def test_repro_gguf_architecture_not_a_string(tmp_path):
    """general.architecture holding an array: TypeError (unhashable numpy array) in
    gemma_gguf.parse_config (``arch not in ARCHS``), case 3474 of a 20000-case run."""
    path = _gguf_variant(tmp_path, "arch", {
        "general.architecture": ([1e6], VT.ARRAY, VT.FLOAT32)})
    load_and_forward(path)


def test_repro_gguf_rope_scaling_type_not_a_string(tmp_path):
    """{arch}.rope.scaling.type holding an array: ValueError ("truth value of an array ... is
    ambiguous") in gemma_gguf.parse_config, case 3125 of a 20000-case run."""
    path = _gguf_variant(tmp_path, "scaling", {
        f"{ARCH}.rope.scaling.type": ([1.0, 2.0], VT.ARRAY, VT.FLOAT32)})
    load_and_forward(path)


def test_gguf_linear_rope_scaling(tmp_path):
    """Gemma 3 4B+ GGUFs carry rope.scaling.type "linear" + factor (global layers only)."""
    if ARCH != "gemma3":
        pytest.skip("the seed is not a Gemma 3 file")
    plain = gn.load(_gguf_variant(tmp_path, "plain", {}))
    scaled = gn.load(_gguf_variant(tmp_path, "scaled", {
        f"{ARCH}.rope.scaling.type": ("linear", VT.STRING),
        f"{ARCH}.rope.scaling.factor": (8.0, VT.FLOAT32)}))
    assert plain.config.rope_global_factor == 1.0 and scaled.config.rope_global_factor == 8.0
    ids = list(range(3, 40))
    assert not np.allclose(plain.logits(ids), scaled.logits(ids))
    for bad in ({f"{ARCH}.rope.scaling.type": ("linear", VT.STRING),
                 f"{ARCH}.rope.scaling.factor": (-2.0, VT.FLOAT32)},
                {f"{ARCH}.rope.scaling.type": ("yarn", VT.STRING)}):
        with pytest.raises((gn.ModelFormatError, gn.UnsupportedModelError)):
            gn.load(_gguf_variant(tmp_path, "bad", bad))


@pytest.mark.parametrize("count", [(1 << 32) - 1])
def test_repro_gguf_huge_block_count(tmp_path, count):
    """block_count of 2**31 .. 2**32-1 (a one-bit flip of the seed's 2 can do it): parse_config
    builds the per-layer type tuple for every layer before any tensor is looked at, which
    hangs for minutes and takes gigabytes (cases 876, 901 of test_fuzz_gguf)."""
    assert_clean_isolated(_gguf_variant(tmp_path, "blocks", {
        f"{ARCH}.block_count": (count, VT.UINT32)}))


@pytest.mark.parametrize("window", [(1 << 22) + 8, (1 << 31) - 1, (1 << 32) - 2])
def test_repro_gguf_huge_sliding_window(tmp_path, window):
    """attention.sliding_window far above context_length (64): the native state allocates a
    ring of ``window`` slots per sliding layer (GemmaModel::new_state), 1 GiB for 2**22 + 8
    (a one-bit flip of the seed's 8, case 653), MemoryError from the first forward pass for
    2**31 - 1 and 2**32 - 2 (cases 7356, 4194 of a 20000-case run).  A window >= the context
    is just a global layer."""
    assert_clean_isolated(_gguf_variant(tmp_path, "window", {
        f"{ARCH}.attention.sliding_window": (window, VT.UINT32)}))


def test_repro_gguf_sliding_window_2_63_minus_1(tmp_path):
    """window * kv_heads * head_dim overflows int64 in GemmaModel::new_state: std::length_error
    surfaces as a plain ValueError ("cannot create std::vector larger than max_size()")."""
    path = _gguf_variant(tmp_path, "window63", {
        f"{ARCH}.attention.sliding_window": ((1 << 63) - 1, VT.UINT64)})
    load_and_forward(path)


def test_repro_gguf_sliding_window_overflow_drops_the_cache(tmp_path):
    """sliding_window 2**62: window * 32 wraps to 0 in new_state (signed overflow, UB), the
    ring is empty, attention() then sees no cache and silently forgets every earlier token of
    a sliding layer: continuing a sequence gives other logits than the one-call forward.
    Either the file is refused cleanly or the results must match."""
    path = _gguf_variant(tmp_path, "window62", {
        f"{ARCH}.attention.sliding_window": (1 << 62, VT.UINT64)})
    model = load_and_forward(path)
    if isinstance(model, gn.GemmaNativeError):
        return
    ids = list(range(1, 21))
    full = model.logits(ids)
    st = model.new_state()
    model.forward(ids[:10], st)
    rest = model.forward(ids[10:], st, all_positions=True)
    np.testing.assert_allclose(rest, full[10:], rtol=1e-4, atol=1e-4)
