// rope: rotary position embedding, half-split (NeoX) layout over the first rot_dims dims of
// every head, in place (Griffin rotates half the head: rot_dims = head_dim / 2; Gemma all).
// inv_freq[d] = 1 / base^(2d / rot_dims) (divided by the linear scaling factor, if any);
// theta = pos * inv_freq[d], in fp32 (MODELS.md 1.8), the order Hugging Face computes it in.
// Napkin math: one sin/cos pair per (token, d), shared by all heads of the token.
#include <math.h>

#include "ops/cpu/kernels.h"
#include "ops/cpu/simd.h"

namespace gemma_native::ops::cpu::GN_ISA {

void rope(const RopeArgs& a) {
  const int64_t half = a.rot_dims / 2;
  par_for(a.n, 1, [&](int64_t n0, int64_t n1) {
    float* cs = new float[2 * half];
    for (int64_t n = n0; n < n1; ++n) {
      const float p = static_cast<float>(a.pos[n]);
      for (int64_t d = 0; d < half; ++d) {
        const float exponent = static_cast<float>(2 * d) / static_cast<float>(a.rot_dims);
        float inv_freq = 1.0f / powf(a.base, exponent);
        if (a.linear_factor != 1.0f) inv_freq = inv_freq / a.linear_factor;
        const float theta = p * inv_freq;
        cs[d] = cosf(theta);
        cs[half + d] = sinf(theta);
      }
      for (int64_t h = 0; h < a.heads; ++h) {
        float* x = a.x + (n * a.heads + h) * a.head_dim;
        for (int64_t d = 0; d < half; ++d) {
          const float x1 = x[d], x2 = x[d + half];
          x[d] = x1 * cs[d] - x2 * cs[half + d];
          x[d + half] = x2 * cs[d] + x1 * cs[half + d];
        }
      }
    }
    delete[] cs;
  });
}

}  // namespace gemma_native::ops::cpu::GN_ISA
