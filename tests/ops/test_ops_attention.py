"""rope and attention (prefill, segments, ring-buffer caches) against their numpy twins on every
CPU kernel set and the emulated CUDA kernels; conventions as in test_ops.py."""

from __future__ import annotations

import numpy as np
import pytest

import gemma_native as gn
from gemma_native import ops
from gemma_native import reference as ref
from gemma_native.errors import InvalidArgumentError

from tests.helpers.arrays import rnd
from tests.helpers.opcheck import assert_close


# ---------------------------------------------------------------------------------------------
# rope
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rot", ["full", "half", "zero"])
def test_rope_matches_reference(isa, rot):
    rng = np.random.default_rng(17)
    for head_dim in (4, 12, 36):
        rot_dims = {"full": head_dim, "half": head_dim // 2, "zero": 0}[rot]
        for heads in (1, 3):
            for n in (1, 5, 9):
                x = rnd(rng, n, heads, head_dim)
                x_before = x.copy()
                pos = rng.integers(-1, 3000, size=n).astype(np.int32)
                pos[0] = 0
                if n > 2:
                    pos[1], pos[2] = 100000, 65537
                if n > 4:
                    pos[3], pos[4] = 2**20 + 3, 2**31 - 1
                for base, factor in ((10000.0, 1.0), (500.0, 1.0), (1e6, 1.0), (1e6, 8.0)):
                    got = ops.rope(x, pos, rot_dims, base, factor)
                    want = ref.rope(x, pos, rot_dims, base, factor)
                    np.testing.assert_array_equal(x, x_before)  # the input is not modified
                    assert got.dtype == np.float32 and got.shape == x.shape
                    # |rotated pair| <= |x1| + |x2|; the twin mirrors the fp32 angle math
                    half = rot_dims // 2
                    mag = np.abs(x).copy()
                    if half:
                        s = np.abs(x[..., :half]) + np.abs(x[..., half:rot_dims])
                        mag[..., :half] = s
                        mag[..., half:rot_dims] = s
                    assert_close(got, want, mag,
                                 what=f"rope hd={head_dim} rot={rot_dims} H={heads} "
                                      f"N={n} base={base}")
                    # dims past rot_dims pass through untouched
                    np.testing.assert_array_equal(got[..., rot_dims:], x[..., rot_dims:])
                    if rot_dims == 0:
                        np.testing.assert_array_equal(got, x)


def test_rope_linear_factor_divides_positions(isa):
    rng = np.random.default_rng(19)
    x = rnd(rng, 3, 2, 16)
    np.testing.assert_allclose(ops.rope(x, np.array([0, 8, 800], np.int32), 16, 1e4, 8.0),
                               ops.rope(x, np.array([0, 1, 100], np.int32), 16, 1e4),
                               atol=1e-5)
    with pytest.raises(gn.InvalidArgumentError):
        ops.rope(x, np.zeros(3, np.int32), 16, 1e4, 0.0)


def test_rope_position_zero_is_identity_and_norm_preserved(isa):
    rng = np.random.default_rng(18)
    x = rnd(rng, 3, 2, 12)
    got = ops.rope(x, np.zeros(3, np.int32), 12)
    np.testing.assert_array_equal(got, x)
    got = ops.rope(x, np.array([1, 77, 100000], np.int32), 6)
    n_in = np.linalg.norm(x[..., :6].astype(np.float64), axis=-1)
    n_out = np.linalg.norm(got[..., :6].astype(np.float64), axis=-1)
    np.testing.assert_allclose(n_out, n_in, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# attention
# ---------------------------------------------------------------------------------------------

HEAD_CONFIGS = [(1, 1), (4, 1), (4, 2)]


def _attn_inputs(rng, batch, t_len, heads, kv_heads, hd):
    q = rnd(rng, batch, t_len, heads, hd)
    k = rnd(rng, batch, t_len, kv_heads, hd)
    v = rnd(rng, batch, t_len, kv_heads, hd)
    return q, k, v


def _attn_mag(*vs):
    """Outputs are convex combinations of value rows: bounded by max |v|."""
    return max(float(np.abs(a).max()) for a in vs if a is not None and a.size)


@pytest.mark.parametrize("softcap", [0.0, 2.5], ids=["nocap", "softcap"])
def test_attention_prefill_matches_reference(isa, softcap):
    rng = np.random.default_rng(19)
    for heads, kv_heads in HEAD_CONFIGS:
        for hd in (7, 16, 33):
            for batch, t_len in ((1, 1), (1, 13), (2, 9)):
                q, k, v = _attn_inputs(rng, batch, t_len, heads, kv_heads, hd)
                pos = np.tile(np.arange(t_len, dtype=np.int32), (batch, 1))
                for window in (0, 1, 3, 8, 100):
                    for scale in (hd ** -0.5, 1.0):
                        got = ops.attention(q, k, v, pos, window, scale, softcap)
                        want = ref.attention(q, k, v, pos, window, scale, softcap)
                        assert got.dtype == np.float32 and got.shape == q.shape
                        assert_close(got, want, _attn_mag(v),
                                     what=f"attn H={heads}/{kv_heads} hd={hd} B={batch} "
                                          f"T={t_len} W={window} scale={scale:.3g}")


def test_attention_window_zero_returns_own_value(isa):
    rng = np.random.default_rng(20)
    q, k, v = _attn_inputs(rng, 2, 6, 4, 2, 9)
    pos = np.tile(np.arange(6, dtype=np.int32), (2, 1))
    out = ops.attention(q, k, v, pos, 0, 0.3)
    want = np.repeat(v, 2, axis=2)  # query head h uses kv head h // 2
    assert_close(out, want, _attn_mag(v), what="window 0")


@pytest.mark.parametrize("softcap", [0.0, 3.0], ids=["nocap", "softcap"])
def test_attention_segments_mid_chunk(isa, softcap):
    rng = np.random.default_rng(21)
    pos = np.array([[0, 1, 2, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4],
                    [-1, -1, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6]], np.int32)
    batch, t_len = pos.shape
    for heads, kv_heads in HEAD_CONFIGS:
        q, k, v = _attn_inputs(rng, batch, t_len, heads, kv_heads, 11)
        for window in (0, 1, 3, 8, 100):
            got = ops.attention(q, k, v, pos, window, 11 ** -0.5, softcap)
            want = ref.attention(q, k, v, pos, window, 11 ** -0.5, softcap)
            assert_close(got, want, _attn_mag(v), what=f"segments H={heads}/{kv_heads} W={window}")
    # a query right at a document start sees only itself
    out = ops.attention(q, k, v, pos, 100, 1.0)
    assert_close(out[0, 3], np.repeat(v[0, 3], heads // kv_heads, axis=0), _attn_mag(v),
                 what="document start")


def _run_chunked(q, k, v, pos, window, scale, softcap, slots, schedule):
    """Runs the sequences chunk by chunk through a ring cache of `slots`; returns the outputs
    per chunk as (t0, t1, out) and checks the ring contents after every chunk."""
    batch, t_len, kv_heads, hd = k.shape
    k_cache = np.zeros((batch, slots, kv_heads, hd), np.float32)
    v_cache = np.zeros((batch, slots, kv_heads, hd), np.float32)
    results, t0, i = [], 0, 0
    while t0 < t_len:
        c = min(schedule[i % len(schedule)], t_len - t0)
        i += 1
        t1 = t0 + c
        count = np.full(batch, t0, np.int64)
        out = ops.attention(q[:, t0:t1], k[:, t0:t1], v[:, t0:t1], pos[:, t0:t1], window,
                            scale, softcap, k_cache, v_cache, count)
        results.append((t0, t1, out))
        for p in range(max(0, t1 - slots), t1):  # key p lives in slot p % S
            np.testing.assert_array_equal(k_cache[:, p % slots], k[:, p])
            np.testing.assert_array_equal(v_cache[:, p % slots], v[:, p])
        t0 = t1
    return results


@pytest.mark.parametrize("window_kind", ["window_eq_slots", "window_lt_slots"])
def test_attention_ring_cache_chunked_equals_prefill(isa, window_kind):
    """The ring-buffer wrap-around check: a sequence of 3*S+2 tokens processed in chunks of
    many sizes gives, chunk by chunk, the no-cache prefill of the whole sequence."""
    rng = np.random.default_rng(22)
    slots = 6
    window = slots if window_kind == "window_eq_slots" else 4
    t_len = 3 * slots + 2
    heads, kv_heads, hd, batch = 4, 2, 9, 2
    q, k, v = _attn_inputs(rng, batch, t_len, heads, kv_heads, hd)
    pos = np.tile(np.arange(t_len, dtype=np.int32), (batch, 1))
    scale, softcap = hd ** -0.5, 0.0
    whole = ops.attention(q, k, v, pos, window, scale, softcap)
    assert_close(whole, ref.attention(q, k, v, pos, window, scale, softcap), _attn_mag(v),
                 what="whole prefill vs twin")
    schedules = {
        "token_by_token": [1],
        "twos": [2],
        "S-1": [slots - 1],
        "S": [slots],
        "S+1": [slots + 1],
        "mixed": [1, 2, slots - 1, slots, slots + 1],
        "mixed_rev": [slots + 1, slots, slots - 1, 2, 1],
        "big_first": [2 * slots + 1, 1, 3],
    }
    for name, schedule in schedules.items():
        for t0, t1, out in _run_chunked(q, k, v, pos, window, scale, softcap, slots, schedule):
            assert_close(out, whole[:, t0:t1], _attn_mag(v),
                         what=f"{name}: chunk [{t0}, {t1}) W={window} S={slots}")


@pytest.mark.filterwarnings("ignore:.*oversubscribes")
@pytest.mark.parametrize("hd", [40, 256])
def test_attention_bits_do_not_depend_on_chunks_or_threads(isa, hd):
    """The CPU kernels sum every score and output in key order whatever the work split (heads
    blocked together, keys in tiles, the group split across threads when there are few
    queries), so token-by-token decode through the ring, other chunkings and other thread
    counts give the whole prefill's bits.  10 query heads on 1 K/V head (Griffin's MQA) make
    every head-block remainder occur; 70 keys span several key tiles."""
    rng = np.random.default_rng(26)
    t_len, slots, window = 70, 80, 64
    q, k, v = _attn_inputs(rng, 1, t_len, 10, 1, hd)
    pos = np.arange(t_len, dtype=np.int32)[None]
    scale, softcap = hd ** -0.5, 0.0
    threads = gn.backend_info()["num_threads"]
    try:
        gn.set_num_threads(1)
        whole = ops.attention(q, k, v, pos, window, scale, softcap)
        for n_threads in (1, 2, 3):
            gn.set_num_threads(n_threads)
            np.testing.assert_array_equal(ops.attention(q, k, v, pos, window, scale, softcap),
                                          whole, err_msg=f"threads={n_threads}")
            for schedule in ([1], [5, 1, 17]):
                for t0, t1, out in _run_chunked(q, k, v, pos, window, scale, softcap, slots,
                                                schedule):
                    np.testing.assert_array_equal(
                        out, whole[:, t0:t1],
                        err_msg=f"threads={n_threads} {schedule}: chunk [{t0}, {t1})")
    finally:
        gn.set_num_threads(threads)


def test_attention_ring_cache_softcap_and_mqa(isa):
    rng = np.random.default_rng(23)
    slots = window = 5
    t_len = 3 * slots + 2
    q, k, v = _attn_inputs(rng, 1, t_len, 4, 1, 16)
    pos = np.arange(t_len, dtype=np.int32)[None]
    whole = ops.attention(q, k, v, pos, window, 1.0, 4.0)
    assert_close(whole, ref.attention(q, k, v, pos, window, 1.0, 4.0), _attn_mag(v),
                 what="twin")
    for schedule in ([1], [3, 1, 4]):
        for t0, t1, out in _run_chunked(q, k, v, pos, window, 1.0, 4.0, slots, schedule):
            assert_close(out, whole[:, t0:t1], _attn_mag(v), what=f"{schedule} [{t0}, {t1})")


def test_attention_cache_matches_reference_per_row_counts(isa):
    """Different counts per sequence, a prefilled (random) ring, document starts in the chunk."""
    rng = np.random.default_rng(24)
    batch, t_len, heads, kv_heads, hd, slots = 2, 7, 4, 2, 13, 8
    for window in (3, 8):
        q, k, v = _attn_inputs(rng, batch, t_len, heads, kv_heads, hd)
        k_cache = rnd(rng, batch, slots, kv_heads, hd)
        v_cache = rnd(rng, batch, slots, kv_heads, hd)
        count = np.array([3, 11], np.int64)
        pos = np.array([[3, 4, 5, 6, 0, 1, 2], [11, 12, 0, 1, 2, 3, 4]], np.int32)
        kc_n, vc_n, kc_r, vc_r = k_cache.copy(), v_cache.copy(), k_cache.copy(), v_cache.copy()
        got = ops.attention(q, k, v, pos, window, 0.4, 0.0, kc_n, vc_n, count)
        want = ref.attention(q, k, v, pos, window, 0.4, 0.0, kc_r, vc_r, count)
        assert_close(got, want, _attn_mag(v, v_cache), what=f"per-row counts W={window}")
        np.testing.assert_array_equal(kc_n, kc_r)
        np.testing.assert_array_equal(vc_n, vc_r)


def test_attention_cache_too_small(isa):
    rng = np.random.default_rng(25)
    q, k, v = _attn_inputs(rng, 1, 1, 2, 1, 8)
    pos = np.array([[9]], np.int32)
    slots, window = 4, 6
    kc = rnd(rng, 1, slots, 1, 8)
    vc = rnd(rng, 1, slots, 1, 8)
    # enough history that more than `slots` cached keys would be visible -> error
    for count in (5, 6, 50):
        with pytest.raises(InvalidArgumentError):
            ops.attention(q, k, v, pos, window, 1.0, 0.0, kc.copy(), vc.copy(),
                          np.array([count], np.int64))
    # with no more history than slots the small cache is still exact
    for count in (0, 3, 4):
        a_k, a_v, b_k, b_v = kc.copy(), vc.copy(), kc.copy(), vc.copy()
        c = np.array([count], np.int64)
        got = ops.attention(q, k, v, pos, window, 1.0, 0.0, a_k, a_v, c)
        want = ref.attention(q, k, v, pos, window, 1.0, 0.0, b_k, b_v, c)
        assert_close(got, want, _attn_mag(v, vc), what=f"small cache count={count}")
        np.testing.assert_array_equal(a_k, b_k)
