// linear: y[n, m] = sum_k x[n, k] * W[m, k] + bias[m]   (W [M, K] row-major, bf16/f16/f32;
// x, y fp32; fp32 accumulation).
// Napkin math: decode (N = 1) reads every weight byte once: M*K*sizeof(w) bytes per call, so it
// is bound by memory bandwidth (e.g. 2560x2560 bf16 = 13 MB -> ~0.6 ms at 22 GB/s).  Prefill is
// 2*N*M*K FLOPs: from kGemmMinRows rows on it goes to the packed GEMM in gemm.h; below that,
// rows of x are processed in blocks of 4 that share each weight load and in panels of 32 that
// stay in L2 while a thread walks its weight rows.  Both sum every output in dot_w's order.
#include "ops/cpu/gemm.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/simd.h"

namespace gemma_native::ops::cpu::GN_ISA {
namespace {

constexpr int64_t kPanel = 32;        // rows of x kept hot in cache per pass over a weight range
constexpr int64_t kGemmMinRows = 16;  // N from which packing the GEMM operands pays for itself

// G weight rows (starting at w, row stride row_bytes) times R rows of x (row stride k): 2*G*R
// independent FMA chains share every load.  Each output is summed exactly as dot_w() does (c0
// over even vectors, c1 over odd ones, hsum(c0 + c1), then the scalar tail), so the result does
// not depend on G, R or which path computed it.
template <DType DT, int G, int R>
static inline void gemv_block(const char* w, size_t row_bytes, const float* x, int64_t k,
                              const float* bias, bool accumulate, float* y, int64_t ldy) {
  Vec c0[G][R], c1[G][R];
#pragma GCC unroll 4
  for (int g = 0; g < G; ++g) {
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) c0[g][r] = c1[g][r] = zero();
  }
  int64_t i = 0;
  for (; i + 2 * kLanes <= k; i += 2 * kLanes) {
    Vec xa[R], xb[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      xa[r] = load(x + r * k + i);
      xb[r] = load(x + r * k + i + kLanes);
    }
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) {
      const void* wg = w + g * row_bytes;
      const Vec wa = load_w<DT>(wg, i), wb = load_w<DT>(wg, i + kLanes);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        c0[g][r] = fma(wa, xa[r], c0[g][r]);
        c1[g][r] = fma(wb, xb[r], c1[g][r]);
      }
    }
  }
  if (i + kLanes <= k) {
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) {
      const Vec wa = load_w<DT>(w + g * row_bytes, i);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) c0[g][r] = fma(wa, load(x + r * k + i), c0[g][r]);
    }
    i += kLanes;
  }
#pragma GCC unroll 4
  for (int g = 0; g < G; ++g) {
    const void* wg = w + g * row_bytes;
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      float s = hsum(add(c0[g][r], c1[g][r]));
      const float* xr = x + r * k;
      for (int64_t j = i; j < k; ++j) s += load_w1<DT>(wg, j) * xr[j];
      const float b = bias ? bias[g] : 0.0f;
      float* yo = y + r * ldy + g;
      *yo = accumulate ? *yo + (s + b) : s + b;
    }
  }
}

// Weight rows [m0, m1) against R rows of x: groups of G rows, then single rows.
template <DType DT, int G, int R>
static inline void gemv_rows(const LinearArgs& a, int64_t m0, int64_t m1, int64_t n) {
  const int64_t k = a.w.cols, m_total = a.w.rows;
  const size_t row_bytes = static_cast<size_t>(k) * dtype_size(DT);
  const char* wbase = static_cast<const char*>(a.w.data);
  const float* x = a.x + n * k;
  float* y = a.y + n * m_total;
  int64_t m = m0;
  for (; m + G <= m1; m += G) {
    gemv_block<DT, G, R>(wbase + m * row_bytes, row_bytes, x, k, a.bias ? a.bias + m : nullptr,
                         a.accumulate, y + m, m_total);
  }
  for (; m < m1; ++m) {
    gemv_block<DT, 1, R>(wbase + m * row_bytes, row_bytes, x, k, a.bias ? a.bias + m : nullptr,
                         a.accumulate, y + m, m_total);
  }
}

// Decode / small batches: every weight byte of [m0, m1) is read from memory once; groups of
// kRowChunk weight rows stay in L2 while all the x rows pass over them.
constexpr int64_t kRowChunk = 16;

template <DType DT>
void linear_rows(const LinearArgs& a, int64_t m0, int64_t m1);

template <DType DT>
void linear_range(const LinearArgs& a, int64_t m0, int64_t m1) {
  for (int64_t m = m0; m < m1; m += kRowChunk) linear_rows<DT>(a, m, min64(m1, m + kRowChunk));
}

template <DType DT>
void linear_rows(const LinearArgs& a, int64_t m0, int64_t m1) {
  for (int64_t n0 = 0; n0 < a.n; n0 += kPanel) {
    const int64_t n1 = min64(a.n, n0 + kPanel);
    int64_t n = n0;
    // Blocks of 4 rows can't share more weight rows without running out of registers; the
    // rest share each weight load across 2 (3 rows) or 4 (1-2 rows) weight rows.
    switch (n1 - n0) {
      case 1: gemv_rows<DT, 4, 1>(a, m0, m1, n); continue;
      case 2: gemv_rows<DT, 2, 2>(a, m0, m1, n); continue;
      case 3: gemv_rows<DT, 2, 3>(a, m0, m1, n); continue;
      default: break;
    }
    for (; n + 4 <= n1; n += 4) gemv_rows<DT, 1, 4>(a, m0, m1, n);
    switch (n1 - n) {
      case 1: gemv_rows<DT, 4, 1>(a, m0, m1, n); break;
      case 2: gemv_rows<DT, 2, 2>(a, m0, m1, n); break;
      case 3: gemv_rows<DT, 2, 3>(a, m0, m1, n); break;
      default: break;
    }
  }
}

}  // namespace

void linear(const LinearArgs& a) {
  with_dtype(a.w.dtype, [&](auto dt) {
    constexpr DType DT = decltype(dt)::value;
    if (a.n >= kGemmMinRows) {
      gemm::run<DT>(a);
      return;
    }
    // Chunks of >= 16 output rows keep per-task overhead small next to the row dot products.
    par_for(a.w.rows, kRowChunk, [&](int64_t m0, int64_t m1) { linear_range<DT>(a, m0, m1); });
  });
}

}  // namespace gemma_native::ops::cpu::GN_ISA
