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

constexpr int64_t kPanel = 32;
constexpr int64_t kGemmMinRows = 16;  // N from which packing pays for itself  // rows of x kept hot in cache per pass over a weight range

template <DType DT>
void linear_range(const LinearArgs& a, int64_t m0, int64_t m1) {
  const int64_t k = a.w.cols, m_total = a.w.rows;
  const size_t row_bytes = static_cast<size_t>(k) * dtype_size(DT);
  const char* wbase = static_cast<const char*>(a.w.data);
  for (int64_t n0 = 0; n0 < a.n; n0 += kPanel) {
    const int64_t n1 = min64(a.n, n0 + kPanel);
    for (int64_t m = m0; m < m1; ++m) {
      const void* w = wbase + static_cast<size_t>(m) * row_bytes;
      const float bias = a.bias ? a.bias[m] : 0.0f;
      int64_t n = n0;
      // Every row is summed in the same order whether it is processed in a block of four or
      // alone (two accumulators over alternating vectors, then the scalar tail), so a row's
      // result never depends on the batch it came in: batch == singles bit for bit.
      for (; n + 4 <= n1; n += 4) {
        const float* x0 = a.x + n * k;
        const float* x1 = x0 + k;
        const float* x2 = x1 + k;
        const float* x3 = x2 + k;
        Vec a0 = zero(), a1 = zero(), a2 = zero(), a3 = zero();
        Vec b0 = zero(), b1 = zero(), b2 = zero(), b3 = zero();
        int64_t i = 0;
        for (; i + 2 * kLanes <= k; i += 2 * kLanes) {
          const Vec w0 = load_w<DT>(w, i), w1 = load_w<DT>(w, i + kLanes);
          a0 = fma(w0, load(x0 + i), a0);
          b0 = fma(w1, load(x0 + i + kLanes), b0);
          a1 = fma(w0, load(x1 + i), a1);
          b1 = fma(w1, load(x1 + i + kLanes), b1);
          a2 = fma(w0, load(x2 + i), a2);
          b2 = fma(w1, load(x2 + i + kLanes), b2);
          a3 = fma(w0, load(x3 + i), a3);
          b3 = fma(w1, load(x3 + i + kLanes), b3);
        }
        if (i + kLanes <= k) {
          const Vec w0 = load_w<DT>(w, i);
          a0 = fma(w0, load(x0 + i), a0);
          a1 = fma(w0, load(x1 + i), a1);
          a2 = fma(w0, load(x2 + i), a2);
          a3 = fma(w0, load(x3 + i), a3);
          i += kLanes;
        }
        float s0 = hsum(add(a0, b0)), s1 = hsum(add(a1, b1));
        float s2 = hsum(add(a2, b2)), s3 = hsum(add(a3, b3));
        for (; i < k; ++i) {
          const float wv = load_w1<DT>(w, i);
          s0 += wv * x0[i];
          s1 += wv * x1[i];
          s2 += wv * x2[i];
          s3 += wv * x3[i];
        }
        float* y = a.y + n * m_total + m;
        if (a.accumulate) {
          y[0] += s0 + bias;
          y[m_total] += s1 + bias;
          y[2 * m_total] += s2 + bias;
          y[3 * m_total] += s3 + bias;
        } else {
          y[0] = s0 + bias;
          y[m_total] = s1 + bias;
          y[2 * m_total] = s2 + bias;
          y[3 * m_total] = s3 + bias;
        }
      }
      for (; n < n1; ++n) {
        const float s = dot_w<DT>(w, a.x + n * k, k);
        float* y = a.y + n * m_total + m;
        *y = a.accumulate ? *y + (s + bias) : s + bias;
      }
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
    par_for(a.w.rows, 16, [&](int64_t m0, int64_t m1) { linear_range<DT>(a, m0, m1); });
  });
}

}  // namespace gemma_native::ops::cpu::GN_ISA
