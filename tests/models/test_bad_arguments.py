"""Bad arguments to a loaded model never crash gemma_native: token ids, prompts, states,
sampling parameters, kernel-set and thread settings each raise a specific GemmaNativeError
subclass whose message names the offending value.  (Bad checkpoints are in
tests/loading/test_bad_input.py.)
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

import gemma_native as gn

from tests.helpers import tinyckpt
from tests.helpers.raises import expect

V = tinyckpt.small_config()["vocab_size"]


@pytest.fixture(autouse=True)
def _restore_threads():
    """Some tests change the process-wide thread count; put the default back afterwards."""
    yield
    gn.set_num_threads(None)


class _Opaque:
    """An arbitrary object with a stable repr (for test ids)."""

    def __repr__(self):
        return "_Opaque()"


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return gn.load(tiny_checkpoint())


@pytest.fixture(scope="module")
def other_model(tiny_checkpoint):
    return gn.load(tiny_checkpoint(seed=1))


@pytest.fixture(scope="module")
def tok_model(tiny_checkpoint):
    return gn.load(tiny_checkpoint(tokenizer=True))


# -------------------------------------------------------------------------------- logits / forward


@pytest.mark.parametrize("ids,fragment", [
    ([-1], "-1"),
    ([V], str(V)),
    ([2 ** 40], str(2 ** 40)),
    ([[1, 2], [3, -7]], "-7"),
    (np.array([2 ** 63], np.uint64), str(2 ** 63)),
    (np.array([1, 2, 300], np.int16) * 2, "600"),
])
def test_logits_token_id_out_of_range(model, ids, fragment):
    with expect(gn.InvalidArgumentError, fragment, "vocabulary"):
        model.logits(ids)


@pytest.mark.parametrize("ids", [
    [1.0, 2.0], [1.5], np.array([1, 2], np.float32), [True, False], ["a"], "abc", b"ab",
    None, {1: 2}, [1, None], np.array([1, 2], dtype=object), [[1, 2], [3, "x"]],
    [1 + 2j], np.array([1, 2], np.complex64),
], ids=lambda v: type(v).__name__ + ":" + repr(v)[:20])
def test_logits_non_integer_ids(model, ids):
    with expect(gn.InvalidArgumentError, "integer"):
        model.logits(ids)


@pytest.mark.parametrize("ids", [[], [[]], np.zeros((2, 0), np.int64), np.zeros((0, 3), np.int32)],
                         ids=repr)
def test_logits_empty(model, ids):
    with expect(gn.InvalidArgumentError, "empty"):
        model.logits(ids)


@pytest.mark.parametrize("ids", [[[1, 2], [3]], [[1], [2, [3]]], [1, [2, 3]]], ids=repr)
def test_logits_ragged(model, ids):
    with expect(gn.InvalidArgumentError):
        model.logits(ids)


@pytest.mark.parametrize("ids", [np.zeros((1, 2, 3), np.int64), [[[1, 2]]], np.int64(3), 3,
                                 np.zeros((1, 1, 1, 1), np.int32)], ids=repr)
def test_logits_wrong_ndim(model, ids):
    with expect(gn.InvalidArgumentError, "shape"):
        model.logits(ids)


def test_logits_accepts_any_integer_dtype(model):
    ref = model.logits([2, 5, 7])
    for dt in (np.int8, np.uint8, np.int16, np.int32, np.uint32, np.int64, np.uint64):
        np.testing.assert_array_equal(model.logits(np.array([2, 5, 7], dt)), ref)


def test_forward_state_from_another_model(model, other_model):
    with expect(gn.InvalidArgumentError, "state"):
        model.forward([1, 2], other_model.new_state())


@pytest.mark.parametrize("state", [None, 0, "state", _Opaque()], ids=repr)
def test_forward_not_a_state(model, state):
    with expect(gn.InvalidArgumentError, "state"):
        model.forward([1, 2], state)


def test_forward_raw_core_state(model):
    with expect(gn.InvalidArgumentError, "state"):
        model.forward([1, 2], model.new_state()._core)


@pytest.mark.parametrize("ids,exc_frag", [([], "empty"), ([[1, 2]], "[T]"), ([-1], "-1"),
                                          ([V], str(V)), ([0.5], "integer")], ids=repr)
def test_forward_bad_ids(model, ids, exc_frag):
    s = model.new_state()
    with expect(gn.InvalidArgumentError, exc_frag):
        model.forward(ids, s)
    assert s.pos == 0  # a rejected call leaves the state untouched
    assert model.forward([2], s).shape == (V,)


@pytest.mark.parametrize("pos", ["x", 2 ** 70, -5, 1.5, None], ids=repr)
def test_state_load_numpy_bad_position(model, pos):
    """BUG (found by this test): pos='x' raises a plain ValueError, pos=2**70 a pybind11
    TypeError ('incompatible function arguments'), pos=1.5 is silently truncated and
    pos=None a plain TypeError; all should be InvalidArgumentError."""
    s = model.new_state()
    with expect(gn.InvalidArgumentError):
        s.load_numpy(s.to_numpy(), pos)


# -------------------------------------------------------------------------------- generate prompts


def test_generate_empty_text_prompt_without_tokenizer(model):
    with expect(gn.TokenizerError, "tokenizer"):
        model.generate("", max_tokens=2)


def test_generate_empty_text_prompt_with_tokenizer(tok_model):
    """"" with a BOS is a one-token prompt (unconditional generation); without BOS it is empty."""
    r = tok_model.generate("", max_tokens=2, stop_token_ids=())
    assert r.prompt_token_ids == [tok_model.tokenizer.bos_id] and len(r.token_ids) == 2
    with expect(gn.InvalidArgumentError, "empty"):
        tok_model.generate("", max_tokens=2, add_bos=False)


@pytest.mark.parametrize("prompt", [[], (), np.array([], np.int64)], ids=repr)
def test_generate_empty_ids(model, prompt):
    with expect(gn.InvalidArgumentError):
        model.generate(prompt, max_tokens=2)


@pytest.mark.parametrize("prompt", [[[]], [[1], []]], ids=repr)
def test_generate_batch_with_empty_prompt(model, prompt):
    with expect(gn.InvalidArgumentError, "empty"):
        model.generate(prompt, max_tokens=2)


@pytest.mark.parametrize("prompt,frag", [([-1], "-1"), ([V], str(V)), ([2 ** 40], str(2 ** 40)),
                                         ([1.5], "integer"), ([True], "integer"),
                                         ([[1, 2], [3, "x"]], "integer")], ids=repr)
def test_generate_bad_ids(model, prompt, frag):
    with expect(gn.InvalidArgumentError, frag):
        model.generate(prompt, max_tokens=2)


@pytest.mark.parametrize("prompt", [np.zeros((1, 2, 3), np.int64), [[[1, 2]]], [1, [2]]], ids=repr)
def test_generate_nested_too_deep(model, prompt):
    with expect(gn.InvalidArgumentError):
        model.generate(prompt, max_tokens=2)


@pytest.mark.parametrize("prompt", [None, 5, np.int64(5), 2.5, _Opaque()], ids=repr)
def test_generate_prompt_of_wrong_type(model, prompt):
    """BUG (found by this test): generate(None) / generate(5) / generate(np.int64(5)) raise a
    plain TypeError ("'NoneType' object is not iterable") instead of InvalidArgumentError."""
    with expect(gn.InvalidArgumentError, "prompt"):
        model.generate(prompt, max_tokens=2)


def test_text_prompt_without_tokenizer(model):
    with expect(gn.TokenizerError, "tokenizer"):
        model.generate("hello", max_tokens=2)
    with expect(gn.TokenizerError, "tokenizer"):
        model.generate(["hello", "world"], max_tokens=2)
    with expect(gn.TokenizerError, "tokenizer"):
        model.stream("hello", max_tokens=2)
    with expect(gn.TokenizerError, "tokenizer"):
        model.chat([{"role": "user", "content": "hi"}], max_tokens=2)
    with expect(gn.TokenizerError, "tokenizer"):
        model.encode("hello")


def test_stop_strings_without_tokenizer(model):
    with expect(gn.TokenizerError, "stop"):
        model.generate([2, 3], max_tokens=2, stop=["x"])
    with expect(gn.TokenizerError, "stop"):
        model.generate([2, 3], max_tokens=2, stop="x")


# ---------------------------------------------------------------------------------- sampling params


BAD_PARAMS = [
    ("temperature", -1), ("temperature", -1e-9), ("temperature", math.nan),
    ("temperature", math.inf), ("temperature", -math.inf), ("temperature", 1e9),
    ("temperature", "1"), ("temperature", None), ("temperature", True), ("temperature", [1.0]),
    ("top_p", 0), ("top_p", 0.0), ("top_p", 1.5), ("top_p", math.nan), ("top_p", -0.1),
    ("top_p", math.inf), ("top_p", "0.5"), ("top_p", None),
    ("top_k", -1), ("top_k", 2.5), ("top_k", 2 ** 40), ("top_k", "3"), ("top_k", True),
    ("max_tokens", -1), ("max_tokens", 1.5), ("max_tokens", "3"), ("max_tokens", None),
    ("max_tokens", True),
    ("seed", -1), ("seed", 2 ** 64), ("seed", "x"), ("seed", 1.5), ("seed", True),
    ("stop", [""]), ("stop", ""), ("stop", [1]), ("stop", ["ok", None]),
    ("stop_token_ids", ["a"]), ("stop_token_ids", [1.5]), ("stop_token_ids", [True]),
]


@pytest.mark.parametrize("key,value", BAD_PARAMS, ids=lambda v: repr(v)[:24])
def test_bad_sampling_params(model, tok_model, key, value):
    for m, prompt in ((model, [2, 3]), (tok_model, "hello")):
        with expect(gn.InvalidArgumentError, key):
            m.generate(prompt, **{key: value})
    with expect(gn.InvalidArgumentError, key):
        gn.SamplingParams(**{key: value})
    with expect(gn.InvalidArgumentError, key):
        tok_model.stream("hello", **{key: value})
    with expect(gn.InvalidArgumentError, key):
        tok_model.chat([{"role": "user", "content": "hi"}], **{key: value})


@pytest.mark.parametrize("value", [5, 1.5, "ab"], ids=repr)
def test_stop_token_ids_not_a_sequence(model, value):
    """BUG (found by this test): stop_token_ids=5 / 1.5 raise a plain TypeError ("'int' object
    is not iterable") instead of InvalidArgumentError."""
    with expect(gn.InvalidArgumentError, "stop_token_ids"):
        model.generate([2, 3], max_tokens=2, stop_token_ids=value)


def test_extreme_but_valid_sampling_params(model):
    """Edge values that are allowed must work."""
    for kw in (dict(temperature=1e4), dict(temperature=1e-30), dict(top_p=1e-9),
               dict(top_k=2 ** 31 - 1), dict(seed=0), dict(seed=2 ** 64 - 1), dict(max_tokens=0),
               dict(top_k=1, temperature=5.0), dict(stop_token_ids=[10 ** 30])):
        kw.setdefault("max_tokens", 3)
        r = model.generate([2, 3], stop_token_ids=kw.pop("stop_token_ids", ()), **kw)
        assert len(r.token_ids) == kw["max_tokens"]
        assert all(0 <= t < V for t in r.token_ids)


@pytest.mark.parametrize("params", [{"max_tokens": 3}, 5, "greedy", [3]], ids=repr)
def test_params_of_wrong_type(model, params):
    with expect(gn.InvalidArgumentError, "SamplingParams"):
        model.generate([2, 3], params)


def test_unknown_sampling_keyword(model):
    """A misspelt keyword is a TypeError (as for any Python call) or a GemmaNativeError; either
    way it names the keyword."""
    with pytest.raises((TypeError, gn.GemmaNativeError), match="temprature"):
        model.generate([2, 3], temprature=0.5)


# ---------------------------------------------------------------------------------- fuzz


def _random_ids(rng):
    """Random garbage: shapes of 0-4 dims, many dtypes, in- and out-of-range values, lists."""
    kind = rng.integers(0, 6)
    ndim = int(rng.integers(0, 5))
    shape = tuple(int(rng.integers(0, 4)) for _ in range(ndim))
    dtypes = [np.int8, np.uint8, np.int16, np.int32, np.uint32, np.int64, np.uint64, np.float16,
              np.float32, np.float64, np.bool_, np.complex64]
    if kind == 0:  # mostly valid ints
        return np.asarray(rng.integers(0, V, size=shape)).astype(dtypes[rng.integers(0, 7)])
    if kind == 1:  # any dtype, wide values
        dt = dtypes[rng.integers(0, len(dtypes))]
        vals = np.asarray(rng.integers(-2 ** 40, 2 ** 40, size=shape))
        with np.errstate(all="ignore"):
            return vals.astype(dt)
    if kind == 2:  # floats incl. NaN / inf
        a = np.asarray(rng.standard_normal(shape) * 1000)
        a[a > 1500] = np.nan
        a[a < -1500] = np.inf
        return a
    if kind == 3:  # ragged nested lists
        return [[int(x) for x in rng.integers(-2, V + 2, size=rng.integers(0, 4))]
                for _ in range(rng.integers(0, 4))]
    if kind == 4:  # lists with odd elements
        pool = [0, 1, V - 1, V, -1, 2 ** 63, -2 ** 63, 1.0, "3", None, True, b"x", [1], ()]
        return [pool[i] for i in rng.integers(0, len(pool), size=rng.integers(0, 5))]
    return [int(x) for x in rng.integers(-3, V + 3, size=rng.integers(0, 6))]


def test_fuzz_logits_only_raises_gemma_native_errors(model):
    rng = np.random.default_rng(20240601)
    ok = failed = 0
    for _ in range(400):
        ids = _random_ids(rng)
        try:
            out = model.logits(ids)
        except gn.GemmaNativeError:
            failed += 1
            continue
        ok += 1
        arr = np.asarray(ids)
        assert arr.ndim in (1, 2) and out.shape == arr.shape + (V,), (ids, out.shape)
        assert np.isfinite(out).all(), ids
    assert ok > 20 and failed > 100, (ok, failed)  # both paths were exercised
    assert model.logits([2, 5]).shape == (2, V)  # still healthy


# ---------------------------------------------------------------------------------- CPU ISA env


def _run_python(code, isa):
    env = dict(os.environ)
    env["GEMMA_NATIVE_CPU_ISA"] = isa
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60)


def test_env_cpu_isa_bogus_fails_at_first_use_with_device_error():
    # The import itself succeeds (so the gemma-native command can report the problem cleanly);
    # the first use of the core raises DeviceError naming the value.
    p = _run_python("import gemma_native as gn; print('imported'); gn.backend_info()", "bogus")
    assert p.returncode != 0 and p.stdout.strip() == "imported"
    assert "DeviceError" in p.stderr and "bogus" in p.stderr, p.stderr


def test_env_cpu_isa_scalar():
    p = _run_python("import gemma_native as gn; print(gn.backend_info()['cpu_isa'])", "scalar")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "scalar"


def test_set_cpu_isa_bad_names():
    info = gn.backend_info()
    with expect(gn.DeviceError, "bogus"):
        gn.set_cpu_isa("bogus")
    for isa in set(info["compiled_isas"]) - set(info["available_isas"]):
        with expect(gn.DeviceError, isa):
            gn.set_cpu_isa(isa)
    assert gn.backend_info()["cpu_isa"] == info["cpu_isa"]  # unchanged by the failures


# ------------------------------------------- arguments that used to escape as raw TypeErrors


@pytest.mark.parametrize("value", ["yes", 1, None, np.array([True])], ids=repr)
def test_forward_all_positions_must_be_a_bool(model, value):
    with expect(gn.InvalidArgumentError, "all_positions"):
        model.forward([1, 2], model.new_state(), all_positions=value)


@pytest.mark.parametrize("path", [None, 5, b"", "", "a\0b", ["x"]], ids=repr)
def test_load_needs_a_path(path):
    with expect(gn.GemmaNativeError):
        gn.load(path)


@pytest.mark.parametrize("n", [2**31, 2**70, -1, 1025, 1.5, True, "3"], ids=repr)
def test_thread_counts_out_of_range(n):
    with expect(gn.InvalidArgumentError, "threads", repr(n)):
        gn.set_num_threads(n)
    with expect(gn.InvalidArgumentError, "n_threads"):
        gn.load("nowhere", n_threads=n)


@pytest.mark.parametrize("text", ["\ud800", "ok \udfff tail", "\udc80"], ids=repr)
def test_lone_surrogates_are_invalid_text(tok_model, text):
    with expect(gn.InvalidArgumentError, "surrogate"):
        tok_model.encode(text)
    with expect(gn.InvalidArgumentError, "surrogate"):
        tok_model.generate(text, max_tokens=1)
