// Causal local multi-query / grouped-query attention over a ring-buffer cache (ops.h
// AttentionArgs: query t of sequence b is absolute index n = count[b] + t; it sees key p iff
// p <= n, n - p <= window and no token of this chunk in (p, n] starts a document; cached keys
// come from ring slot p % S).
//
// attention_split_kernel: one block per (sequence b, query t, kv head g, key split s).  Its
// warps are the query heads that share kv head g, so each K/V tile is loaded into shared
// memory once for all of them.  Keys are walked in tiles of kAttnKeyTile; the block's
// visible range [lo, n] is computed once (window, document starts, the ring's extent), and
// whole tiles outside it are never loaded.  Each warp keeps an online softmax (running max m,
// sum l, and its head_dim/32 output values per lane) in fp32.  With one split it writes the
// normalised output; with several (decode: long caches, few queries) it writes (m, l, acc)
// partials and attention_combine_kernel merges them with the log-sum-exp rule.
// attention_ring_write_kernel then stores the chunk's K/V in the ring (after every query has
// read the old slots, by stream order).
// Everything that changes between decode steps (count, pos) is read from device memory, so a
// captured graph replays correctly.
// Napkin math (2B decode, window 2048, 1 kv head x 256): 2 x 2048 x 256 x 4 B = 4 MB of K/V per
// layer and token, read once for all 10 query heads; split over 8 blocks so that more than one
// SM streams it.  Prefill reads each query's visible K/V from L2 (no reuse across queries in
// a block yet: a query-tiled kernel would cut that traffic).
#pragma once

#include <math.h>

#include "ops/cuda/kernels/reduce.cuh"
#include "gemma_native/math.h"

namespace GN_KERNELS_NS {

constexpr int kAttnKeyTile = 16;   // keys staged per step (K and V tiles: 2 x 16 x 256 floats)
constexpr int kAttnMaxHd = 256;    // head_dim limit (8 values per lane)
constexpr int kAttnMaxGroup = 32;  // query heads per kv head (one warp each)

struct AttnShape {
  int64_t T, H, KV, hd, S, window;
  float scale, softcap;
  int splits;
};

// The absolute index of key p of sequence b: a pointer to its K (or V) row for kv head g.
__device__ __forceinline__ const float* attn_key_row(const float* chunk, const float* cache,
                                                     int64_t b, int64_t p, int64_t count,
                                                     int64_t g, const AttnShape& s) {
  if (p >= count) return chunk + ((b * s.T + (p - count)) * s.KV + g) * s.hd;
  return cache + ((b * s.S + p % s.S) * s.KV + g) * s.hd;
}

__global__ void __launch_bounds__(1024)
    attention_split_kernel(const float* q, const float* k, const float* v, const int32_t* pos,
                           const float* k_cache, const float* v_cache, const int64_t* count,
                           AttnShape s, float* out, float* partial) {
  GN_SHARED(float, ks, kAttnKeyTile * kAttnMaxHd);
  GN_SHARED(float, vs, kAttnKeyTile * kAttnMaxHd);
  GN_SHARED(int64_t, range, 2);
  const int64_t G = s.H / s.KV;
  const int64_t bt = blockIdx.x / s.KV, g = blockIdx.x % s.KV;
  const int64_t b = bt / s.T, t = bt % s.T;
  const int split = blockIdx.y;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t h = g * G + warp;  // this warp's query head
  const int64_t c = count != nullptr ? count[b] : 0;
  const int64_t n = c + t;

  if (threadIdx.x < 32) {
    // The latest document start among this chunk's tokens 0..t (absolute index), or -1.
    int64_t start = -1;
    for (int64_t j = lane; j <= t; j += 32) {
      if (pos[b * s.T + j] == 0) start = c + j;
    }
    for (int o = 16; o > 0; o >>= 1) {
      const int64_t other = __shfl_xor_sync(simt::kFullMask, start, o);
      start = other > start ? other : start;
    }
    if (lane == 0) {
      int64_t lo = n - s.window;
      if (lo < 0) lo = 0;
      if (start > lo) lo = start;
      if (c - s.S > lo) lo = c - s.S;  // older keys are no longer in the ring
      // This split's share of [lo, n].
      const int64_t len = n - lo + 1;
      const int64_t per = (len + s.splits - 1) / s.splits;
      const int64_t a = lo + split * per;
      int64_t e = a + per - 1;
      if (e > n) e = n;
      range[0] = a;
      range[1] = e;
    }
  }
  __syncthreads();
  const int64_t first = range[0], last = range[1];

  constexpr int kPer = kAttnMaxHd / 32;
  float qv[kPer], acc[kPer];
  for (int i = 0; i < kPer; ++i) {
    const int64_t d = lane + 32 * i;
    qv[i] = (d < s.hd) ? q[((b * s.T + t) * s.H + h) * s.hd + d] : 0.0f;
    acc[i] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  for (int64_t p0 = first; p0 <= last; p0 += kAttnKeyTile) {
    const int64_t nk = last - p0 + 1 < kAttnKeyTile ? last - p0 + 1 : kAttnKeyTile;
    for (int64_t e = threadIdx.x; e < nk * s.hd; e += blockDim.x) {
      const int64_t j = e / s.hd, d = e % s.hd;
      ks[j * kAttnMaxHd + d] = attn_key_row(k, k_cache, b, p0 + j, c, g, s)[d];
      vs[j * kAttnMaxHd + d] = attn_key_row(v, v_cache, b, p0 + j, c, g, s)[d];
    }
    __syncthreads();
    for (int64_t j = 0; j < nk; ++j) {
      float dot = 0.0f;
      for (int i = 0; i < kPer; ++i) {
        const int64_t d = lane + 32 * i;
        if (d < s.hd) dot += qv[i] * ks[j * kAttnMaxHd + d];
      }
      float score = warp_sum(dot) * s.scale;
      if (s.softcap > 0.0f) score = ::gemma_native::soft_cap(score, s.softcap);
      const float m_new = fmaxf(m, score);
      const float corr = expf(m - m_new);
      const float p = expf(score - m_new);
      l = l * corr + p;
      for (int i = 0; i < kPer; ++i) {
        const int64_t d = lane + 32 * i;
        acc[i] = acc[i] * corr + (d < s.hd ? p * vs[j * kAttnMaxHd + d] : 0.0f);
      }
      m = m_new;
    }
    __syncthreads();  // the tiles are overwritten next
  }

  if (s.splits == 1) {
    const float inv = 1.0f / l;  // l >= 1: key n itself is always visible
    for (int i = 0; i < kPer; ++i) {
      const int64_t d = lane + 32 * i;
      if (d < s.hd) out[((b * s.T + t) * s.H + h) * s.hd + d] = acc[i] * inv;
    }
    return;
  }
  // Partials: [B*T*H][splits][hd + 2] = acc..., m, l.
  float* pp = partial + (((b * s.T + t) * s.H + h) * s.splits + split) * (s.hd + 2);
  for (int i = 0; i < kPer; ++i) {
    const int64_t d = lane + 32 * i;
    if (d < s.hd) pp[d] = acc[i];
  }
  if (lane == 0) {
    pp[s.hd] = m;
    pp[s.hd + 1] = l;
  }
}

// out[b, t, h, :] from the splits' partials: M = max m_s, out = sum acc_s e^(m_s - M) /
// sum l_s e^(m_s - M).  One block per (b, t, h); threads over head_dim.
__global__ void __launch_bounds__(256)
    attention_combine_kernel(const float* partial, AttnShape s, float* out) {
  const int64_t row = blockIdx.x;  // (b * T + t) * H + h
  const float* pr = partial + row * s.splits * (s.hd + 2);
  float mx = -INFINITY;
  for (int sp = 0; sp < s.splits; ++sp) mx = fmaxf(mx, pr[sp * (s.hd + 2) + s.hd]);
  float den = 0.0f;
  for (int sp = 0; sp < s.splits; ++sp) {
    const float ms = pr[sp * (s.hd + 2) + s.hd];
    if (ms > -INFINITY) den += pr[sp * (s.hd + 2) + s.hd + 1] * expf(ms - mx);
  }
  for (int64_t d = threadIdx.x; d < s.hd; d += blockDim.x) {
    float num = 0.0f;
    for (int sp = 0; sp < s.splits; ++sp) {
      const float ms = pr[sp * (s.hd + 2) + s.hd];
      if (ms > -INFINITY) num += pr[sp * (s.hd + 2) + d] * expf(ms - mx);
    }
    out[row * s.hd + d] = num / den;
  }
}

// The chunk's keys/values into the ring: slot (count[b] + t) % S.  One block per (b, t).
__global__ void __launch_bounds__(256)
    attention_ring_write_kernel(const float* k, const float* v, const int64_t* count,
                                AttnShape s, float* k_cache, float* v_cache) {
  const int64_t b = blockIdx.x / s.T, t = blockIdx.x % s.T;
  const int64_t slot = (count[b] + t) % s.S;
  // Only the last S tokens of a chunk longer than the ring survive; earlier ones would be
  // overwritten by later ones in the same slot, so they are skipped (no write-write race).
  if (s.T - t > s.S) return;
  const int64_t row = s.KV * s.hd;
  const float* ks = k + (b * s.T + t) * row;
  const float* vs = v + (b * s.T + t) * row;
  float* kd = k_cache + (b * s.S + slot) * row;
  float* vd = v_cache + (b * s.S + slot) * row;
  for (int64_t e = threadIdx.x; e < row; e += blockDim.x) {
    kd[e] = ks[e];
    vd[e] = vs[e];
  }
}

}  // namespace GN_KERNELS_NS
