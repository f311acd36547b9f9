// rmsnorm: out = x * rsqrt(mean(x^2) + eps) * (offset + w), per row of D; fp32 throughout,
// one rounding at the end (the Hugging Face convention; docs/model-math.md, 'RMSNorm').
// Napkin math: 2 passes over N*D floats; bandwidth bound, negligible next to the linears.
#include <math.h>

#include "ops/cpu/kernels.h"
#include "ops/cpu/simd.h"

namespace gemma_native::ops::cpu::GN_ISA {

void rmsnorm(const RmsNormArgs& a) {
  const int64_t d = a.d;
  par_for(a.n, 4, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* x = a.x + r * d;
      float* o = a.out + r * d;
      Vec acc0 = zero(), acc1 = zero();
      int64_t i = 0;
      for (; i + 2 * kLanes <= d; i += 2 * kLanes) {
        const Vec v0 = load(x + i), v1 = load(x + i + kLanes);
        acc0 = fma(v0, v0, acc0);
        acc1 = fma(v1, v1, acc1);
      }
      for (; i + kLanes <= d; i += kLanes) {
        const Vec v = load(x + i);
        acc0 = fma(v, v, acc0);
      }
      float ss = hsum(add(acc0, acc1));
      for (; i < d; ++i) ss += x[i] * x[i];
      const float inv = 1.0f / sqrtf(ss / static_cast<float>(d) + a.eps);
      for (int64_t j = 0; j < d; ++j) o[j] = x[j] * inv * (a.offset + a.w[j]);
    }
  });
}

}  // namespace gemma_native::ops::cpu::GN_ISA
