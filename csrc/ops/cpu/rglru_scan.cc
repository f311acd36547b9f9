// rglru_scan: the Real-Gated Linear Recurrent Unit of Griffin (docs/model-math.md, 'RG-LRU'),
// fp32 state.
//   gx = sigmoid(gate_x), ga = sigmoid(gate_a), log_a = -8 * ga * softplus(a_param)
//   a = exp(log_a), mult = reset ? 1 : sqrt(1 - exp(2 log_a)), h = (reset ? 0 : a) h + x gx mult
// Gates are computed in fp32 (the JAX reference's choice; exact near a ~ 1).
// Napkin math: ~5 transcendental calls per element, sequential over t, parallel over channels;
// decode touches 4 floats per channel, so it is negligible next to the linears around it.
#include <math.h>

#include "gemma_native/math.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/simd.h"

namespace gemma_native::ops::cpu::GN_ISA {

void rglru_scan(const RgLruArgs& a) {
  const int64_t T = a.time, L = a.channels;
  // Parallel over (batch, channel blocks of 64); each block runs its own time loop.
  const int64_t cblk = 64, nblk = (L + cblk - 1) / cblk;
  par_for(a.batch * nblk, 1, [&](int64_t w0, int64_t w1) {
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t b = w / nblk, c0 = (w % nblk) * cblk, c1 = min64(L, c0 + cblk);
      float* h = a.h + b * L;
      float sp[cblk];  // softplus(a_param) depends on the channel only: once per block
      for (int64_t c = c0; c < c1; ++c) sp[c - c0] = softplus(a.a_param[c]);
      for (int64_t t = 0; t < T; ++t) {
        const int64_t row = (b * T + t) * L;
        const float* xr = a.x + row;
        const float* gxr = a.gate_x + row;
        const float* gar = a.gate_a + row;
        float* yr = a.y + row;
        if (a.pos[b * T + t] == 0) {  // a document starts: h = x gx
          for (int64_t c = c0; c < c1; ++c) {
            const float hn = xr[c] * sigmoid(gxr[c]);
            h[c] = hn;
            yr[c] = hn;
          }
          continue;
        }
        // Channels are independent: this loop has no branches and vectorizes.
        for (int64_t c = c0; c < c1; ++c) {
          const float gx = sigmoid(gxr[c]);
          const float ga = sigmoid(gar[c]);
          const float log_a = -8.0f * ga * sp[c - c0];
          const float xn = xr[c] * gx;
          const float decay = exp_f(log_a);
          const float mult = sqrtf(1.0f - exp_f(2.0f * log_a));
          const float hn = decay * h[c] + xn * mult;
          h[c] = hn;
          yr[c] = hn;
        }
      }
    }
  });
}

}  // namespace gemma_native::ops::cpu::GN_ISA
