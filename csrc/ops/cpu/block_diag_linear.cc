// block_diag_linear: y[n, h*bs + j] = sum_i x[n, h*bs + i] * w[h, i, j] + b[h, j]
// (input-major blocks, as the RG-LRU gates store them; MODELS.md 1.7).
// Napkin math: H*bs*bs weights (2B: 10*256*256 = 655k, 1.3 MB bf16) per token at decode;
// computed as rank-1 updates along j so the weight rows are read contiguously.
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
        for (int64_t j = 0; j < bs; ++j) y[j] = a.b ? a.b[h * bs + j] : 0.0f;
        for (int64_t i = 0; i < bs; ++i) {
          const Vec xi = splat(x[i]);
          const float xs = x[i];
          const int64_t wrow = wblock + i * bs;
          int64_t j = 0;
          for (; j + kLanes <= bs; j += kLanes) {
            store(y + j, fma(xi, load_w<DT>(a.w, wrow + j), load(y + j)));
          }
          for (; j < bs; ++j) y[j] += xs * load_w1<DT>(a.w, wrow + j);
        }
      }
    });
  });
}

}  // namespace gemma_native::ops::cpu::GN_ISA
