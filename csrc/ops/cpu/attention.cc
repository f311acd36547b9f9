// attention: causal local multi-query / grouped-query attention over a chunk of new tokens,
// continuing from a ring-buffer KV cache (Gemma sliding/global layers too; docs/model-math.md,
// 'Local attention window' and 'Attention cache ring').
//   Query t of sequence b sits at absolute index n = count[b] + t and sees key index p iff
//   p <= n, n - p <= window and no token of this chunk in (p, n] starts a document.
//   Keys p < count[b] live in cache slot p % S.  softmax in fp32; scores = (q.k) * scale,
//   soft-capped when softcap > 0.  The chunk's keys/values are written to the ring afterwards.
// Napkin math (decode, Griffin 2B): per layer reads W*hd*2 cached floats (2048*256*2*4 = 4 MB)
// once for all 10 query heads when they run as one work item (prefill); decode, with too few
// positions for the threads, splits the heads into one run per thread and reads the cache once
// per run.  Prefill: 4*T*min(T, W)*hd*H FLOPs.  Measured (ops.attention, 10 heads on 1 K/V head,
// head_dim 256, Xeon with AVX-512, 2 threads): prefill 512 28 -> 18 ms, 2048 456 -> 282 ms,
// one query against 2048 cached keys 0.76 -> 0.27 ms, from blocking heads x keys and tiling.
#include <math.h>

#include "gemma_native/math.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/simd.h"

namespace gemma_native::ops::cpu::GN_ISA {
namespace {

// Register blocking.  Each (query head, key) score is the sum dot_f32 computes (simd.h: two
// chains over alternating vectors, a leftover vector into the first, hsum of their sum, then the
// scalar tail) and each output element is one FMA chain over the keys in order, exactly as one
// axpy per key would give; blocking only runs independent chains side by side, so the bits do
// not depend on the block sizes or the kernel set.  Before blocking, one short dot product at a
// time left the FMA units waiting on its two chains (~25 GFLOP/s per core at head_dim 256).
//
// AVX-512 holds both chains of one score in a zmm: chain 0 takes the vectors at i = 0, 16, 32,
// ... and chain 1 those at 8, 24, ..., so one 16-float load at i is [chain 0's vector | chain
// 1's vector] and one 512-bit FMA advances both; the halves are added (c0 + c1) before hsum as
// dot_f32 does.  An output element's chain over the keys sits in its own lane whatever the
// register width, so the outputs run 16 lanes at a time.  4 heads x 4 keys of zmm chains halve
// the loads per FMA of the 8-lane blocking and double the lanes per instruction: ops.attention
// at the 2B shape (10 heads on 1 K/V head, head_dim 256, window 2048), 2 AMD Zen 5 cores,
// 105-110 -> 165-176 GFLOP/s at 512 and 2048 tokens.
#if defined(GN_X86_AVX512)
constexpr int kHeadsBlock = 4;  // 32 vector registers: 4 heads x 4 keys + 4 key vectors + q
constexpr int kKeysBlock = 4;
#else
constexpr int kHeadsBlock = 2;  // 16 registers: 2 heads x 2 keys x 2 chains + loads
constexpr int kKeysBlock = 2;
#endif
constexpr int kMixVecs = 4;  // output vectors per head held in registers while keys stream

// out[h * ld + n] = dot_f32(q + h * qs, keys[n], hd) for h < NH, n < NK.
#if defined(GN_X86_AVX512)
template <int NH, int NK>
static inline void score_block(const float* q, int64_t qs, const float* const* keys, int64_t hd,
                               float* out, int64_t ld) {
  __m512 c[NH][NK];
  for (int h = 0; h < NH; ++h) {
    for (int n = 0; n < NK; ++n) c[h][n] = _mm512_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 2 * kLanes <= hd; i += 2 * kLanes) {
    __m512 kv[NK];
    for (int n = 0; n < NK; ++n) kv[n] = _mm512_loadu_ps(keys[n] + i);
    for (int h = 0; h < NH; ++h) {
      const __m512 qv = _mm512_loadu_ps(q + h * qs + i);
      for (int n = 0; n < NK; ++n) c[h][n] = _mm512_fmadd_ps(qv, kv[n], c[h][n]);
    }
  }
  // One vector left (hd % 16 >= 8): into chain 0, as dot_f32 does.
  const bool odd = i + kLanes <= hd;
  for (int h = 0; h < NH; ++h) {
    for (int n = 0; n < NK; ++n) {
      Vec c0 = _mm512_castps512_ps256(c[h][n]);
      const Vec c1 = _mm512_extractf32x8_ps(c[h][n], 1);
      if (odd) c0 = fma(load(q + h * qs + i), load(keys[n] + i), c0);
      float s = hsum(add(c0, c1));
      for (int64_t j = odd ? i + kLanes : i; j < hd; ++j) s += q[h * qs + j] * keys[n][j];
      out[h * ld + n] = s;
    }
  }
}
#else
template <int NH, int NK>
static inline void score_block(const float* q, int64_t qs, const float* const* keys, int64_t hd,
                               float* out, int64_t ld) {
  Vec c0[NH][NK], c1[NH][NK];
  for (int h = 0; h < NH; ++h) {
    for (int n = 0; n < NK; ++n) c0[h][n] = c1[h][n] = zero();
  }
  int64_t i = 0;
  for (; i + 2 * kLanes <= hd; i += 2 * kLanes) {
    Vec k0[NK], k1[NK];
    for (int n = 0; n < NK; ++n) {
      k0[n] = load(keys[n] + i);
      k1[n] = load(keys[n] + i + kLanes);
    }
    for (int h = 0; h < NH; ++h) {
      const Vec qa = load(q + h * qs + i), qb = load(q + h * qs + i + kLanes);
      for (int n = 0; n < NK; ++n) {
        c0[h][n] = fma(qa, k0[n], c0[h][n]);
        c1[h][n] = fma(qb, k1[n], c1[h][n]);
      }
    }
  }
  const bool odd = i + kLanes <= hd;
  if (odd) {
    for (int h = 0; h < NH; ++h) {
      const Vec qa = load(q + h * qs + i);
      for (int n = 0; n < NK; ++n) c0[h][n] = fma(qa, load(keys[n] + i), c0[h][n]);
    }
    i += kLanes;
  }
  for (int h = 0; h < NH; ++h) {
    for (int n = 0; n < NK; ++n) {
      float s = hsum(add(c0[h][n], c1[h][n]));
      for (int64_t j = i; j < hd; ++j) s += q[h * qs + j] * keys[n][j];
      out[h * ld + n] = s;
    }
  }
}
#endif

// Scores of NH heads against all nk keys, keys in blocks of kKeysBlock.
template <int NH>
static inline void score_heads(const float* q, int64_t qs, const float* const* keys, int64_t nk,
                               int64_t hd, float* out, int64_t ld) {
  int64_t n = 0;
  for (; n + kKeysBlock <= nk; n += kKeysBlock) {
    score_block<NH, kKeysBlock>(q, qs, keys + n, hd, out + n, ld);
  }
  for (; n < nk; ++n) score_block<NH, 1>(q, qs, keys + n, hd, out + n, ld);
}

// o[h * os + d] (+)= sum over keys n in order of p[h * ld + n] * values[n][d] for h < NH, one
// FMA chain per element continuing from o (from 0 when `first`): zeroing o and one axpy per
// key, split into runs of keys, computes the same.
template <int NH>
static inline void mix_heads(const float* p, int64_t ld, const float* const* values, int64_t nk,
                             int64_t hd, float* o, int64_t os, bool first) {
  const int64_t nv = hd / kLanes;
  int64_t v0 = 0;
#if defined(GN_X86_AVX512)
  // kMixVecs zmm (2 * kMixVecs vectors of 8 lanes) per head at a time; the rest below.
  constexpr int kZ = kMixVecs;
  for (; v0 + 2 * kZ <= nv; v0 += 2 * kZ) {
    __m512 acc[NH][kZ];
    for (int h = 0; h < NH; ++h) {
      for (int j = 0; j < kZ; ++j) {
        acc[h][j] =
            first ? _mm512_setzero_ps() : _mm512_loadu_ps(o + h * os + (v0 + 2 * j) * kLanes);
      }
    }
    for (int64_t n = 0; n < nk; ++n) {
      __m512 vv[kZ];
      for (int j = 0; j < kZ; ++j) vv[j] = _mm512_loadu_ps(values[n] + (v0 + 2 * j) * kLanes);
      for (int h = 0; h < NH; ++h) {
        const __m512 w = _mm512_set1_ps(p[h * ld + n]);
        for (int j = 0; j < kZ; ++j) acc[h][j] = _mm512_fmadd_ps(w, vv[j], acc[h][j]);
      }
    }
    for (int h = 0; h < NH; ++h) {
      for (int j = 0; j < kZ; ++j) _mm512_storeu_ps(o + h * os + (v0 + 2 * j) * kLanes, acc[h][j]);
    }
  }
#endif
  for (; v0 + kMixVecs <= nv; v0 += kMixVecs) {
    Vec acc[NH][kMixVecs];
    for (int h = 0; h < NH; ++h) {
      for (int j = 0; j < kMixVecs; ++j) {
        acc[h][j] = first ? zero() : load(o + h * os + (v0 + j) * kLanes);
      }
    }
    for (int64_t n = 0; n < nk; ++n) {
      Vec vv[kMixVecs];
      for (int j = 0; j < kMixVecs; ++j) vv[j] = load(values[n] + (v0 + j) * kLanes);
      for (int h = 0; h < NH; ++h) {
        const Vec w = splat(p[h * ld + n]);
        for (int j = 0; j < kMixVecs; ++j) acc[h][j] = fma(w, vv[j], acc[h][j]);
      }
    }
    for (int h = 0; h < NH; ++h) {
      for (int j = 0; j < kMixVecs; ++j) store(o + h * os + (v0 + j) * kLanes, acc[h][j]);
    }
  }
  for (; v0 < nv; ++v0) {
    Vec acc[NH];
    for (int h = 0; h < NH; ++h) acc[h] = first ? zero() : load(o + h * os + v0 * kLanes);
    for (int64_t n = 0; n < nk; ++n) {
      const Vec vv = load(values[n] + v0 * kLanes);
      for (int h = 0; h < NH; ++h) acc[h] = fma(splat(p[h * ld + n]), vv, acc[h]);
    }
    for (int h = 0; h < NH; ++h) store(o + h * os + v0 * kLanes, acc[h]);
  }
  for (int64_t d = nv * kLanes; d < hd; ++d) {
    for (int h = 0; h < NH; ++h) {
      float s = first ? 0.0f : o[h * os + d];
      for (int64_t n = 0; n < nk; ++n) s += p[h * ld + n] * values[n][d];
      o[h * os + d] = s;
    }
  }
}

// The largest non-NaN x[i] (-inf if none), as the running `x > m ? x : m` in index order gives:
// a maximum is exact, so eight lanes at a time find the same value (only the sign of a zero
// maximum may differ, and exp(x - 0) does not see it).
static inline float max_of(const float* x, int64_t n) {
  Vec m = splat(-INFINITY);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) m = vmax(load(x + i), m);
  float lanes[kLanes];
  store(lanes, m);
  float r = -INFINITY;
  for (int j = 0; j < kLanes; ++j) r = lanes[j] > r ? lanes[j] : r;
  for (; i < n; ++i) r = x[i] > r ? x[i] : r;
  return r;
}

// Scores of heads [0, nh) (query rows qs apart) against keys [0, nk), then (separately, after
// the softmax) their outputs: keys in tiles that stay in L1 while every head block uses them.
static inline void score_all(const float* q, int64_t qs, int64_t nh, const float* const* keys,
                             int64_t nk, int64_t hd, int64_t tile, float* sc) {
  for (int64_t n0 = 0; n0 < nk; n0 += tile) {
    const int64_t m = min64(tile, nk - n0);
    int64_t g = 0;
    for (; g + kHeadsBlock <= nh; g += kHeadsBlock) {
      score_heads<kHeadsBlock>(q + g * qs, qs, keys + n0, m, hd, sc + g * nk + n0, nk);
    }
    for (; g + 2 <= nh; g += 2) score_heads<2>(q + g * qs, qs, keys + n0, m, hd, sc + g * nk + n0, nk);
    for (; g < nh; ++g) score_heads<1>(q + g * qs, qs, keys + n0, m, hd, sc + g * nk + n0, nk);
  }
}

static inline void mix_all(const float* sc, int64_t nh, const float* const* values, int64_t nk,
                           int64_t hd, int64_t tile, float* o, int64_t os) {
  for (int64_t n0 = 0; n0 < nk; n0 += tile) {
    const int64_t m = min64(tile, nk - n0);
    const bool first = n0 == 0;
    int64_t g = 0;
    for (; g + kHeadsBlock <= nh; g += kHeadsBlock) {
      mix_heads<kHeadsBlock>(sc + g * nk + n0, nk, values + n0, m, hd, o + g * os, os, first);
    }
    for (; g + 2 <= nh; g += 2) mix_heads<2>(sc + g * nk + n0, nk, values + n0, m, hd, o + g * os, os, first);
    for (; g < nh; ++g) mix_heads<1>(sc + g * nk + n0, nk, values + n0, m, hd, o + g * os, os, first);
  }
}

}  // namespace

void attention(const AttentionArgs& a) {
  const int64_t T = a.time, H = a.heads, KV = a.kv_heads, hd = a.head_dim, S = a.slots;
  const int64_t group = H / KV;
  const bool cached = a.k_cache != nullptr;
  // Longest key list one query can have: the visible cache part plus the chunk part.
  const int64_t max_keys = (cached ? min64(S, a.window) : 0) + min64(T, a.window + 1);

  // A work item is one query position and a run of query heads sharing one K/V head: each key
  // and value tile is then loaded once for all of them and stays in L1 while the heads take
  // their turn.  Prefill runs whole groups; when there are too few positions to keep every
  // thread busy (decode), the group is split into the fewest equal runs that give each thread
  // an item (splitting further would re-read the whole cache once more per run).  Every
  // (query, head) is still summed exactly as alone, so results do not depend on this.
  const int threads = num_threads();
  const int64_t items = a.batch * T * KV;
  int64_t parts = 1;
  if (items < 4 * threads) {
    parts = group;
    for (int64_t d = 1; d <= group; ++d) {
      if (group % d == 0 && items * d >= threads) {
        parts = d;
        break;
      }
    }
  }
  const int64_t heads_per = group / parts;
  // Keys per tile: about 16 KiB of one K (or V) head.
  const int64_t tile = max64(kKeysBlock, (4096 / max64(hd, 1)) / kKeysBlock * kKeysBlock);
  par_for(a.batch * T * KV * parts, 1, [&](int64_t w0, int64_t w1) {
    Buf<float> scores((max_keys > 0 ? max_keys : 1) * heads_per);
    Buf<const float*> krows(max_keys > 0 ? max_keys : 1), vrows(max_keys > 0 ? max_keys : 1);
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
      // The key and value rows this query sees, in key order (cache part, then chunk part).
      int64_t i = 0;
      for (int64_t p = p0; p < count; ++p) {
        const int64_t row = ((b * S + p % S) * KV + kvh) * hd;
        krows[i] = a.k_cache + row;
        vrows[i++] = a.v_cache + row;
      }
      for (int64_t j = j0; j <= t; ++j) {
        const int64_t row = ((b * T + j) * KV + kvh) * hd;
        krows[i] = a.k + row;
        vrows[i++] = a.v + row;
      }
      score_all(q0, hd, heads_per, krows.data(), nk, hd, tile, scores.data());
      float* o0 = a.out + ((b * T + t) * H + h0) * hd;
      for (int64_t g = 0; g < heads_per; ++g) {
        float* sc = scores.data() + g * nk;
        for (int64_t k = 0; k < nk; ++k) {
          float s = sc[k] * a.scale;
          if (a.softcap > 0.0f) s = soft_cap(s, a.softcap);
          sc[k] = s;
        }
        const float mx = max_of(sc, nk);
        for (int64_t k = 0; k < nk; ++k) sc[k] = exp_f(sc[k] - mx);  // vectorizes
        float sum = 0.0f;
        for (int64_t k = 0; k < nk; ++k) sum += sc[k];  // in key order
        const float inv = 1.0f / sum;
        for (int64_t k = 0; k < nk; ++k) sc[k] *= inv;
      }
      mix_all(scores.data(), heads_per, vrows.data(), nk, hd, tile, o0, hd);
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
