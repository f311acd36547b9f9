"""sample and sample_uniform against their numpy twins, draw for draw, and the empirical
distribution of the draws; conventions as in test_ops.py."""

from __future__ import annotations

import numpy as np
import pytest

import gemma_native as gn
from gemma_native import ops
from gemma_native import reference as ref
from gemma_native.errors import InvalidArgumentError

from tests.helpers.arrays import rnd


# ---------------------------------------------------------------------------------------------
# sample, sample_uniform
# ---------------------------------------------------------------------------------------------


def _sample_both(logits, temperature, top_k, top_p, seeds, counters):
    b = logits.shape[0]
    col = lambda v, dt: np.broadcast_to(np.asarray(v, dt), (b,)).copy()  # noqa: E731
    t, k, p = col(temperature, np.float32), col(top_k, np.int32), col(top_p, np.float32)
    s, c = col(seeds, np.uint64), col(counters, np.uint64)
    got = ops.sample(logits, t, k, p, s, c)
    want = ref.sample(logits, t, k, p, s, c)
    assert got.dtype == np.int32 and got.shape == (b,)
    return got, want


def test_sample_greedy_is_argmax(isa):
    rng = np.random.default_rng(28)
    for vocab in (1, 7, 33, 1000):
        logits = rnd(rng, 16, vocab, scale=3.0)
        got, want = _sample_both(logits, 0.0, 0, 1.0, 1, 2)
        np.testing.assert_array_equal(got, np.argmax(logits, axis=1))
        np.testing.assert_array_equal(got, want)
    # ties -> lowest index; NaN never chosen; -inf rows fall back to index 0
    logits = np.array([
        [1.0, 3.0, 2.0, 3.0, 3.0],
        [np.nan, 1.0, np.nan, 1.0, 0.0],
        [np.nan, -1.0, np.inf, np.nan, np.inf],
        [-np.inf, -np.inf, -np.inf, -np.inf, -np.inf],
        [-5.0, np.nan, -5.0, -7.0, np.nan],
    ], np.float32)
    got, want = _sample_both(logits, [0.0, 0.0, -0.0, 0.0, 0.0], [0, 5, 0, 2, 1],
                             [1.0, 0.5, 1.0, 0.9, 1.0], 7, 3)
    np.testing.assert_array_equal(got, [1, 1, 2, 0, 0])
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.5])
def test_sample_matches_reference_draw_for_draw(isa, temperature):
    rng = np.random.default_rng(29)
    vocab, draws = 37, 60
    base = rnd(rng, vocab, scale=2.0)
    base[5] = base[11] = base.max() + 0.5  # a tie at the top
    base[20] = np.nan
    base[21] = -np.inf
    logits = np.tile(base, (draws, 1))
    logits[::7] = rnd(rng, len(logits[::7]), vocab, scale=2.0)  # some other rows
    logits[:, 20] = np.nan
    logits[:, 21] = -np.inf
    seeds = rng.integers(0, 2**63, size=draws, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    counters = rng.integers(0, 2**40, size=draws, dtype=np.uint64)
    counters[:3] = [0, 1, 2**64 - 1]
    for top_k in (0, 1, 2, 5, vocab, vocab + 3):
        for top_p in (1.0, 0.9, 0.5, 1e-3):
            got, want = _sample_both(logits, temperature, top_k, top_p, seeds, counters)
            np.testing.assert_array_equal(got, want, err_msg=f"top_k={top_k} top_p={top_p}")
            assert np.all((got >= 0) & (got < vocab)) and not np.any(got == 20)


def test_sample_top_k_1_is_greedy(isa):
    rng = np.random.default_rng(30)
    logits = rnd(rng, 200, 33, scale=2.0)
    seeds = np.arange(200, dtype=np.uint64) * np.uint64(977)
    counters = np.arange(200, dtype=np.uint64)
    for temperature in (0.5, 1.0, 10.0):
        for top_p in (1.0, 0.3):
            got, _ = _sample_both(logits, temperature, 1, top_p, seeds, counters)
            np.testing.assert_array_equal(got, np.argmax(logits, axis=1))


def test_sample_uniform_matches_reference():
    rng = np.random.default_rng(31)
    pairs = [(0, 0), (0, 1), (1, 0), (2**64 - 1, 2**64 - 1), (2**64 - 1, 0), (0, 2**64 - 1),
             (12345, 2**63)]
    pairs += [(int(s), int(c)) for s, c in rng.integers(0, 2**64, size=(300, 2), dtype=np.uint64)]
    pairs += [(7, c) for c in range(100)]
    for seed, counter in pairs:
        u = gn.ops.sample_uniform(seed, counter)
        assert u == ref.sample_uniform(seed, counter), (seed, counter)
        assert 0.0 <= u < 1.0
    values = np.array([gn.ops.sample_uniform(42, c) for c in range(2000)])
    assert abs(values.mean() - 0.5) < 0.03 and len(np.unique(values)) > 1990


def _chi_square(ids, probs):
    n = len(ids)
    observed = np.bincount(ids, minlength=len(probs)).astype(np.float64)
    assert np.all(observed[probs == 0] == 0), "a token outside the kept set was drawn"
    keep = probs > 0
    expected = probs[keep] * n
    return float(np.sum((observed[keep] - expected) ** 2 / expected)), int(keep.sum()) - 1


@pytest.mark.parametrize("top_k,top_p", [(0, 1.0), (3, 1.0), (0, 0.8), (4, 0.7)])
def test_sample_empirical_distribution(top_k, top_p):
    logits = np.array([2.0, 1.5, 0.3, -0.4, 1.0, -1.0], np.float32)
    temperature, n = 0.7, 20000
    z = logits.astype(np.float64) / temperature
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    order = np.argsort(-probs, kind="stable")
    keep = np.ones_like(probs, bool)
    if top_k:
        keep[:] = False
        keep[order[:top_k]] = True
    if top_p < 1.0:
        p_sorted = np.where(keep[order], probs[order], 0.0)
        p_sorted /= p_sorted.sum()
        cut = int(np.searchsorted(np.cumsum(p_sorted), top_p)) + 1
        kept = np.zeros_like(keep)
        kept[order[:cut]] = True
        keep &= kept
    probs = np.where(keep, probs, 0.0)
    probs /= probs.sum()
    ids = ops.sample(np.tile(logits, (n, 1)), np.full(n, temperature, np.float32),
                     np.full(n, top_k, np.int32), np.full(n, top_p, np.float32),
                     np.full(n, 1234, np.uint64), np.arange(n, dtype=np.uint64))
    chi2, dof = _chi_square(ids, probs)
    # dof <= 5: chi2 > 40 has probability < 1e-6 under the right distribution
    assert chi2 < 40.0, f"chi2 {chi2:.1f} with {dof} dof; counts {np.bincount(ids, minlength=6)}"


def test_sample_tiny_temperature_is_near_greedy():
    """A tiny (finite, > 0) temperature is a valid argument and must act like greedy: dividing
    by it overflows the scaled logits to +inf, which must not turn into NaN probabilities that
    make the sampler return the last candidate."""
    logits = np.array([[1.0, 5.0, 2.0, 3.0]], np.float32)
    for temperature in (1e-6, 1e-30, 1e-38, 1e-45):
        for top_k, top_p in ((0, 1.0), (2, 1.0), (0, 0.9)):
            got = ops.sample(logits, temperature, top_k, top_p, 1, 2)
            assert int(got[0]) == 1, (temperature, top_k, top_p, int(got[0]))


def test_sample_scalar_parameters_broadcast_over_rows():
    """ops.sample documents per-row parameters but also accepts scalars (its `col` helper
    broadcasts 0-d values to the batch)."""
    rng = np.random.default_rng(33)
    logits = rnd(rng, 3, 11)
    got = ops.sample(logits, 0.0, 0, 1.0, 0, 0)
    np.testing.assert_array_equal(got, np.argmax(logits, axis=1))
    got = ops.sample(logits, 1.0, 1, 0.5, 9, 4)  # top_k = 1: greedy again
    np.testing.assert_array_equal(got, np.argmax(logits, axis=1))


def test_sample_bad_values_raise():
    logits = np.zeros((2, 5), np.float32)
    good = dict(temperature=[1.0, 1.0], top_k=[0, 0], top_p=[1.0, 1.0], seed=[0, 0],
                counter=[0, 0])
    ops.sample(logits, **good)  # sanity
    bad_cases = [
        ("temperature", -0.5), ("temperature", np.nan), ("temperature", np.inf),
        ("temperature", -np.inf), ("top_p", 0.0), ("top_p", 1.5), ("top_p", -0.2),
        ("top_p", np.nan), ("top_k", -1),
    ]
    for name, value in bad_cases:
        kwargs = {k: list(v) for k, v in good.items()}
        kwargs[name][1] = value  # the bad row is not the first one
        with pytest.raises(InvalidArgumentError):
            ops.sample(logits, **kwargs)


@pytest.mark.parametrize("scale", [0.01, 1.0, 12.0])
def test_top_p_large_vocab_matches_reference(scale):
    """top-p alone sorts only the ids above a probability floor, lowered until they hold
    top_p of the mass: flat rows (scale 0.01) need the whole row, peaked ones (12) a few ids.
    Draw for draw against the numpy twin, which sorts everything."""
    rng = np.random.default_rng(31)
    vocab, rows = 20000, 6
    logits = rnd(rng, rows, vocab, scale=scale)
    logits[1, 7] = logits[1].max() + 3.0
    seeds = np.arange(1, rows + 1, dtype=np.uint64) * np.uint64(7919)
    counters = np.arange(rows, dtype=np.uint64)
    for temperature in (0.7, 1.5):
        for top_p in (0.5, 0.95, 0.999999):
            got, want = _sample_both(logits, temperature, 0, top_p, seeds, counters)
            np.testing.assert_array_equal(got, want, err_msg=f"T={temperature} top_p={top_p}")


@pytest.mark.parametrize("scale", [0.05, 2.0, 15.0])
def test_every_path_at_a_large_vocab_matches_reference(isa, scale):
    """The paths that only a large vocabulary takes: the per-ISA passes over the row (argmax,
    the lane sum of the weights), the walk over blocks of 8 for temperature alone, the top-p
    candidates above a logit threshold, top-k's threshold from every 16th id.  V is odd, so
    every tail runs; rows hold NaN, -inf and ties at the top.  Draw for draw."""
    rng = np.random.default_rng(41)
    vocab, rows = 5003, 8
    logits = rnd(rng, rows, vocab, scale=scale)
    logits[1, [3, 700, 4999]] = logits[1].max() + 2.0  # a three-way tie at the top
    logits[2, ::3] = np.nan
    logits[3, 100:4000] = -np.inf
    logits[4, :] = np.float32(0.5)  # all equal
    logits[5, 1:] = -np.inf  # one id left
    logits[6, ::16] = logits[6].max() + 1.0  # the sampled ids are the best ones
    seeds = np.arange(1, rows + 1, dtype=np.uint64) * np.uint64(104729)
    for counter in (0, 1, 2**63):
        counters = np.full(rows, counter, np.uint64) + np.arange(rows, dtype=np.uint64)
        for temperature in (0.6, 1.0, 3.0):
            for top_k in (0, 1, 7, 40, vocab - 1, vocab, vocab + 5):
                for top_p in (1.0, 0.95, 0.3):
                    got, want = _sample_both(logits, temperature, top_k, top_p, seeds, counters)
                    np.testing.assert_array_equal(
                        got, want, err_msg=f"T={temperature} top_k={top_k} top_p={top_p}")
                    assert got[5] == 0 and not np.any(np.isnan(logits[2, got[2]]))


def test_greedy_ties_across_vector_lanes(isa):
    """The argmax runs as per-lane maxima on two chains; the lowest index of the largest value
    must win whichever lane or chain holds it, -0 and +0 count as equal, NaN never wins."""
    vocab = 1000
    cases = []
    for where in ([37, 5, 900], [999, 998], [16, 0], [33, 1, 64]):
        row = np.full(vocab, -1.0, np.float32)
        row[where] = 7.0
        cases.append((row, min(where)))
    row = np.full(vocab, -3.0, np.float32)
    row[40], row[9] = 0.0, -0.0
    cases.append((row, 9))
    row = np.full(vocab, np.nan, np.float32)
    row[[500, 20]] = -np.inf
    row[777] = -5.0
    cases.append((row, 777))
    row = np.full(vocab, np.nan, np.float32)
    cases.append((row, 0))
    row = np.zeros(vocab, np.float32)
    row[[300, 301]] = np.inf
    cases.append((row, 300))
    logits = np.stack([c[0] for c in cases])
    got, want = _sample_both(logits, 0.0, 0, 1.0, 1, 0)
    np.testing.assert_array_equal(got, [c[1] for c in cases])
    np.testing.assert_array_equal(got, want)


def test_weight_exp_twin_is_exp():
    """The sampler's weights come from the library's own exp series (the same bits in C++ and
    in the numpy twin); the twin itself must be e^x to the series' accuracy."""
    x = np.concatenate([np.linspace(-708.0, 709.0, 20001), -np.logspace(-12, 2.8, 2000)])
    want = np.exp(x)
    np.testing.assert_allclose(ref.exp_d(x), want, rtol=2e-15, atol=0)
    # degree 10: the series' remainder is at most ~3.06e-13 of e^x (|r| <= ln 2 / 2); this grid
    # reaches 2.98e-13, so the bound leaves room for a 1-ulp difference in numpy's exp
    np.testing.assert_allclose(ref.exp_d(x, 10), want, rtol=3.5e-13, atol=0)
    assert np.isnan(ref.exp_d(np.array([np.nan])))[0]
