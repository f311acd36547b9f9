// block_diag_linear: y[n, h*bs + j] = sum_i x[n, h*bs + i] * w[h, i, j] + b[h, j]
// (input-major blocks, as the RG-LRU gates store them; docs/model-math.md, 'RG-LRU').
// Napkin math: H*bs*bs weights (2B: 10*256*256 = 655k, 1.3 MB bf16) per token at decode;
// computed as rank-1 updates along j so the weight rows are read contiguously, with 4 vectors
// of outputs held in registers over the whole i loop (each output sums bias, then i = 0, 1, ...
// in order, the same for any N).  Prefill is 2*N*H*bs*bs FLOPs.
#include "ops/cpu/kernels.h"
#include "ops/cpu/simd.h"

namespace gemma_native::ops::cpu::GN_ISA {

void block_diag_linear(const BlockDiagLinearArgs& a) {
  const int64_t bs = a.block_size, width = a.blocks * bs;
  with_dtype(a.w_dtype, [&](auto dt) {
    constexpr DType DT = decltype(dt)::value;
    par_for(a.n * a.blocks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t n = t / a.blocks, h = t % a.blocks;
        const float* x = a.x + n * width + h * bs;
        float* y = a.y + n * width + h * bs;
        const int64_t wblock = h * bs * bs;
        int64_t j = 0;
        for (; j + 4 * kLanes <= bs; j += 4 * kLanes) {
          Vec y0 = zero(), y1 = zero(), y2 = zero(), y3 = zero();
          if (a.b) {
            const float* bj = a.b + h * bs + j;
            y0 = load(bj), y1 = load(bj + kLanes), y2 = load(bj + 2 * kLanes);
            y3 = load(bj + 3 * kLanes);
          }
          for (int64_t i = 0; i < bs; ++i) {
            const Vec xi = splat(x[i]);
            const int64_t wrow = wblock + i * bs + j;
            y0 = fma(xi, load_w<DT>(a.w, wrow), y0);
            y1 = fma(xi, load_w<DT>(a.w, wrow + kLanes), y1);
            y2 = fma(xi, load_w<DT>(a.w, wrow + 2 * kLanes), y2);
            y3 = fma(xi, load_w<DT>(a.w, wrow + 3 * kLanes), y3);
          }
          store(y + j, y0), store(y + j + kLanes, y1);
          store(y + j + 2 * kLanes, y2), store(y + j + 3 * kLanes, y3);
        }
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
    });
  });
}

}  // namespace gemma_native::ops::cpu::GN_ISA
