// rope: rotary position embedding, half-split (NeoX) layout over the first rot_dims dims of
// every head, in place (Griffin rotates half the head: rot_dims = head_dim / 2; Gemma all).
// inv_freq[d] = 1 / base^(2d / rot_dims) (divided by the linear scaling factor, if any);
// theta = pos * inv_freq[d], in fp32, the order Hugging Face computes it in (docs/model-math.md,
// 'RoPE').
// The frequencies come from gemma_native/math.h (shared with the CUDA kernel) and cos/sin of the
// fp32 theta from its portable double evaluation, so every kernel set and machine agrees.
// Napkin math: one sin/cos pair per (token, d), shared by all heads of the token.
#include "gemma_native/math.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/simd.h"

namespace gemma_native::ops::cpu::GN_ISA {

void rope(const RopeArgs& a) {
  const int64_t half = a.rot_dims / 2;
  if (half == 0) return;
  Buf<float> inv_freq(half);
  for (int64_t d = 0; d < half; ++d) {
    inv_freq[d] = rope_inv_freq(a.base, d, a.rot_dims, a.linear_factor);
  }
  par_for(a.n, 1, [&](int64_t n0, int64_t n1) {
    Buf<float> cs(2 * half);
    for (int64_t n = n0; n < n1; ++n) {
      const float p = static_cast<float>(a.pos[n]);
      for (int64_t d = 0; d < half; ++d) {
        const float theta = p * inv_freq[d];
        double s, c;
        pm::sincos_d(theta, &s, &c);
        cs[d] = static_cast<float>(c);
        cs[half + d] = static_cast<float>(s);
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
  });
}

}  // namespace gemma_native::ops::cpu::GN_ISA
