// Packed, cache-blocked, register-blocked GEMM for linear at large N (prefill):
//   y[n, m] = sum_k x[n, k] * W[m, k] + bias[m]   (W [M, K] f32/bf16/f16, fp32 accumulation)
//
// The order of every sum is linear's one order (linear.cc): a single vector accumulator over
// the whole kLanes vectors of K in increasing k, hsum, then the scalar tail; so a row's result
// is the same bit for bit whether it went through this GEMM or the GEMV path (batch == singles,
// chunked prefill == token by token).  The partial vectors live in a small accumulator buffer
// between K blocks.
//
// Blocking (AVX2 sizes; 32 KiB L1d, 512 KiB L2 per core):
//   microkernel  3 x-rows x 4 W-rows: 12 accumulators + 3 x vectors + 1 W vector = 16 ymm;
//                per vector step 7 loads feed 12 FMAs.
//   AVX-512: 6 x-rows x 8 W-rows in 24 zmm accumulators.  A zmm holds the 8-lane accumulators
//                of two outputs side by side (W rows 2p and 2p+1 against one x row), never 16
//                lanes of one output, so every output is still summed in the 8-lane order of
//                simd.h and the result is bit-identical to the AVX2 and scalar sets.  The packed
//                W layout [k vector][row][lane] already puts rows 2p, 2p+1 of one k vector in one
//                64-byte run; the x row's 8 lanes are broadcast to both halves.  Per vector step
//                4 W loads + 6 x broadcasts feed 24 zmm FMAs (2x the AVX2 kernel's work per
//                load).
//   W sliver     4 rows x kKc stays in L1 while the kernel walks the x slivers of the x block
//                (kNx rows x kKc, packed so the block's slivers are one sequential stream).
//   W super block (kMw rows, all of K) is packed and widened to fp32 once per task and reused
//                for every x block; x is packed once per call and shared by the tasks.
// Napkin math: 2*N*M*K FLOPs; packing costs O(N*K + M*K) and is a few percent for N >= 64.
#pragma once

#include <cstring>

#include "ops/ops.h"

#include "ops/cpu/simd.h"

namespace gemma_native::ops::cpu::GN_ISA {
namespace gemm {

#if defined(GN_X86_AVX512)
constexpr int kR = 6;                  // x rows per microkernel
constexpr int kC = 8;                  // W rows per microkernel (4 zmm pairs)
#ifndef GN_GEMM_KC
#define GN_GEMM_KC 256
#define GN_GEMM_NX 4
#define GN_GEMM_MW 4
#endif
#else
constexpr int kR = 3;                  // x rows per microkernel
constexpr int kC = 4;                  // W rows per microkernel
// Sizes picked by timing on the 2-core EPYC (noisy; 256/4/4 was ~10-20% ahead of 1024/8/8): the
// x block's K piece (12 KiB), one W sliver piece (4 KiB) and the block's accumulators (12 KiB)
// mostly stay in L1, as loading a full x vector per 4 FMAs from L2 was the bottleneck.
#ifndef GN_GEMM_KC
#define GN_GEMM_KC 256
#define GN_GEMM_NX 4
#define GN_GEMM_MW 4
#endif
#endif
constexpr int64_t kKc = GN_GEMM_KC;      // K block (elements), a multiple of kLanes
constexpr int64_t kNx = GN_GEMM_NX * kR;  // x rows per block
constexpr int64_t kMw = GN_GEMM_MW * kC;  // W rows per task (super block)
constexpr int64_t kNb = 516;               // x rows per call chunk (5 MB packed at K = 2560)
static_assert(kKc % kLanes == 0, "K block must hold whole vectors");

// Packs `rows` rows (row stride `ld` elements, dtype DT, zero rows past `valid`) over the first
// nv*kLanes columns: for each K block, its vectors [j][row][lane].  K
// block b of this sliver lands at dst + b * kKc * block_stride + index * ROWS * vb, where vb is
// the block's width in elements: with block_stride = ROWS * slivers, the slivers of one K block
// sit next to each other, so a pass over an x block is one sequential stream.
template <DType DT, int ROWS>
static inline void pack_sliver(const void* src, int64_t ld, int64_t valid, int64_t nv,
                               int64_t block_stride, int64_t index, float* dst0) {
  const int64_t kv = kKc / kLanes;
  for (int64_t v0 = 0; v0 < nv; v0 += kv) {
    const int64_t v1 = min64(nv, v0 + kv);
    float* dst = dst0 + v0 * kLanes * block_stride + index * ROWS * (v1 - v0) * kLanes;
    for (int64_t v = v0; v < v1; ++v) {
      for (int r = 0; r < ROWS; ++r) {
        store(dst, r < valid ? load_w<DT>(src, r * ld + v * kLanes) : zero());
        dst += kLanes;
      }
    }
  }
}

#if defined(GN_X86_AVX512)
// acc[r*kC + c] += sum over `steps` packed vector steps of x[r] * w[c]; zmm (r, p) holds the
// accumulators of (r, 2p) and (r, 2p+1), which are adjacent in acc.
static inline void microkernel(const float* xp, const float* wp, int64_t steps, float* acc) {
  constexpr int kP = kC / 2;
  __m512 c[kR][kP];
#pragma GCC unroll 8
  for (int r = 0; r < kR; ++r) {
#pragma GCC unroll 4
    for (int p = 0; p < kP; ++p) c[r][p] = _mm512_loadu_ps(acc + (r * kC + 2 * p) * kLanes);
  }
  for (int64_t j = 0; j < steps; ++j) {
    __m512 w[kP];
#pragma GCC unroll 4
    for (int p = 0; p < kP; ++p) w[p] = _mm512_loadu_ps(wp + 2 * p * kLanes);
#pragma GCC unroll 8
    for (int r = 0; r < kR; ++r) {
      const __m512 x = _mm512_broadcast_f32x8(_mm256_loadu_ps(xp + r * kLanes));
#pragma GCC unroll 4
      for (int p = 0; p < kP; ++p) c[r][p] = _mm512_fmadd_ps(w[p], x, c[r][p]);
    }
    xp += kR * kLanes;
    wp += kC * kLanes;
  }
#pragma GCC unroll 8
  for (int r = 0; r < kR; ++r) {
#pragma GCC unroll 4
    for (int p = 0; p < kP; ++p) _mm512_storeu_ps(acc + (r * kC + 2 * p) * kLanes, c[r][p]);
  }
}
#else
// acc[r*kC + c] += sum over `steps` packed vector steps of x[r] * w[c].
static inline void microkernel(const float* xp, const float* wp, int64_t steps, float* acc) {
  Vec a00 = load(acc + 0 * kLanes), a01 = load(acc + 1 * kLanes);
  Vec a02 = load(acc + 2 * kLanes), a03 = load(acc + 3 * kLanes);
  Vec a10 = load(acc + 4 * kLanes), a11 = load(acc + 5 * kLanes);
  Vec a12 = load(acc + 6 * kLanes), a13 = load(acc + 7 * kLanes);
  Vec a20 = load(acc + 8 * kLanes), a21 = load(acc + 9 * kLanes);
  Vec a22 = load(acc + 10 * kLanes), a23 = load(acc + 11 * kLanes);
  for (int64_t j = 0; j < steps; ++j) {
    const Vec x0 = load(xp), x1 = load(xp + kLanes), x2 = load(xp + 2 * kLanes);
    Vec w = load(wp);
    a00 = fma(w, x0, a00);
    a10 = fma(w, x1, a10);
    a20 = fma(w, x2, a20);
    w = load(wp + kLanes);
    a01 = fma(w, x0, a01);
    a11 = fma(w, x1, a11);
    a21 = fma(w, x2, a21);
    w = load(wp + 2 * kLanes);
    a02 = fma(w, x0, a02);
    a12 = fma(w, x1, a12);
    a22 = fma(w, x2, a22);
    w = load(wp + 3 * kLanes);
    a03 = fma(w, x0, a03);
    a13 = fma(w, x1, a13);
    a23 = fma(w, x2, a23);
    xp += kR * kLanes;
    wp += kC * kLanes;
  }
  store(acc + 0 * kLanes, a00), store(acc + 1 * kLanes, a01);
  store(acc + 2 * kLanes, a02), store(acc + 3 * kLanes, a03);
  store(acc + 4 * kLanes, a10), store(acc + 5 * kLanes, a11);
  store(acc + 6 * kLanes, a12), store(acc + 7 * kLanes, a13);
  store(acc + 8 * kLanes, a20), store(acc + 9 * kLanes, a21);
  store(acc + 10 * kLanes, a22), store(acc + 11 * kLanes, a23);
}
#endif

// A per-thread buffer kept between calls (per-ISA type: no STL in kernel objects, simd.h Buf).
struct Scratch {
  float* p = nullptr;
  int64_t n = 0;
  ~Scratch() { delete[] p; }
  void reserve(int64_t m) {
    if (m <= n) return;
    delete[] p;
    p = nullptr;
    n = 0;
    p = new float[m];
    n = m;
  }
  float* data() { return p; }
};

// One chunk of at most kNb rows of x (packed x stays in L3 while every task walks it).
template <DType DT>
void run_chunk(const LinearArgs& a) {
  const int64_t n_rows = a.n, m_rows = a.w.rows, k = a.w.cols;
  const int64_t nv = k / kLanes;
  const int64_t kv = kKc / kLanes;
  const int64_t xs = (n_rows + kR - 1) / kR;  // x slivers
  const int64_t xs_size = kR * nv * kLanes;   // floats per packed x sliver
  const size_t row_bytes = static_cast<size_t>(k) * dtype_size(DT);

  // x packed once (both parities of every K block), shared by all tasks.
  Buf<float> xpack(xs * xs_size + 1);
  par_for(xs, 8, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      pack_sliver<DType::kF32, kR>(a.x + s * kR * k, k, n_rows - s * kR, nv, kR * xs, s,
                                   xpack.data());
    }
  });

  const int64_t tasks = (m_rows + kMw - 1) / kMw;
  par_for(tasks, 1, [&](int64_t t0, int64_t t1) {
    constexpr int64_t kWs = kMw / kC;  // W slivers per super block
    constexpr int64_t kXs = kNx / kR;  // x slivers per x block
    constexpr int64_t kAcc = kR * kC * kLanes;  // floats per (x sliver, W sliver) pair
    thread_local Scratch wpack, acc;
    const int64_t ws_size = kC * nv * kLanes;
    wpack.reserve(kWs * ws_size + 1);
    acc.reserve(kXs * kWs * kAcc);
    const char* wbase = static_cast<const char*>(a.w.data);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t m0 = t * kMw, m1 = min64(m_rows, m0 + kMw);
      const int64_t nws = (m1 - m0 + kC - 1) / kC;
      for (int64_t ws = 0; ws < nws; ++ws) {
        const int64_t mr = m0 + ws * kC;
        pack_sliver<DT, kC>(wbase + static_cast<size_t>(mr) * row_bytes, k, m_rows - mr, nv,
                            kC * kWs, ws, wpack.data());
      }
      for (int64_t xb = 0; xb < xs; xb += kXs) {
        const int64_t nxs = min64(kXs, xs - xb);
        std::memset(acc.data(), 0, kXs * kWs * kAcc * sizeof(float));
        for (int64_t v0 = 0; v0 < nv; v0 += kv) {
          const int64_t vb = min64(kv, nv - v0);
          for (int64_t ws = 0; ws < nws; ++ws) {
            const float* wp = wpack.data() + v0 * kLanes * kC * kWs + ws * kC * vb * kLanes;
            for (int64_t i = 0; i < nxs; ++i) {
              const float* xp = xpack.data() + v0 * kLanes * kR * xs + (xb + i) * kR * vb * kLanes;
              float* ac = acc.data() + (i * kWs + ws) * kAcc;
              microkernel(xp, wp, vb, ac);
            }
          }
        }
        // Finish each output in linear's order: hsum, then the scalar tail.
        for (int64_t i = 0; i < nxs; ++i) {
          for (int r = 0; r < kR; ++r) {
            const int64_t n = (xb + i) * kR + r;
            if (n >= n_rows) break;
            const float* x = a.x + n * k;
            float* yrow = a.y + n * m_rows;
            for (int64_t ws = 0; ws < nws; ++ws) {
              const float* ac = acc.data() + (i * kWs + ws) * kAcc;
              for (int c = 0; c < kC; ++c) {
                const int64_t m = m0 + ws * kC + c;
                if (m >= m1) break;
                const int q = r * kC + c;
                float s = hsum(load(ac + q * kLanes));
                const void* w = wbase + static_cast<size_t>(m) * row_bytes;
                for (int64_t j = nv * kLanes; j < k; ++j) s += load_w1<DT>(w, j) * x[j];
                const float bias = a.bias ? a.bias[m] : 0.0f;
                yrow[m] = a.accumulate ? yrow[m] + (s + bias) : s + bias;
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
  // Equal chunks (whole microkernel rows), not kNb + a sliver: each chunk costs a W pass.
  const int64_t chunks = (a.n + kNb - 1) / kNb;
  const int64_t size = ((a.n + chunks - 1) / chunks + kR - 1) / kR * kR;
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
