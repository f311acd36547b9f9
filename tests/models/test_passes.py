"""A forward longer than gn.set_max_pass_tokens(n) rows runs through the layers in passes of at
most n rows; the logits and the states must be the bits of one pass, for every family, compute
mode and batch shape, and the setting must be checked and reported."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import gemma_native as gn

from tests.helpers.arrays import random_ids


@pytest.fixture(autouse=True)
def _restore_default():
    yield
    gn.set_max_pass_tokens(None)
    gn.set_bf16_gemm("auto")


# (preset, load options): every family; int8 weights take 8-bit activations.  The bf16 compute
# mode multiplies in bf16 only from 16 rows on, which the passes must respect: it runs on the
# CPU's own bf16 unit (exactly where there is none) and on the emulated AMX kernel (any CPU).
CASES = [
    ("recurrentgemma-tiny", dict(dtype="float32")),
    ("recurrentgemma-tiny", dict(dtype="bfloat16", activations="bfloat16")),
    ("recurrentgemma-tiny", dict(dtype="bfloat16", activations="bfloat16", bf16_gemm="amx-emulated")),
    ("recurrentgemma-tiny", dict(dtype="int8")),
    ("gemma-tiny", dict(dtype="float32")),
    ("gemma2-tiny", dict(dtype="bfloat16")),
    ("gemma3-tiny", dict(dtype="int8")),
]
_models = {}


def _model(preset, opts):
    key = (preset, tuple(sorted(opts.items())))
    opts = dict(opts)
    gn.set_bf16_gemm(opts.pop("bf16_gemm", "auto"))
    if key not in _models:
        _models[key] = gn.random_model(preset, seed=5, **opts)
    return _models[key]


def _run(m, rows, head, tail, all_positions):
    """Logits of `tail` after `head` for each row (one forward_batch each), the states' bits and
    the logits of one more decode step."""
    states = [m.new_state() for _ in rows]
    if head:
        m.forward_batch(np.array([random_ids(head, m.config.vocab_size, seed=70 + r)
                                  for r in rows]), states)
    ids = np.array([random_ids(tail, m.config.vocab_size, seed=r) for r in rows])
    logits = m.forward_batch(ids, states, all_positions=all_positions)
    saved = [s.to_numpy() for s in states]
    step = m.forward_batch(np.array([[3]] * len(rows)), states)
    return logits, saved, step, [s.pos for s in states]


@pytest.mark.parametrize("preset,opts", CASES, ids=lambda v: v if isinstance(v, str) else
                         "-".join(f"{k}={o}" for k, o in sorted(v.items())))
@pytest.mark.parametrize("rows,head,tail,all_positions", [
    ((0,), 0, 70, True),       # one sequence: passes of a prompt from position 0
    ((0,), 9, 70, False),      # continuing a state; only the last pass runs the head
    ((0, 1, 2), 4, 23, True),  # several sequences: each pass takes a share of every row
    ((0, 1, 2), 0, 23, False),
    ((0,), 3, 12, True),       # calls under 16 rows: passes down to one token
    ((0, 1), 0, 7, True),
])
def test_passes_give_the_bits_of_one_pass(preset, opts, rows, head, tail, all_positions):
    m = _model(preset, opts)
    gn.set_max_pass_tokens(0)  # no limit: one pass
    want = _run(m, rows, head, tail, all_positions)
    # The splits (tokens per row and pass): 70 tokens as 18+18+17+17 (limits 1, 5, 16: no pass
    # under 16 rows), 24+23+23 (30), 35+35 (69); 3 rows x 23 as 8+8+7 (1-30) or 12+11 (68);
    # 12 tokens as 12 x 1 (1), 3 x 4 (5), 6+6 (11), one pass (16, 30); 2 rows x 7 as 7 x 1
    # (1), 2+2+2+1 (5), 4+3 (13), one pass (16, 30).
    for cap in (1, 5, 16, 30, len(rows) * tail - 1):
        gn.set_max_pass_tokens(cap)
        got = _run(m, rows, head, tail, all_positions)
        np.testing.assert_array_equal(got[0], want[0], err_msg=f"logits, max_pass_tokens={cap}")
        for g, w in zip(got[1], want[1]):
            np.testing.assert_array_equal(g, w, err_msg=f"state, max_pass_tokens={cap}")
        np.testing.assert_array_equal(got[2], want[2], err_msg=f"next step, max_pass_tokens={cap}")
        assert got[3] == want[3] == [head + tail + 1] * len(rows)


def test_passes_make_a_long_prompt_match_a_reference_split():
    """The default (512 rows) on a prompt of 1100 tokens: the same bits as feeding it in the
    caller's own chunks with no pass limit (so the default is exercised, not only small caps)."""
    m = _model("recurrentgemma-tiny", dict(dtype="float32"))
    ids = random_ids(1100, m.config.vocab_size, seed=11)
    s = m.new_state()
    got = m.forward(ids, s, all_positions=True)
    assert gn.backend_info()["max_pass_tokens"] == 512
    gn.set_max_pass_tokens(0)
    s2 = m.new_state()
    want = np.concatenate([m.forward(ids[i:i + 300], s2, all_positions=True)
                           for i in range(0, 1100, 300)])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(s.to_numpy(), s2.to_numpy())


@pytest.mark.parametrize("bad", [-1, 1.5, "8", True, np.float32(4), 1 << 41])
def test_bad_max_pass_tokens_are_refused(bad):
    with pytest.raises(gn.InvalidArgumentError, match="max_pass_tokens"):
        gn.set_max_pass_tokens(bad)
    assert gn.backend_info()["max_pass_tokens"] == 512  # unchanged


def test_max_pass_tokens_is_reported_and_reset():
    gn.set_max_pass_tokens(np.int64(64))
    assert gn.backend_info()["max_pass_tokens"] == 64
    gn.set_max_pass_tokens(0)
    assert gn.backend_info()["max_pass_tokens"] == 0
    gn.set_max_pass_tokens(None)
    assert gn.backend_info()["max_pass_tokens"] == 512


_ENV_CHILD = textwrap.dedent("""
    import gemma_native as gn, numpy as np
    try:
        print("reported", gn.backend_info()["max_pass_tokens"])
    except gn.InvalidArgumentError as e:
        print("refused", e)
        try:
            gn.random_model("recurrentgemma-tiny", seed=1).logits(np.arange(40))
        except gn.InvalidArgumentError:
            print("model refused too")
        gn.set_max_pass_tokens(None)
        m = gn.random_model("recurrentgemma-tiny", seed=1)
        print("after set", gn.backend_info()["max_pass_tokens"], m.logits(np.arange(40)).shape)
""")


@pytest.mark.parametrize("value,expect", [
    ("64", ["reported 64"]),
    ("0", ["reported 0"]),
    ("", ["reported 512"]),
    ("12x", ["refused GEMMA_NATIVE_MAX_PASS_TOKENS='12x'", "model refused too",
             "after set 512 (40, 512)"]),
    ("-3", ["refused GEMMA_NATIVE_MAX_PASS_TOKENS='-3'"]),
    ("99999999999999999999", ["refused"]),
])
def test_the_environment_variable_sets_the_limit_or_is_refused(value, expect):
    env = dict(os.environ)
    env["GEMMA_NATIVE_MAX_PASS_TOKENS"] = value
    out = subprocess.run([sys.executable, "-c", _ENV_CHILD], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    for line in expect:
        assert line in out.stdout, (out.stdout, out.stderr[-2000:])
