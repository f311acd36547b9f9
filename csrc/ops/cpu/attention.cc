// attention: causal local multi-query / grouped-query attention over a chunk of new tokens,
// continuing from a ring-buffer KV cache (Gemma sliding/global layers too; docs/model-math.md,
// 'Local attention window' and 'Attention cache ring').
//   Query t of sequence b sits at absolute index n = count[b] + t and sees key index p iff
//   p <= n, n - p <= window and no token of this chunk in (p, n] starts a document.
//   Keys p < count[b] live in cache slot p % S.  softmax in fp32; scores = (q.k) * scale,
//   soft-capped when softcap > 0.  The chunk's keys/values are written to the ring afterwards.
// Napkin math (decode, Griffin 2B): per layer reads W*hd*2 cached floats (2048*256*2*4 = 4 MB)
// once for all 10 query heads when they run as one work item (prefill); decode, with too few
// positions for the threads, splits the heads and reads the cache once per head.
// Prefill: 4*T*min(T, W)*hd*H FLOPs.
#include <math.h>

#include "gemma_native/math.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/simd.h"

namespace gemma_native::ops::cpu::GN_ISA {
namespace {

static inline void axpy(float alpha, const float* x, float* y, int64_t n) {
  const Vec av = splat(alpha);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store(y + i, fma(av, load(x + i), load(y + i)));
  for (; i < n; ++i) y[i] += alpha * x[i];
}

}  // namespace

void attention(const AttentionArgs& a) {
  const int64_t T = a.time, H = a.heads, KV = a.kv_heads, hd = a.head_dim, S = a.slots;
  const int64_t group = H / KV;
  const bool cached = a.k_cache != nullptr;
  // Longest key list one query can have: the visible cache part plus the chunk part.
  const int64_t max_keys = (cached ? min64(S, a.window) : 0) + min64(T, a.window + 1);

  // A work item is one query position and a run of query heads sharing one K/V head: each key
  // and value row is then loaded once for all of them (1 KB at head_dim 256, so it stays in L1
  // while the heads take their turn) instead of once per head.  Prefill runs whole groups;
  // when there are too few positions to keep every thread busy (decode), single heads.
  // Every (query, head) is still summed exactly as alone, so results do not depend on this.
  const int threads = num_threads();
  const int64_t parts = a.batch * T * KV >= 4 * threads ? 1 : group;
  const int64_t heads_per = group / parts;
  par_for(a.batch * T * KV * parts, 1, [&](int64_t w0, int64_t w1) {
    Buf<float> scores((max_keys > 0 ? max_keys : 1) * heads_per);
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t part = w % parts;
      const int64_t kvh = (w / parts) % KV;
      const int64_t t = (w / (parts * KV)) % T;
      const int64_t b = w / (parts * KV * T);
      const int64_t h0 = kvh * group + part * heads_per;
      const int64_t count = cached ? a.count[b] : 0;
      const int64_t n = count + t;
      const int32_t* pos = a.pos + b * T;
      // Latest document start in this chunk at or before t (-1: none).
      int64_t start = -1;
      for (int64_t j = t; j >= 0; --j) {
        if (pos[j] == 0) {
          start = j;
          break;
        }
      }
      const float* q0 = a.q + ((b * T + t) * H + h0) * hd;
      // Chunk keys j in [j0, t]; cache keys p in [p0, count) when no document start intervenes.
      const int64_t j0 = max64(start >= 0 ? start : 0, t - a.window);
      int64_t p0 = count;
      if (cached && start < 0) p0 = min64(count, max64(0, n - a.window));
      const int64_t nk = (count - p0) + (t - j0 + 1);
      const auto score = [&](const float* k, int64_t i) {
        for (int64_t g = 0; g < heads_per; ++g) {
          float s = dot_f32(q0 + g * hd, k, hd) * a.scale;
          if (a.softcap > 0.0f) s = soft_cap(s, a.softcap);
          scores[g * nk + i] = s;
        }
      };
      int64_t i = 0;
      for (int64_t p = p0; p < count; ++p) score(a.k_cache + ((b * S + p % S) * KV + kvh) * hd, i++);
      for (int64_t j = j0; j <= t; ++j) score(a.k + ((b * T + j) * KV + kvh) * hd, i++);
      float* o0 = a.out + ((b * T + t) * H + h0) * hd;
      for (int64_t g = 0; g < heads_per; ++g) {
        float* sc = scores.data() + g * nk;
        float mx = -INFINITY;
        for (int64_t k = 0; k < nk; ++k) mx = sc[k] > mx ? sc[k] : mx;
        for (int64_t k = 0; k < nk; ++k) sc[k] = exp_f(sc[k] - mx);  // vectorizes
        float sum = 0.0f;
        for (int64_t k = 0; k < nk; ++k) sum += sc[k];  // in key order
        const float inv = 1.0f / sum;
        for (int64_t k = 0; k < nk; ++k) sc[k] *= inv;
        for (int64_t d = 0; d < hd; ++d) o0[g * hd + d] = 0.0f;
      }
      const auto mix = [&](const float* v, int64_t i) {
        for (int64_t g = 0; g < heads_per; ++g) axpy(scores[g * nk + i], v, o0 + g * hd, hd);
      };
      i = 0;
      for (int64_t p = p0; p < count; ++p) mix(a.v_cache + ((b * S + p % S) * KV + kvh) * hd, i++);
      for (int64_t j = j0; j <= t; ++j) mix(a.v + ((b * T + j) * KV + kvh) * hd, i++);
    }
  });

  if (cached) {
    // Write the chunk into the ring (only the last S tokens can survive).
    const int64_t row = KV * hd;
    for (int64_t b = 0; b < a.batch; ++b) {
      for (int64_t j = max64(0, T - S); j < T; ++j) {
        const int64_t slot = (a.count[b] + j) % S;
        float* kd = a.k_cache + (b * S + slot) * row;
        float* vd = a.v_cache + (b * S + slot) * row;
        const float* ks = a.k + (b * T + j) * row;
        const float* vs = a.v + (b * T + j) * row;
        for (int64_t d = 0; d < row; ++d) {
          kd[d] = ks[d];
          vd[d] = vs[d];
        }
      }
    }
  }
}

}  // namespace gemma_native::ops::cpu::GN_ISA
