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

// Rows n0 .. n0+R-1 of block h, outputs j .. j + 4 kWL (4 wide registers: 64 outputs on
// AVX-512, 32 elsewhere): every output sums its bias, then i = 0, 1, ... in order (one fma
// each), exactly as a single row does; the R rows share each widened weight register.  The
// width changes no result (on the EPYC Zen 5, 16 lanes took the 2B gates' [512, 2560] product,
// 10 blocks of 256, from 239 GFLOP/s with 8-lane tiles to 443-479 in alternating runs).
template <DType DT, int R>
static inline void tile4(const BlockDiagLinearArgs& a, int64_t n0, int64_t h, int64_t j) {
  const int64_t bs = a.block_size, width = a.blocks * bs;
  const int64_t wblock = h * bs * bs;
  WVec acc[R][4];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) acc[r][q] = a.b ? wload(a.b + h * bs + j + q * kWL) : wzero();
  }
  const float* x = a.x + n0 * width + h * bs;
  for (int64_t i = 0; i < bs; ++i) {
    const int64_t wrow = wblock + i * bs + j;
    WVec w[4];
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) w[q] = wload_w<DT>(a.w, wrow + q * kWL);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const WVec xi = wsplat(x[r * width + i]);
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) acc[r][q] = wfma(xi, w[q], acc[r][q]);
    }
  }
  float* y = a.y + n0 * width + h * bs + j;
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) wstore(y + r * width + q * kWL, acc[r][q]);
  }
}

// tile4 for rows (1 <= rows <= R) rows: a decode batch below kRows still reads each widened
// weight vector once for all its rows (the sums are the same for any R).
template <DType DT, int R>
static inline void tile4_rows(int64_t rows, const BlockDiagLinearArgs& a, int64_t n0, int64_t h,
                              int64_t j) {
  if constexpr (R > 1) {
    if (rows < R) return tile4_rows<DT, R - 1>(rows, a, n0, h, j);
  }
  tile4<DT, R>(a, n0, h, j);
}

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
  const int64_t j4 = bs / (4 * kWL) * (4 * kWL);  // outputs covered by 4-register tiles
  with_dtype(a.w_dtype, [&](auto dt) {
    constexpr DType DT = decltype(dt)::value;
    const int64_t groups = (a.n + kRows - 1) / kRows;
    par_for(groups * a.blocks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t g = t / a.blocks, h = t % a.blocks;
        const int64_t n0 = g * kRows, rows = min64(kRows, a.n - n0);
        for (int64_t j = 0; j < j4; j += 4 * kWL) {
          tile4_rows<DT, kRows>(rows, a, n0, h, j);
        }
        for (int64_t n = n0; n < n0 + rows; ++n) row_rest<DT>(a, n, h, j4);
      }
    });
  });
}

}  // namespace gemma_native::ops::cpu::GN_ISA
