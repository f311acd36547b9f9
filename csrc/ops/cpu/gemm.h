// Packed, cache-blocked, register-blocked GEMM for linear at large N (prefill):
//   y[n, m] = sum_k x[n, k] * W[m, k] + bias[m]   (W [M, K] f32/bf16/f16, fp32 accumulation)
//
// The order of every sum is linear's one order (simd.h dot_linear): eight lane sums, lane l
// running over k = l, l + 8, l + 16, ... in increasing k with one rounding per FMA, then the fixed
// tree ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)), then the scalar tail k >= 8 * (K / 8),
// then the bias.  So a row's result is the same bit for bit whether it went through this GEMM or
// the GEMV path (batch == singles, chunked prefill == token by token), on every kernel set.
//
// Lane split.  The eight lane sums are eight independent products over K / 8 terms each:
// lane l of output (n, m) is sum_j x[n, 8j + l] * W[m, 8j + l].  Packing x and W by lane turns
// each into an ordinary outer-product GEMM in which one register lane holds one output's lane-l
// sum, so a W vector (kNR / kWL registers of consecutive output rows) is reused against kMR
// broadcast x values, as in a BLAS kernel, instead of a dot-product tile in which each output
// needs a whole 8-lane register.  That is what makes the FMA units, not the loads, the limit:
//   microkernel  kMR x rows x kNR W rows of one lane: AVX-512 14 x 32 (28 zmm accumulators;
//                per step 2 W loads + 14 broadcasts feed 28 FMAs), AVX2 and the scalar baseline
//                6 x 16 (12 accumulators + 2 W + 1 broadcast = 15 ymm).
//   After the eight lanes of a tile, the tree above adds the eight lane tiles element by element
//   (vector adds are per element, so it is the same tree as hsum's).
// Packed layouts (floats, zero padded):
//   x, per call chunk:   [panel p of kMR rows][lane l][j < K/8][row r]   (read by every task)
//   W, per task:         [panel q of kNR rows][lane l][j < K/8][row c]   (kept in L2)
// Loops per task (Mw W rows, a few panels, <= ~1 MiB packed): for each x panel p, for each lane l
// (the x panel's lane slab stays in L1), for each W panel q: one microkernel over all of K / 8
// with its accumulators in registers throughout, then the lane tree, the K tail and the bias.
// One x chunk (<= kNb rows, ~5 MB at K = 2560) is packed once per call chunk and streamed by
// every task; W is packed once per task and chunk.  Napkin math: 2*N*M*K FLOPs; packing is
// O(N*K + M*K) per chunk, a few percent at N >= 64.
#pragma once

#include <cstring>

#include "ops/ops.h"

#include "ops/cpu/simd.h"

namespace gemma_native::ops::cpu::GN_ISA {
namespace gemm {

// Register tiles in WVec (simd.h): 16 lanes on AVX-512, each a different output row.
#if defined(GN_X86_AVX512)
constexpr int kMR = 14;                // x rows per microkernel (broadcast)
constexpr int64_t kPackBudget = 768 * 1024;  // bytes of packed W per task (2 MiB L2)
#else
constexpr int kMR = 6;
constexpr int64_t kPackBudget = 256 * 1024;  // 512 KiB L2 on the EPYCs
#endif
constexpr int kNR = 2 * kWL;             // W rows per microkernel (two registers)
static_assert(kR32Rows % kNR == 0, "a BF16R32 panel holds whole microkernel panels");
constexpr int64_t kNb = (516 / kMR) * kMR;  // x rows per call chunk (~5 MB packed at K = 2560)

// One lane's product of x panel xp ([j][kMR]) and W panel wp ([j][kNR]) over `steps` j:
// out[r * kNR + c] = sum_j xp[j][r] * wp[j][c], one FMA chain per (r, c) in increasing j.
static inline void microkernel(const float* xp, const float* wp, int64_t steps, float* out) {
  WVec c0[kMR], c1[kMR];
#pragma GCC unroll 16
  for (int r = 0; r < kMR; ++r) c0[r] = c1[r] = wzero();
  for (int64_t j = 0; j < steps; ++j) {
    const WVec w0 = wload(wp), w1 = wload(wp + kWL);
#pragma GCC unroll 16
    for (int r = 0; r < kMR; ++r) {
      const WVec x = wsplat(xp[r]);
      c0[r] = wfma(w0, x, c0[r]);
      c1[r] = wfma(w1, x, c1[r]);
    }
    xp += kMR;
    wp += kNR;
  }
#pragma GCC unroll 16
  for (int r = 0; r < kMR; ++r) {
    wstore(out + r * kNR, c0[r]);
    wstore(out + r * kNR + kWL, c1[r]);
  }
}

// BF16R32 weights (dtype.h): a register of kWL words of consecutive rows, each word two bf16
// values of its row, lane steps j = 2p (low half) and 2p + 1 (high half), widened exactly.
#if defined(GN_X86_AVX512)
using WWords = __m512i;
static inline WWords wwords(const uint32_t* p) { return _mm512_loadu_si512(p); }
static inline WVec wlo(WWords w) { return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)); }
static inline WVec whi(WWords w) {
  return _mm512_castsi512_ps(_mm512_and_si512(w, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
}
constexpr int kMR32 = 12;  // x rows per BF16R32 microkernel: 24 accumulators + 4 W + 1 x
#elif defined(GN_X86_AVX2)
using WWords = __m256i;
static inline WWords wwords(const uint32_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
static inline WVec wlo(WWords w) { return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)); }
static inline WVec whi(WWords w) {
  return _mm256_castsi256_ps(_mm256_and_si256(w, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
}
constexpr int kMR32 = 6;  // 12 accumulators of the 16 ymm (5 rows: 2-5% slower on the Zen 5)
#elif defined(GN_ARM_NEON)
struct WWords {
  uint32x4_t lo, hi;
};
static inline WWords wwords(const uint32_t* p) { return WWords{vld1q_u32(p), vld1q_u32(p + 4)}; }
static inline WVec wlo(WWords w) {
  return Vec{vreinterpretq_f32_u32(vshlq_n_u32(w.lo, 16)), vreinterpretq_f32_u32(vshlq_n_u32(w.hi, 16))};
}
static inline WVec whi(WWords w) {
  const uint32x4_t m = vdupq_n_u32(0xffff0000u);
  return Vec{vreinterpretq_f32_u32(vandq_u32(w.lo, m)), vreinterpretq_f32_u32(vandq_u32(w.hi, m))};
}
constexpr int kMR32 = 6;
#else
struct WWords {
  uint32_t l[8];
};
static inline WWords wwords(const uint32_t* p) {
  WWords w;
  std::memcpy(w.l, p, sizeof w.l);
  return w;
}
static inline WVec wlo(WWords w) {
  Vec v;
  for (int i = 0; i < 8; ++i) v.l[i] = bits_to_f32(w.l[i] << 16);
  return v;
}
static inline WVec whi(WWords w) {
  Vec v;
  for (int i = 0; i < 8; ++i) v.l[i] = bits_to_f32(w.l[i] & 0xffff0000u);
  return v;
}
constexpr int kMR32 = 6;
#endif

// The BF16R32 microkernel: R rows of x against kNR rows of W over `pairs` words of one lane,
// out[r * kNR + c] = sum over steps j of x_r(j) * W_c(j), one FMA chain per (r, c) in increasing
// j, as microkernel().  x_r(j) is xp[j * xs + r * rs] (x laid out in lane order, [j][r] per
// lane: xs = the layout's rows, rs = 1); W's pair p of the kNR rows is the kNR words at
// wq + p * kR32Rows.
// PF (the GEMV, whose W comes from memory once): each pair also prefetches the words kPfPairs
// pairs (8 KiB) ahead into L2.  A panel is one sequential stream, which the hardware prefetch
// alone left behind the FMAs at 4 rows of x: on the EPYC Zen 5, 16 matrices of 7680 x 2560
// from DRAM in turn, 4 rows, went from 47 GB/s (the row-major GEMV: 59) to 65-68 GB/s
// (row-major 58-59, same runs) with 4-8 KiB ahead; 1, 2 and 8 rows gained too.
constexpr int64_t kPfPairs = 64;
template <int R, bool PF = false>
static inline void microkernel_r32(const float* xp, int64_t xs, int64_t rs, const uint32_t* wq,
                                   int64_t pairs, float* out) {
  WVec c0[R], c1[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) c0[r] = c1[r] = wzero();
  for (int64_t p = 0; p < pairs; ++p) {
    if (PF) {  // the address as an integer: it may lie past the matrix (a harmless prefetch)
      const uintptr_t ahead = reinterpret_cast<uintptr_t>(wq) + kPfPairs * kR32Rows * 4;
      prefetch_l2(reinterpret_cast<const void*>(ahead));
      prefetch_l2(reinterpret_cast<const void*>(ahead + 64));
    }
    const WWords a = wwords(wq), b = wwords(wq + kWL);
    const WVec a0 = wlo(a), b0 = wlo(b);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const WVec x = wsplat(xp[r * rs]);
      c0[r] = wfma(a0, x, c0[r]);
      c1[r] = wfma(b0, x, c1[r]);
    }
    const WVec a1 = whi(a), b1 = whi(b);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const WVec x = wsplat(xp[xs + r * rs]);
      c0[r] = wfma(a1, x, c0[r]);
      c1[r] = wfma(b1, x, c1[r]);
    }
    xp += 2 * xs;
    wq += kR32Rows;
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    wstore(out + r * kNR, c0[r]);
    wstore(out + r * kNR + kWL, c1[r]);
  }
}

// The first word of microkernel panel q (kNR rows from row q * kNR) in lane l's stream of a
// BF16R32 matrix with k columns.
static inline const uint32_t* r32_panel(const void* w, int64_t k, int64_t q, int l) {
  const int64_t m = q * kNR;
  return static_cast<const uint32_t*>(w) + (m / kR32Rows) * kR32Rows * (k / 2) +
         l * (k / kR32ColStep) * kR32Rows + m % kR32Rows;
}

// linear's lane tree of kWL outputs: element o of the eight lane tiles L + l * tile, added
// ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)) (per element: hsum's tree).
static inline WVec lane_tree(const float* L, int64_t tile, int64_t o) {
  const WVec l04 = wadd(wload(L + 0 * tile + o), wload(L + 4 * tile + o));
  const WVec l26 = wadd(wload(L + 2 * tile + o), wload(L + 6 * tile + o));
  const WVec l15 = wadd(wload(L + 1 * tile + o), wload(L + 5 * tile + o));
  const WVec l37 = wadd(wload(L + 3 * tile + o), wload(L + 7 * tile + o));
  return wadd(wadd(l04, l26), wadd(l15, l37));
}

// Finishes nr rows x kNR columns of outputs in linear's order from the eight lane tiles
// L + l * tile ([r][kNR] each): the lane tree, then bias_panel (kNR values), then y (row r at
// y + r * ldy) = that, or y + that when accumulate.  No K tail: the caller has none.
static inline void finish_whole(const float* L, int64_t tile, int64_t nr, const float* bias_panel,
                                bool accumulate, float* y, int64_t ldy) {
  for (int64_t r = 0; r < nr; ++r) {
    float* yrow = y + r * ldy;
    for (int h = 0; h < kNR; h += kWL) {
      const WVec vb = wadd(lane_tree(L, tile, r * kNR + h), wload(bias_panel + h));
      wstore(yrow + h, accumulate ? wadd(wload(yrow + h), vb) : vb);
    }
  }
}

// Transposes the 8 x 8 block v[row][lane] in place into v[lane][row].
static inline void transpose8(Vec* v) {
#if defined(GN_X86_AVX2)
  const __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
  const __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
  const __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
  const __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
  // u_c holds lanes c and c + 4 of four rows (0-3 in u0..u3, 4-7 in u4..u7).
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  v[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  v[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  v[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  v[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  v[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  v[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  v[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  v[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
#elif defined(GN_ARM_NEON)
  // 4 x 4 quarters: q(a, b) = rows 4a..4a+3, lanes 4b..4b+3; quarter (a, b) goes to (b, a),
  // transposed.  Rows 0-3's high halves become rows 4-7's low halves and so on.
  auto t4 = [](float32x4_t& r0, float32x4_t& r1, float32x4_t& r2, float32x4_t& r3) {
    const float32x4_t a0 = vtrn1q_f32(r0, r1), a1 = vtrn2q_f32(r0, r1);
    const float32x4_t a2 = vtrn1q_f32(r2, r3), a3 = vtrn2q_f32(r2, r3);
    r0 = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(a0), vreinterpretq_f64_f32(a2)));
    r1 = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(a1), vreinterpretq_f64_f32(a3)));
    r2 = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(a0), vreinterpretq_f64_f32(a2)));
    r3 = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(a1), vreinterpretq_f64_f32(a3)));
  };
  t4(v[0].lo, v[1].lo, v[2].lo, v[3].lo);
  t4(v[0].hi, v[1].hi, v[2].hi, v[3].hi);
  t4(v[4].lo, v[5].lo, v[6].lo, v[7].lo);
  t4(v[4].hi, v[5].hi, v[6].hi, v[7].hi);
  for (int i = 0; i < 4; ++i) {  // swap the off-diagonal quarters
    const float32x4_t t = v[i].hi;
    v[i].hi = v[i + 4].lo;
    v[i + 4].lo = t;
  }
#else
  for (int i = 0; i < kLanes; ++i) {
    for (int l = i + 1; l < kLanes; ++l) {
      const float t = v[i].l[l];
      v[i].l[l] = v[l].l[i];
      v[l].l[i] = t;
    }
  }
#endif
}

// Packs `rows` (<= ROWS; the rest zero) rows of src (row stride ld elements, dtype DT) into
// one panel [l][j < nv][ROWS]: 8 rows x 8 lanes at a time, transposed in registers.
template <DType DT, int ROWS>
static inline void pack_panel(const void* src, int64_t ld, int64_t rows, int64_t nv,
                              float* dst) {
  const int64_t lane_stride = nv * ROWS;
  const int64_t row_bytes = ld * static_cast<int64_t>(dtype_size(DT));
  const char* s0 = static_cast<const char*>(src);
  // j outer: the 4 * ROWS bytes of one (lane, j) are written at once, whole cache lines.
  for (int64_t j = 0; j < nv; ++j) {
    for (int r0 = 0; r0 < ROWS; r0 += kLanes) {
      const int g = ROWS - r0 < kLanes ? ROWS - r0 : kLanes;  // panel rows in this group
      const int64_t valid = min64(g, max64(0, rows - r0));     // rows that exist
      Vec v[kLanes];
#pragma GCC unroll 8
      for (int i = 0; i < kLanes; ++i) {
        v[i] = i < valid ? load_w<DT>(s0 + (r0 + i) * row_bytes, j * kLanes) : zero();
      }
      transpose8(v);
      float* d = dst + j * ROWS + r0;
      if (g == kLanes) {
#pragma GCC unroll 8
        for (int l = 0; l < kLanes; ++l) store(d + l * lane_stride, v[l]);
      } else {
        for (int l = 0; l < kLanes; ++l) {
          float t[kLanes];
          store(t, v[l]);
          for (int i = 0; i < g; ++i) d[l * lane_stride + i] = t[i];
        }
      }
    }
  }
}

// One chunk of at most kNb rows of x.  BF16R32 weights (DT == kBF16R32) are read where they
// are, already in the lane order: no W packing, x panels of kMR32 rows.
template <DType DT>
void run_chunk(const LinearArgs& a) {
  constexpr bool kR32 = DT == DType::kBF16R32;
  constexpr int MR = kR32 ? kMR32 : kMR;
  const int64_t n_rows = a.n, m_rows = a.w.rows, k = a.w.cols;
  const int64_t nv = k / kLanes;
  const int64_t xpanels = (n_rows + MR - 1) / MR;
  const int64_t xp_size = kLanes * nv * MR;  // floats per packed x panel
  const int64_t wp_size = kLanes * nv * kNR;  // floats per packed W panel
  const size_t row_bytes = static_cast<size_t>(k) * dtype_size(DT);
  const char* wbase = static_cast<const char*>(a.w.data);

  // The calling thread's buffer, reused between calls (no page faults per call).  Workers see
  // their own thread_local under the same name, so the lambdas use the pointer only.
  thread_local Grow<float> xscratch;
  float* const xpack = xscratch.get(xpanels * xp_size + 1);
  par_for(xpanels, 4, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      pack_panel<DType::kF32, MR>(a.x + p * MR * k, k, min64(MR, n_rows - p * MR), nv,
                                  xpack + p * xp_size);
    }
  });

  // W panels per task: as many as fit the budget of W kept in L2 (at least one).  BF16R32
  // panels are half the bytes of packed fp32 ones, but a task of them gets half the budget too:
  // as many rows (2 x 2B's K = 2560 on AVX-512), since more (4) left the x panels too little of
  // L2 (447 against 482 GFLOP/s, 7680 x 2560 on the EPYC Zen 5).
  const int64_t panel_bytes = kR32 ? kNR * k * 2 : wp_size * 4;
  const int64_t budget = kR32 ? kPackBudget / 2 : kPackBudget;
  const int64_t per_task = max64(1, min64(4, budget / max64(1, panel_bytes)));
  const int64_t wpanels = (m_rows + kNR - 1) / kNR;
  const int64_t tasks = (wpanels + per_task - 1) / per_task;
  par_for(tasks, 1, [&](int64_t t0, int64_t t1) {
    constexpr int64_t kTile = MR * kNR;
    thread_local Grow<float> wpack_buf, lanes_buf;
    float* const wpack = kR32 ? nullptr : wpack_buf.get(per_task * wp_size + 1);
    float* const lanes = lanes_buf.get(per_task * kLanes * kTile);
    // Bias (or zeros) for a whole W panel, so the finish below can add it a vector at a time.
    float bias_panel[kNR];
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t q0 = t * per_task, nq = min64(per_task, wpanels - q0);
      if constexpr (!kR32) {
        for (int64_t q = 0; q < nq; ++q) {
          const int64_t mr = (q0 + q) * kNR;
          pack_panel<DT, kNR>(wbase + static_cast<size_t>(mr) * row_bytes, k,
                              min64(kNR, m_rows - mr), nv, wpack + q * wp_size);
        }
      }
      // The next task's W rows are read from memory into L2 while this one computes, a slice
      // per x panel, so its packing does not wait on DRAM.
      const char* next = nullptr;
      int64_t next_lines = 0, lines_per_panel = 0;
      if (t + 1 < t1) {
        const int64_t m_next = (t + 1) * per_task * kNR;
        next = wbase + static_cast<size_t>(m_next) * row_bytes;
        next_lines = (min64(m_rows, m_next + per_task * kNR) - m_next) *
                     static_cast<int64_t>(row_bytes) / 64;
        lines_per_panel = (next_lines + xpanels - 1) / xpanels;
      }
      for (int64_t p = 0; p < xpanels; ++p) {
        const float* xp = xpack + p * xp_size;
        for (int64_t i = p * lines_per_panel; i < min64(next_lines, (p + 1) * lines_per_panel);
             ++i) {
          prefetch_l2(next + i * 64);
        }
        for (int l = 0; l < kLanes; ++l) {
          for (int64_t q = 0; q < nq; ++q) {
            if constexpr (kR32) {
              microkernel_r32<MR>(xp + l * nv * MR, MR, 1, r32_panel(a.w.data, k, q0 + q, l),
                                  nv / 2, lanes + (q * kLanes + l) * kTile);
            } else {
              microkernel(xp + l * nv * kMR, wpack + q * wp_size + l * nv * kNR, nv,
                          lanes + (q * kLanes + l) * kTile);
            }
          }
        }
        // Finish each output in linear's order: the lane tree, then the scalar tail, then the
        // bias.  Per element, so a vector at a time where there is no tail.
        const int64_t nr = min64(MR, n_rows - p * MR);
        for (int64_t q = 0; q < nq; ++q) {
          const float* L = lanes + q * kLanes * kTile;
          const int64_t m0 = (q0 + q) * kNR, nc = min64(kNR, m_rows - m0);
          for (int64_t c = 0; c < kNR; ++c) bias_panel[c] = a.bias && c < nc ? a.bias[m0 + c] : 0.0f;
          if (kR32 || (nc == kNR && nv * kLanes == k)) {  // BF16R32: rows % 32, k % 16 == 0
            finish_whole(L, kTile, nr, bias_panel, a.accumulate, a.y + p * MR * m_rows + m0,
                         m_rows);
            continue;
          }
          if constexpr (!kR32) {  // a partial panel or a K tail: row-major weights only
            for (int64_t r = 0; r < nr; ++r) {
              const int64_t n = p * MR + r;
              float* yrow = a.y + n * m_rows + m0;
              float s[kNR];
              for (int h = 0; h < kNR; h += kWL) wstore(s + h, lane_tree(L, kTile, r * kNR + h));
              const float* x = a.x + n * k;
              for (int64_t c = 0; c < nc; ++c) {
                float v = s[c];
                const void* w = wbase + static_cast<size_t>(m0 + c) * row_bytes;
                for (int64_t j = nv * kLanes; j < k; ++j) v += load_w1<DT>(w, j) * x[j];
                yrow[c] = a.accumulate ? yrow[c] + (v + bias_panel[c]) : v + bias_panel[c];
              }
            }
          }
        }
      }
    }
  });
}

// The GEMM for linear(); same contract as LinearArgs.  Chunks of x rows bound the packed x
// that every task re-reads (the whole of x at N = 2048 would come from DRAM per task); each
// chunk re-packs W, which costs about 2 / kNb of the FMA time.
template <DType DT>
void run(const LinearArgs& a) {
  // Equal chunks (whole microkernel panels), not kNb + a sliver: each chunk costs a W pass.
  const int64_t chunks = (a.n + kNb - 1) / kNb;
  constexpr int MR = DT == DType::kBF16R32 ? kMR32 : kMR;
  const int64_t size = ((a.n + chunks - 1) / chunks + MR - 1) / MR * MR;
  for (int64_t n0 = 0; n0 < a.n; n0 += size) {
    LinearArgs c = a;
    c.x = a.x + n0 * a.w.cols;
    c.y = a.y + n0 * a.w.rows;
    c.n = min64(size, a.n - n0);
    run_chunk<DT>(c);
  }
}

}  // namespace gemm
}  // namespace gemma_native::ops::cpu::GN_ISA
