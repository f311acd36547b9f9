"""logit_bias, repetition / presence / frequency penalties and min_p (SamplingParams), checked
against a plain-Python float64 re-statement of each rule and a step-by-step greedy loop over
Model.forward."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gemma_native as gn
from gemma_native import _logits
from gemma_native.errors import InvalidArgumentError


def ref_process(row, p, prompt, generated):
    """The rules of SamplingParams' docstring, one id at a time, in float64."""
    out = [float(v) for v in row]
    for tok, b in (p.logit_bias or {}).items():
        out[tok] += b
    if p.repetition_penalty != 1.0:
        for tok in set(prompt) | set(generated):
            out[tok] = out[tok] / p.repetition_penalty if out[tok] > 0 else \
                out[tok] * p.repetition_penalty
    for tok in set(generated):
        out[tok] -= p.presence_penalty + p.frequency_penalty * generated.count(tok)
    if p.min_p > 0 and p.temperature > 0:
        top = max(out)
        out = [v if math.exp((v - top) / p.temperature) >= p.min_p else -math.inf for v in out]
    return np.array(out)


@pytest.mark.parametrize("kw", [
    dict(logit_bias={3: 5.5, 17: -100.0}),
    dict(repetition_penalty=1.7),
    dict(repetition_penalty=0.6),
    dict(presence_penalty=0.8, frequency_penalty=-0.3),
    dict(min_p=0.05, temperature=0.7),
    dict(logit_bias={0: 2.0}, repetition_penalty=1.3, presence_penalty=1.0,
         frequency_penalty=0.5, min_p=0.1, temperature=1.3),
])
def test_process_matches_the_rules(kw):
    rng = np.random.default_rng(7)
    row = (rng.standard_normal(300) * 3).astype(np.float32)
    prompt = [1, 5, 5, 9, 40]
    generated = [5, 7, 7, 7, 120, 3]
    p = gn.SamplingParams(**kw)
    h = _logits.TokenHistory(prompt)
    for t in generated:
        h.add(t)
    got = _logits.process(row, p, h).astype(np.float64)
    want = ref_process(row, p, prompt, generated)
    assert np.array_equal(np.isinf(got), np.isinf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-6, atol=1e-5)
    if "min_p" in kw:  # no value sits near the cut, so the kept set is not rounding luck
        pre = ref_process(row, gn.SamplingParams(**{**kw, "min_p": 0.0}), prompt, generated)
        r = np.exp((pre - pre.max()) / kw["temperature"]) / kw["min_p"]
        assert np.all(np.abs(np.log(r)) > 1e-4)
        assert fin.sum() < len(row)  # the cut removed something


def _greedy_reference(model, prompt, p, n):
    state = model.new_state()
    logits = model.forward(prompt, state)
    out = []
    for _ in range(n):
        tok = int(np.argmax(ref_process(logits, p, prompt, out)))
        out.append(tok)
        logits = model.forward([tok], state)
    return out


@pytest.mark.parametrize("kw", [
    dict(repetition_penalty=3.0),
    dict(presence_penalty=2.0, frequency_penalty=1.5),
    dict(logit_bias={11: 4.0, 12: 3.0}),
])
def test_greedy_generate_follows_the_rules(kw):
    model = gn.random_model("recurrentgemma-tiny", vocab_size=64, seed=2)
    prompt = [2, 9, 9, 31, 4]
    p = gn.SamplingParams(max_tokens=16, stop_token_ids=(), **kw)
    got = model.generate(prompt, p).token_ids
    assert got == _greedy_reference(model, prompt, p, 16)
    assert got != model.generate(prompt, max_tokens=16, stop_token_ids=()).token_ids


def test_logit_bias_forces_and_bans():
    model = gn.random_model("recurrentgemma-tiny", vocab_size=64, seed=2)
    prompt = [2, 9, 9, 31, 4]
    assert model.generate(prompt, max_tokens=6, stop_token_ids=(),
                          logit_bias={"33": 100}).token_ids == [33] * 6
    logits = model.logits(prompt)[-1]
    order = np.argsort(-logits.astype(np.float64), kind="stable")
    first = model.generate(prompt, max_tokens=1, stop_token_ids=(),
                           logit_bias={int(order[0]): -100}).token_ids[0]
    assert first == int(order[1])


def test_min_p_sampling_only_draws_kept_ids():
    model = gn.random_model("recurrentgemma-tiny", vocab_size=64, seed=2)
    prompt = [2, 9]
    logits = model.logits(prompt)[-1].astype(np.float64)
    probs = np.exp(logits - logits.max())
    kept = set(np.flatnonzero(probs >= 0.5 * probs.max()).tolist())
    firsts = {model.generate(prompt, max_tokens=1, temperature=1.0, min_p=0.5,
                             seed=s).token_ids[0] for s in range(40)}
    assert firsts <= kept


@pytest.mark.parametrize("kw,word", [
    (dict(min_p=1.0), "min_p"), (dict(min_p=-0.1), "min_p"),
    (dict(repetition_penalty=0), "repetition_penalty"),
    (dict(presence_penalty=2.5), "presence_penalty"),
    (dict(frequency_penalty=float("nan")), "frequency_penalty"),
    (dict(logit_bias={"x": 1}), "logit_bias"), (dict(logit_bias={-1: 1}), "logit_bias"),
    (dict(logit_bias={1: 101}), "logit_bias"), (dict(logit_bias=[1, 2]), "logit_bias"),
    (dict(logit_bias={True: 1}), "logit_bias"),
])
def test_bad_values_are_rejected(kw, word):
    with pytest.raises(InvalidArgumentError, match=word):
        gn.SamplingParams(**kw)


def test_logit_bias_outside_the_vocabulary():
    model = gn.random_model("recurrentgemma-tiny", vocab_size=64, seed=2)
    with pytest.raises(InvalidArgumentError, match="vocabulary"):
        model.generate([2, 3], max_tokens=2, logit_bias={64: 1.0})


def test_min_p_cut_is_the_float64_comparison_at_the_boundary():
    """min_p compares float32 logits with the float64 floor l_max + T ln(min_p) through the
    smallest float32 at or above the floor; the kept set must be exactly {l : l >= floor} in
    float64, including the float32 neighbours of the floor itself."""
    rng = np.random.default_rng(5)
    for _ in range(200):
        top = np.float32(rng.uniform(-30, 30))
        temperature, min_p = float(rng.uniform(0.05, 3.0)), float(rng.uniform(1e-4, 0.99))
        floor = float(top) + temperature * math.log(min_p)
        near = np.float32(floor)
        ladder = [near]
        for _ in range(3):
            ladder = [np.nextafter(ladder[0], np.float32(-np.inf))] + ladder
            ladder.append(np.nextafter(ladder[-1], np.float32(np.inf)))
        row = np.array([top, *ladder, -np.inf, top - np.float32(100)], np.float32)
        out = _logits.process(row, gn.SamplingParams(temperature=temperature, min_p=min_p),
                              _logits.TokenHistory([]))
        want = np.where(row.astype(np.float64) >= floor, row, -np.inf).astype(np.float32)
        np.testing.assert_array_equal(out, want)
