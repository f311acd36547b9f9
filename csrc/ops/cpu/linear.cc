// linear: y[n, m] = sum_k x[n, k] * W[m, k] + bias[m]   (W [M, K] row-major, bf16/f16/f32;
// x, y fp32; fp32 accumulation).
// Napkin math: decode (N = 1) reads every weight byte once: M*K*sizeof(w) bytes per call, so it
// is bound by memory bandwidth (e.g. 2560x2560 bf16 = 13 MB -> ~0.6 ms at 22 GB/s).  Prefill is
// 2*N*M*K FLOPs: from kGemmMinRows rows on it goes to the packed GEMM in gemm.h; below that,
// rows of x are processed in blocks of 4 that share each weight load (and with software prefetch
// of the next weight rows).  Both sum every output in one order (dot_linear in simd.h).
#include "ops/cpu/gemm.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/simd.h"

namespace gemma_native::ops::cpu::GN_ISA {
namespace {

constexpr int64_t kPanel = 32;        // rows of x kept hot in cache per pass over a weight range
constexpr int64_t kGemmMinRows = 16;  // N from which packing the GEMM operands pays for itself

// G weight rows (starting at w, row stride row_bytes) times R rows of x (row stride k): G*R
// independent FMA chains share every load.  Every output is summed in linear's one order: a
// single vector accumulator over the whole kLanes vectors of K in increasing k, hsum, then the
// scalar tail (gemm.h sums the same way), so the result does not depend on G, R or the path.
// pf, when not null, is the next group of G weight rows: it is prefetched into L2 a cache line
// per row at a time while this group runs, so the weight stream keeps enough loads in flight
// (a couple of hardware prefetch streams per core leave DRAM latency-bound at small G).
template <DType DT, int G, int R>
static inline void gemv_block(const char* w, size_t row_bytes, const float* x, int64_t k,
                              const float* bias, bool accumulate, float* y, int64_t ldy,
                              const char* pf) {
  Vec c[G][R];
#pragma GCC unroll 8
  for (int g = 0; g < G; ++g) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) c[g][r] = zero();
  }
  const int64_t kv = k / kLanes * kLanes;
  constexpr int64_t kLineElems = 64 / (DT == DType::kF32 ? 4 : 2);
  for (int64_t i = 0; i < kv; i += kLanes) {
    if (pf != nullptr && i % kLineElems == 0) {
#pragma GCC unroll 8
      for (int g = 0; g < G; ++g) prefetch_l2(pf + g * row_bytes + i * dtype_size(DT));
    }
    Vec xv[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) xv[r] = load(x + r * k + i);
#pragma GCC unroll 8
    for (int g = 0; g < G; ++g) {
      const Vec wv = load_w<DT>(w + g * row_bytes, i);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) c[g][r] = fma(wv, xv[r], c[g][r]);
    }
  }
#pragma GCC unroll 8
  for (int g = 0; g < G; ++g) {
    const void* wg = w + g * row_bytes;
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      float s = hsum(c[g][r]);
      const float* xr = x + r * k;
      for (int64_t j = kv; j < k; ++j) s += load_w1<DT>(wg, j) * xr[j];
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
    const char* next = m + 2 * G <= m_total ? wbase + (m + G) * row_bytes : nullptr;
    gemv_block<DT, G, R>(wbase + m * row_bytes, row_bytes, x, k, a.bias ? a.bias + m : nullptr,
                         a.accumulate, y + m, m_total, next);
  }
  for (; m < m1; ++m) {
    gemv_block<DT, 1, R>(wbase + m * row_bytes, row_bytes, x, k, a.bias ? a.bias + m : nullptr,
                         a.accumulate, y + m, m_total, nullptr);
  }
}

// Decode / small batches: every weight byte of [m0, m1) is read from memory once; groups of
// kRowChunk weight rows stay in L2 while all the x rows pass over them.
constexpr int64_t kRowChunk = 16;
constexpr int kGemvRows = 4;  // x rows per register tile (then 1-3 for the rest)

// Calls f(std::integral_constant<int, R>(), n) for the rows [n0, n1) of x in blocks of R rows:
// kGemvRows at a time, then one block of the 1-3 left.
template <class F>
static inline void row_blocks(int64_t n0, int64_t n1, F&& f) {
  int64_t n = n0;
  for (; n + kGemvRows <= n1; n += kGemvRows) f(std::integral_constant<int, kGemvRows>(), n);
  switch (n1 - n) {
    case 1: f(std::integral_constant<int, 1>(), n); break;
    case 2: f(std::integral_constant<int, 2>(), n); break;
    case 3: f(std::integral_constant<int, 3>(), n); break;
    default: break;
  }
}

template <DType DT>
void linear_rows(const LinearArgs& a, int64_t m0, int64_t m1);

template <DType DT>
void linear_range(const LinearArgs& a, int64_t m0, int64_t m1) {
  if (a.n <= kGemvRows) {  // one block of x rows: nothing to keep in L2, walk the range
    linear_rows<DT>(a, m0, m1);
    return;
  }
  for (int64_t m = m0; m < m1; m += kRowChunk) linear_rows<DT>(a, m, min64(m1, m + kRowChunk));
}

// Weight rows per group for R rows of x: G*R accumulators plus the widened weight vector and one
// spare fill the vector registers (x comes from L1 as an FMA memory operand), at most 8.  On the
// EPYC this took batch-4 bf16 GEMV from ~55 to ~95 GFLOP/s (7680x2560; G=2 held x in registers).
#if defined(GN_X86_AVX512)
constexpr int kVecRegs = 32;
#else
constexpr int kVecRegs = 16;
#endif
constexpr int group_for(int r) {
  const int g = (kVecRegs - 2) / r;
  return g > 8 ? 8 : (g < 1 ? 1 : g);
}

template <DType DT, int R>
static inline void gemv_rows_r(const LinearArgs& a, int64_t m0, int64_t m1, int64_t n) {
  gemv_rows<DT, group_for(R), R>(a, m0, m1, n);
}

template <DType DT>
void linear_rows(const LinearArgs& a, int64_t m0, int64_t m1) {
  for (int64_t n0 = 0; n0 < a.n; n0 += kPanel) {
    row_blocks(n0, min64(a.n, n0 + kPanel), [&](auto r, int64_t n) {
      gemv_rows_r<DT, decltype(r)::value>(a, m0, m1, n);
    });
  }
}

// BF16R32 weights (dtype.h) below kGemmMinRows rows of x: x is laid out once per call in the
// GEMM's lane order ([l][j][r] per block of up to kGemvRows rows; read in place, lane l's
// values 32 bytes apart, 4 rows of x came from L2 and ran at two thirds of the speed), then per
// microkernel panel of gemm::kNR rows of W (one sequential stream over the panel's lanes) and
// per block, the GEMM's BF16R32 microkernel and the same lane tree: each output summed in
// linear's one order.
template <int R>
static void r32_rows(const LinearArgs& a, int64_t q, int64_t n0, const float* xl) {
  using namespace gemm;
  const int64_t k = a.w.cols, m_rows = a.w.rows, m0 = q * kNR, nv = k / kLanes;
  alignas(64) float lanes[kLanes * R * kNR];
  for (int l = 0; l < kLanes; ++l) {
    microkernel_r32<R, true>(xl + l * nv * R, R, 1, r32_panel(a.w.data, k, q, l), nv / 2,
                             lanes + l * R * kNR);
  }
  alignas(64) float bias_panel[kNR];
  for (int64_t c = 0; c < kNR; ++c) bias_panel[c] = a.bias ? a.bias[m0 + c] : 0.0f;
  finish_whole(lanes, R * kNR, R, bias_panel, a.accumulate, a.y + n0 * m_rows + m0, m_rows);
}

template <int R>
static void r32_pack_x(const LinearArgs& a, int64_t n0, float* xl) {
  const int64_t k = a.w.cols;
  gemm::pack_panel<DType::kF32, R>(a.x + n0 * k, k, R, k / kLanes, xl);
}

static void linear_r32(const LinearArgs& a) {
  if (a.n >= kGemmMinRows) {
    gemm::run<DType::kBF16R32>(a);
    return;
  }
  const int64_t k = a.w.cols;
  thread_local Grow<float> xbuf;  // the calling thread's; workers use the pointer
  float* const xl = xbuf.get(a.n * k + 1);
  row_blocks(0, a.n, [&](auto r, int64_t n) { r32_pack_x<decltype(r)::value>(a, n, xl + n * k); });
  par_for(a.w.rows / gemm::kNR, 1, [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) {
      row_blocks(0, a.n, [&](auto r, int64_t n) {
        r32_rows<decltype(r)::value>(a, q, n, xl + n * k);
      });
    }
  });
}

}  // namespace

void linear(const LinearArgs& a) {
  if (a.w.dtype == DType::kBF16R32) {
    linear_r32(a);
    return;
  }
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
