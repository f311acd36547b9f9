// block_diag_linear: y[n, h*bs + j] = sum_i x[n, h*bs + i] * w[h, i, j] + b[h, j]
// (input-major blocks, as the RG-LRU gates store them; docs/model-math.md, 'RG-LRU').
// Napkin math: H*bs*bs weights (2B: 10*256*256 = 655k, 1.3 MB bf16) per token at decode;
// computed as rank-1 updates along j so the weight rows are read contiguously, with 4 vectors
// of outputs held in registers over the whole i loop (each output sums bias, then i = 0, 1, ...
// in order, the same for any N).  Prefill is 2*N*H*bs*bs FLOPs: there kRows rows of x share
// every widened weight vector (the weight block stays in L2), which makes it FMA-bound
// instead of load-bound.
#include "ops/cpu/kernels.h"
#include "ops/cpu/simd.h"

namespace gemma_native::ops::cpu::GN_ISA {

namespace {

#if defined(GN_X86_AVX512)
constexpr int kRows = 6;  // rows of x per register tile: 24 accumulators of 32 vector registers
#elif defined(GN_X86_AVX2)
constexpr int kRows = 2;  // 8 accumulators + 4 weight vectors + 1 broadcast of 16 registers
#else
constexpr int kRows = 2;
#endif

// Rows n0 .. n0+R-1 of block h, output vectors j .. j + 4 kLanes: every output sums its bias,
// then i = 0, 1, ... in order (one fma each), exactly as a single row does; the R rows share
// each widened weight vector.
template <DType DT, int R>
static inline void tile4(const BlockDiagLinearArgs& a, int64_t n0, int64_t h, int64_t j) {
  const int64_t bs = a.block_size, width = a.blocks * bs;
  const int64_t wblock = h * bs * bs;
  Vec acc[R][4];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) acc[r][q] = a.b ? load(a.b + h * bs + j + q * kLanes) : zero();
  }
  const float* x = a.x + n0 * width + h * bs;
  for (int64_t i = 0; i < bs; ++i) {
    const int64_t wrow = wblock + i * bs + j;
    Vec w[4];
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) w[q] = load_w<DT>(a.w, wrow + q * kLanes);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Vec xi = splat(x[r * width + i]);
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) acc[r][q] = fma(xi, w[q], acc[r][q]);
    }
  }
  float* y = a.y + n0 * width + h * bs + j;
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) store(y + r * width + q * kLanes, acc[r][q]);
  }
}

#if defined(GN_X86_AVX512)
// 16 weights of dtype DT from element i of w, widened exactly (as load_w, 16 lanes).
template <DType DT>
static inline __m512 load_w16(const void* w, int64_t i) {
  if constexpr (DT == DType::kF32) {
    return _mm512_loadu_ps(static_cast<const float*>(w) + i);
  } else {
    const __m256i h = _mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + i));
    if constexpr (DT == DType::kBF16) {
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    } else {
      return _mm512_cvtph_ps(h);
    }
  }
}

constexpr bool kHasWide = true;

// tile4 with 16-lane registers: outputs j .. j + 64, each the same chain (bias, then one fma
// per i in order), so the same bits; twice the outputs per instruction.  On the EPYC Zen 5 the
// 2B gates' [512, 2560] product (10 blocks of 256) went from 239 GFLOP/s (8-lane tiles) to
// 479.
template <DType DT, int R>
static inline void tile4_wide(const BlockDiagLinearArgs& a, int64_t n0, int64_t h, int64_t j) {
  const int64_t bs = a.block_size, width = a.blocks * bs;
  const int64_t wblock = h * bs * bs;
  __m512 acc[R][4];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      acc[r][q] = a.b ? _mm512_loadu_ps(a.b + h * bs + j + q * 16) : _mm512_setzero_ps();
    }
  }
  const float* x = a.x + n0 * width + h * bs;
  for (int64_t i = 0; i < bs; ++i) {
    const int64_t wrow = wblock + i * bs + j;
    __m512 w[4];
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) w[q] = load_w16<DT>(a.w, wrow + q * 16);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 xi = _mm512_set1_ps(x[r * width + i]);
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) acc[r][q] = _mm512_fmadd_ps(xi, w[q], acc[r][q]);
    }
  }
  float* y = a.y + n0 * width + h * bs + j;
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) _mm512_storeu_ps(y + r * width + q * 16, acc[r][q]);
  }
}
#else
constexpr bool kHasWide = false;  // no 16-lane tiles
template <DType DT, int R>
static inline void tile4_wide(const BlockDiagLinearArgs&, int64_t, int64_t, int64_t) {}
#endif

constexpr int64_t kWide = 64;  // outputs per 16-lane tile: 4 registers of 16

// One row, the outputs from j on (vectors of kLanes, then scalars), in the same order.
template <DType DT>
static inline void row_rest(const BlockDiagLinearArgs& a, int64_t n, int64_t h, int64_t j) {
  const int64_t bs = a.block_size, width = a.blocks * bs;
  const float* x = a.x + n * width + h * bs;
  float* y = a.y + n * width + h * bs;
  const int64_t wblock = h * bs * bs;
  for (; j + kLanes <= bs; j += kLanes) {
    Vec yv = a.b ? load(a.b + h * bs + j) : zero();
    for (int64_t i = 0; i < bs; ++i) {
      yv = fma(splat(x[i]), load_w<DT>(a.w, wblock + i * bs + j), yv);
    }
    store(y + j, yv);
  }
  for (int64_t jj = j; jj < bs; ++jj) y[jj] = a.b ? a.b[h * bs + jj] : 0.0f;
  for (int64_t i = 0; i < bs; ++i) {
    const float xs = x[i];
    const int64_t wrow = wblock + i * bs;
    for (int64_t jj = j; jj < bs; ++jj) y[jj] += xs * load_w1<DT>(a.w, wrow + jj);
  }
}

}  // namespace

void block_diag_linear(const BlockDiagLinearArgs& a) {
  const int64_t bs = a.block_size;
  const int64_t jw = kHasWide ? bs / kWide * kWide : 0;  // outputs covered by 16-lane tiles
  const int64_t j4 = bs / (4 * kLanes) * (4 * kLanes);  // ... and then by 4-vector tiles
  with_dtype(a.w_dtype, [&](auto dt) {
    constexpr DType DT = decltype(dt)::value;
    const int64_t groups = (a.n + kRows - 1) / kRows;
    par_for(groups * a.blocks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t g = t / a.blocks, h = t % a.blocks;
        const int64_t n0 = g * kRows, rows = min64(kRows, a.n - n0);
        for (int64_t j = 0; j < jw; j += kWide) {
          if (rows == kRows) {
            tile4_wide<DT, kRows>(a, n0, h, j);
          } else {
            for (int64_t n = n0; n < n0 + rows; ++n) tile4_wide<DT, 1>(a, n, h, j);
          }
        }
        for (int64_t j = jw; j < j4; j += 4 * kLanes) {
          if (rows == kRows) {
            tile4<DT, kRows>(a, n0, h, j);
          } else {
            for (int64_t n = n0; n < n0 + rows; ++n) tile4<DT, 1>(a, n, h, j);
          }
        }
        for (int64_t n = n0; n < n0 + rows; ++n) row_rest<DT>(a, n, h, j4);
      }
    });
  });
}

}  // namespace gemma_native::ops::cpu::GN_ISA
