"""Plain numpy twins of every native op (``gemma_native.ops``), same names and signatures.

They are written for clarity, not speed, straight from the math in docs/model-math.md; the tests
compare each native kernel (on every CPU ISA) with its twin.  All math is float32 unless noted.
Weights may be float32, float16, or bfloat16 given as ``(uint16_bits, "bfloat16")`` like in
:mod:`gemma_native.ops`.
"""

from __future__ import annotations

import math

import numpy as np

from ._dtypes import INT8_FORMAT, Q8_0R16, QUANT_CODES, bf16_round, split_weight, unpack_q8_0r16, weight_to_f32

__all__ = [
    "embedding", "rmsnorm", "linear", "quantize_activations", "block_diag_linear", "conv1d", "rglru_scan", "rope",
    "attention", "gelu_tanh", "geglu", "softcap", "add", "sample", "sample_uniform",
]


def embedding(table, ids, scale=1.0):
    t = weight_to_f32(table)
    return t[np.asarray(ids, dtype=np.int64)] * np.float32(scale)


def rmsnorm(x, w, eps=1e-6, offset=1.0):
    x = np.asarray(x, np.float32)
    ms = np.mean(x.astype(np.float64) ** 2, axis=-1, keepdims=True)
    inv = (1.0 / np.sqrt(ms + eps)).astype(np.float32)
    return (x * inv * (np.float32(offset) + np.asarray(w, np.float32))).astype(np.float32)


def linear(x, w, bias=None, float_activations=False, bf16_activations=False):
    """x @ W.T + bias.  GGML-quantized W meets 8-bit activations (see quantize_activations and
    _int8_linear) unless float_activations; float W meets float32 x (sums in float64), or with
    bf16_activations x and W rounded to bfloat16 (the bf16 compute mode's products; its sums are
    float32, these float64)."""
    arr, name = split_weight(w)
    if name == Q8_0R16:  # Q8_0's values; the kernels sum whole blocks in int32 (ops.linear)
        arr, name = unpack_q8_0r16(arr), INT8_FORMAT
    if name in QUANT_CODES and not float_activations:
        y = _int8_linear(np.asarray(x, np.float32), np.asarray(arr), name)
    elif bf16_activations:
        xb = bf16_round(np.asarray(x, np.float32)).astype(np.float64)
        y = xb @ bf16_round(weight_to_f32(w)).T.astype(np.float64)
    else:
        y = np.asarray(x, np.float32).astype(np.float64) @ weight_to_f32(w).T.astype(np.float64)
    if bias is not None:
        y = y + np.asarray(bias, np.float64)
    return y.astype(np.float32)


def quantize_activations(x, block):
    """Rows of x quantized to 8 bits per block of 32 ("q8_0") or 256 ("q8_K") values, the way
    llama.cpp's x86 CPU backend does it.  Returns (d [n, nb] float32, q [n, nb, block] int8):
    x ~ d * q.  32: d = half(amax / 127), q = rint(x * (127 / amax)).  256: with x_m the first
    value of largest magnitude, s = -127 / x_m, q = rint(x * s), d = 1 / s (float32)."""
    x = np.asarray(x, np.float32)
    n, k = x.shape
    xb = x.reshape(n, k // block, block)
    amax = np.abs(xb).max(axis=2)
    nz = amax != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        if block == 32:
            d = (amax / np.float32(127)).astype(np.float16).astype(np.float32)
            scale = np.where(nz, np.float32(127) / amax, np.float32(0))
        else:
            xm = np.take_along_axis(xb, np.abs(xb).argmax(axis=2)[:, :, None], axis=2)[:, :, 0]
            scale = np.where(nz, np.float32(-127) / xm, np.float32(0)).astype(np.float32)
            d = np.where(nz, np.float32(1) / scale, np.float32(0)).astype(np.float32)
    v = np.clip(xb * scale[:, :, None].astype(np.float32), -127, 127)
    q = np.rint(np.nan_to_num(v, nan=0.0)).astype(np.int8)
    return d.astype(np.float32), q


def _block_ints(raw, kind):
    """Integer view of GGML blocks: (per-value ints [rows, nb, 256 or 32], per-value integer
    multipliers, block scales) such that W = sum of the parts below (see _int8_linear)."""
    from .loading import ggml

    rows = raw.shape[0]
    b = np.ascontiguousarray(raw).reshape(-1, ggml.ggml_type(kind).type_size)
    p = ggml.unpack_blocks(kind, b)
    d = p["d"].reshape(rows, -1)
    if kind in ("Q8_0", "Q4_0", "Q5_0"):
        return {"q": p["q"].astype(np.int64).reshape(rows, -1, 32), "d": d}
    if kind == "Q4_K":
        return {"q": p["q"].astype(np.int64).reshape(rows, -1, 8, 32),
                "sc": p["sc"].astype(np.int64).reshape(rows, -1, 8),
                "mn": p["mn"].astype(np.int64).reshape(rows, -1, 8),
                "d": d, "dmin": p["dmin"].reshape(rows, -1)}
    # Q6_K
    return {"q": p["q"].astype(np.int64).reshape(rows, -1, 16, 16),
            "sc": p["sc"].astype(np.int64).reshape(rows, -1, 16), "d": d}


def _int8_linear(x, raw, kind):
    """Exact integer block dot products of quantized W with 8-bit activations, block scales
    applied in float64 (the native kernels combine them in float32)."""
    parts = _block_ints(raw, kind)
    if kind in ("Q8_0", "Q4_0", "Q5_0"):
        da, qa = quantize_activations(x, 32)
        sumi = np.einsum("mbk,nbk->nmb", parts["q"], qa.astype(np.int64))
        scale = parts["d"].astype(np.float64)[None] * da.astype(np.float64)[:, None]
        return (scale * sumi).sum(axis=2)
    da, qa = quantize_activations(x, 256)
    da = da.astype(np.float64)[:, None]
    if kind == "Q4_K":
        qa = qa.astype(np.int64).reshape(qa.shape[0], qa.shape[1], 8, 32)
        dots = np.einsum("mbjl,nbjl->nmbj", parts["q"], qa)
        isum = (dots * parts["sc"][None]).sum(axis=3)
        msum = (qa.sum(axis=3)[:, None] * parts["mn"][None]).sum(axis=3)
        return (parts["d"].astype(np.float64)[None] * da * isum
                - parts["dmin"].astype(np.float64)[None] * da * msum).sum(axis=2)
    qa = qa.astype(np.int64).reshape(qa.shape[0], qa.shape[1], 16, 16)
    dots = np.einsum("mbgl,nbgl->nmbg", parts["q"], qa)
    isum = (dots * parts["sc"][None]).sum(axis=3)
    return (parts["d"].astype(np.float64)[None] * da * isum).sum(axis=2)


def block_diag_linear(x, w, b=None):
    x = np.asarray(x, np.float32)
    wf = weight_to_f32(w)
    blocks, bs, _ = wf.shape
    xb = x.reshape(x.shape[0], blocks, bs).astype(np.float64)
    y = np.einsum("nhi,hij->nhj", xb, wf.astype(np.float64))
    if b is not None:
        y = y + np.asarray(b, np.float64)[None]
    return y.reshape(x.shape).astype(np.float32)


def conv1d(x, pos, w, bias=None, state=None):
    """Causal depthwise conv; returns y and (if state is given) updates state in place."""
    x = np.asarray(x, np.float32)
    pos = np.asarray(pos)
    w = np.asarray(w, np.float32)
    bsz, t_len, ch = x.shape
    k = w.shape[0]
    hist = np.zeros((bsz, k - 1, ch), np.float32) if state is None else np.asarray(state, np.float32)
    full = np.concatenate([hist, x], axis=1)  # index i of x is k-1+i of full
    y = np.zeros_like(x) + (0 if bias is None else np.asarray(bias, np.float32))
    for b in range(bsz):
        for t in range(t_len):
            for s in range(k):
                src = t - s
                if any(pos[b, j] == 0 for j in range(max(src + 1, 0), t + 1)):
                    break  # an input across a document start is dropped (the start itself stays)
                if src < -(k - 1):
                    break
                y[b, t] += w[k - 1 - s] * full[b, k - 1 + src]
    if state is not None:
        state[...] = full[:, full.shape[1] - (k - 1):]
    return y


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _softplus(v):
    return np.where(v > 20.0, v, np.log1p(np.exp(np.minimum(v, 20.0))))


def rglru_scan(x, gate_x, gate_a, a_param, pos, h):
    """RG-LRU over [B, T, L]; h [B, L] float32 is updated in place.  Returns y."""
    x = np.asarray(x, np.float64)
    gx = _sigmoid(np.asarray(gate_x, np.float64))
    ga = _sigmoid(np.asarray(gate_a, np.float64))
    log_a = -8.0 * ga * _softplus(np.asarray(a_param, np.float64))
    a = np.exp(log_a)
    mult = np.sqrt(1.0 - np.exp(2.0 * log_a))
    reset = np.asarray(pos) == 0
    y = np.zeros(x.shape, np.float32)
    hh = np.asarray(h, np.float64).copy()
    for t in range(x.shape[1]):
        r = reset[:, t][:, None]
        xn = x[:, t] * gx[:, t] * np.where(r, 1.0, mult[:, t])
        hh = np.where(r, 0.0, a[:, t]) * hh + xn
        y[:, t] = hh
    h[...] = hh
    return y


def rope(x, pos, rot_dims, base=10000.0, linear_factor=1.0):
    x = np.asarray(x, np.float32).copy()
    half = rot_dims // 2
    if half == 0:
        return x
    # The exponent 2d / rot_dims in float32 (as the kernels and Hugging Face form it); the power
    # in float64 with Python's scalar math and rounded once to float32.  numpy's own float32
    # power is vectorised per CPU (AVX-512 builds are 1 ulp off the correctly rounded value on
    # some inputs), and at positions near 2**31 one ulp of the frequency moves the angle by
    # radians, so the reference must not depend on it.
    exps = (np.arange(half, dtype=np.float32) * np.float32(2)) / np.float32(rot_dims)
    power = np.array([float(base) ** float(e) for e in exps], np.float64).astype(np.float32)
    inv_freq = (np.float32(1) / power).astype(np.float32)
    if linear_factor != 1.0:
        inv_freq = (inv_freq / np.float32(linear_factor)).astype(np.float32)
    theta = np.asarray(pos, np.float32)[:, None] * inv_freq[None]  # [N, half], float32
    t64 = theta.astype(np.float64)  # cos/sin of the float32 angle, in float64
    cos, sin = np.cos(t64)[:, None], np.sin(t64)[:, None]
    x1 = x[..., :half].copy()
    x2 = x[..., half:rot_dims].copy()
    x[..., :half] = x1 * cos - x2 * sin
    x[..., half:rot_dims] = x2 * cos + x1 * sin
    return x


def attention(q, k, v, pos, window, scale, softcap=0.0, k_cache=None, v_cache=None, count=None):
    """Local causal MQA/GQA over a chunk, continuing a ring cache; updates the cache in place."""
    q = np.asarray(q, np.float64)
    k = np.asarray(k, np.float64)
    v = np.asarray(v, np.float64)
    bsz, t_len, heads, hd = q.shape
    kv_heads = k.shape[2]
    group = heads // kv_heads
    out = np.zeros(q.shape, np.float32)
    for b in range(bsz):
        n0 = 0 if count is None else int(count[b])
        slots = 0 if k_cache is None else k_cache.shape[1]
        keys, vals, kpos = [], [], []
        for p in range(max(0, n0 - (slots if slots else 0)), n0):
            keys.append(np.asarray(k_cache[b, p % slots], np.float64))
            vals.append(np.asarray(v_cache[b, p % slots], np.float64))
            kpos.append(p)
        for j in range(t_len):
            keys.append(k[b, j])
            vals.append(v[b, j])
            kpos.append(n0 + j)
        keys, vals, kpos = np.stack(keys), np.stack(vals), np.array(kpos)
        for t in range(t_len):
            n = n0 + t
            starts = [j for j in range(t + 1) if pos[b, j] == 0]
            first = n0 + starts[-1] if starts else -(10**18)
            ok = (kpos <= n) & (n - kpos <= window) & (kpos >= first)
            for h in range(heads):
                s = keys[:, h // group] @ q[b, t, h] * scale
                if softcap > 0:
                    s = softcap * np.tanh(s / softcap)
                s = np.where(ok, s, -np.inf)
                p = np.exp(s - s.max())
                p /= p.sum()
                out[b, t, h] = p @ vals[:, h // group]
        if k_cache is not None:
            for j in range(max(0, t_len - slots), t_len):
                k_cache[b, (n0 + j) % slots] = k[b, j]
                v_cache[b, (n0 + j) % slots] = v[b, j]
    return out


def gelu_tanh(x):
    x = np.asarray(x, np.float64)
    return (0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))).astype(np.float32)


def geglu(gate, up):
    return (gelu_tanh(gate).astype(np.float64) * np.asarray(up, np.float64)).astype(np.float32)


def softcap(x, cap):
    x = np.asarray(x, np.float64)
    return (cap * np.tanh(x / cap)).astype(np.float32)


def add(x, y):
    """x + y (the residual connection), float32."""
    return (np.asarray(x, np.float32) + np.asarray(y, np.float32)).astype(np.float32)


_M64 = (1 << 64) - 1


def sample_uniform(seed, counter):
    """The uniform draw in [0, 1) used by :func:`sample` for (seed, counter)."""
    z = (int(seed) + 0x9E3779B97F4A7C15 * (int(counter) + 1)) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    z ^= z >> 31
    return float(np.float32(z >> 40) * np.float32(1.0 / 16777216.0))


_INV_FACTORIALS = [1.0 / math.factorial(i) for i in range(14)]


def exp_d(x, degree=13):
    """e^x in float64 by the library's own series to r^degree (IEEE adds and multiplies, no
    libm): the same bits as the C++ ``pm::exp_d<degree>``.  Arguments are clamped to
    [-708, 709]; NaN stays NaN."""
    x = np.asarray(x, np.float64)
    x = np.where(x < -708.0, -708.0, np.where(x > 709.0, 709.0, x))
    magic = np.float64(6755399441055744.0)  # 1.5 * 2^52: x / ln 2 rounded to an integer
    t = x * np.float64(1.4426950408889634) + magic
    k = t - magic
    r = (x - k * np.float64(6.93147180369123816490e-01)) - k * np.float64(1.90821492927058770002e-10)
    p = np.full_like(r, _INV_FACTORIALS[degree])
    for c in reversed(_INV_FACTORIALS[:degree]):
        p = p * r + np.float64(c)
    with np.errstate(over="ignore"):
        bits = (t.view(np.uint64) - magic.view(np.uint64) + np.uint64(1023)) << np.uint64(52)
    return p * bits.view(np.float64)


def _weights(row, lmax, inv_t):
    """exp_d((l - lmax) * inv_t) (series degree 10) per logit, 0 where that is below -708 or
    NaN."""
    a = (row.astype(np.float64) - np.float64(lmax)) * inv_t
    with np.errstate(invalid="ignore"):
        keep = a >= -708.0
    return np.where(keep, exp_d(np.where(keep, a, 0.0), 10), 0.0)


def _tree8(q):
    """((q0 + q1) + (q2 + q3)) + ((q4 + q5) + (q6 + q7)) over the last axis of 8."""
    return ((q[..., 0] + q[..., 1]) + (q[..., 2] + q[..., 3])) \
        + ((q[..., 4] + q[..., 5]) + (q[..., 6] + q[..., 7]))


def _lane_total(w):
    """The sampler's total: 8 lane sums (id i into lane i mod 8, in id order), then _tree8."""
    padded = np.zeros(-(-w.size // 8) * 8, np.float64)
    padded[:w.size] = w
    return float(_tree8(np.cumsum(padded.reshape(-1, 8), axis=0)[-1]))


def _sample_all(row, t, seed, counter):
    """Temperature alone: walk blocks of 8 ids (running sum of their _tree8 sums) to the first
    that passes u = uniform x total, then its ids one by one."""
    inv_t = 1.0 / np.float64(np.float32(t))
    w = _weights(row, row.max(), inv_t)
    u = sample_uniform(seed, counter) * _lane_total(w)
    padded = np.zeros(-(-w.size // 8) * 8, np.float64)
    padded[:w.size] = w
    run = np.cumsum(_tree8(padded.reshape(-1, 8)))  # sequential
    b = int(np.searchsorted(run, u, side="right"))  # first block whose running sum > u
    if b == run.size:  # rounding: u past every sum
        return int(np.nonzero(w > 0)[0][-1])
    before = run[b - 1] if b else 0.0
    block = w[8 * b:8 * b + 8]
    inside = np.cumsum(np.concatenate([[before], block]))[1:]
    hit = np.nonzero(inside > u)[0]
    if hit.size:
        return 8 * b + int(hit[0])
    return 8 * b + int(np.nonzero(block > 0)[0][-1])


def _sample_top_p(row, t, p, seed, counter):
    """top-p alone: the total is the lane sum of every weight, the nucleus the shortest run of
    the order (logit descending, then id) whose running sum reaches top_p x total."""
    inv_t = 1.0 / np.float64(np.float32(t))
    w = _weights(row, row.max(), inv_t)
    order = np.lexsort((np.arange(row.size), -row))
    cum = np.cumsum(w[order])
    target = np.float64(np.float32(p)) * _lane_total(w)
    idx = min(int(np.searchsorted(cum, target, side="left")), row.size - 1)
    u = sample_uniform(seed, counter) * cum[idx]
    hit = np.nonzero(cum[:idx + 1] > u)[0]
    return int(order[hit[0]] if hit.size else order[idx])


def _sample_top_k(row, t, k, p, seed, counter):
    """top-k, then top-p within those k: weights and running sums in the sorted order."""
    order = np.lexsort((np.arange(row.size), -row))[:k]
    inv_t = 1.0 / np.float64(np.float32(t))  # in double: finite even for tiny temperatures
    cum = np.cumsum(_weights(row[order], row[order].max(), inv_t))
    keep = k
    total = cum[-1]
    if p < 1.0:
        idx = int(np.searchsorted(cum, np.float64(np.float32(p)) * total, side="left"))
        keep = min(idx, keep - 1) + 1
        total = cum[keep - 1]
    u = sample_uniform(seed, counter) * total
    hit = np.nonzero(cum[:keep] > u)[0]
    return int(order[hit[0]] if hit.size else order[keep - 1])


def sample(logits, temperature, top_k, top_p, seed, counter):
    """One id per row of logits [B, V]; parameters are per-row sequences (see ops.sample)."""
    logits = np.asarray(logits, np.float32)
    out = np.zeros(logits.shape[0], np.int32)
    for b, row in enumerate(logits):
        row = np.where(np.isnan(row), -np.inf, row).astype(np.float32)
        t, k, p = float(temperature[b]), int(top_k[b]), float(top_p[b])
        if t <= 0 or not np.isfinite(row.max()):  # greedy; or all -inf, or a +inf logit
            out[b] = int(np.argmax(row))
        elif 0 < k < row.size:
            out[b] = _sample_top_k(row, t, k, p, seed[b], counter[b])
        elif p < 1.0:
            out[b] = _sample_top_p(row, t, p, seed[b], counter[b])
        else:
            out[b] = _sample_all(row, t, seed[b], counter[b])
    return out
