// conv1d: causal depthwise temporal convolution of width K (Griffin: K = 4); docs/model-math.md,
// 'Conv1D'.
//   y[b,t,c] = bias[c] + sum_{s<K} w[K-1-s, c] * u(t-s)[c] * mask(t, s)
// u(t-s) is x[b, t-s] inside the call, the carried state (last K-1 raw inputs, oldest first)
// before it; mask drops inputs across a document start (pos == 0 in (t-s, t]).
// Napkin math: K FMAs per element, bandwidth bound (reads x once, writes y once).
#include "ops/cpu/kernels.h"
#include "ops/cpu/simd.h"

namespace gemma_native::ops::cpu::GN_ISA {

void conv1d(const Conv1dArgs& a) {
  const int64_t T = a.time, L = a.channels, K = a.width, H = K - 1;
  par_for(a.batch, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const float* x = a.x + b * T * L;
      const int32_t* pos = a.pos + b * T;
      float* y = a.y + b * T * L;
      float* state = a.state ? a.state + b * H * L : nullptr;
      int64_t last_start = -1;  // index of the latest document start at or before t
      for (int64_t t = 0; t < T; ++t) {
        if (pos[t] == 0) last_start = t;
        float* yt = y + t * L;
        for (int64_t c = 0; c < L; ++c) yt[c] = a.bias ? a.bias[c] : 0.0f;
        for (int64_t s = 0; s < K; ++s) {
          const int64_t src = t - s;
          // Inputs before the latest document start are masked (the start itself is kept).
          if (last_start >= 0 && src < last_start) break;
          const float* w = a.w + (K - 1 - s) * L;
          const float* u;
          if (src >= 0) {
            u = x + src * L;
          } else if (state && src >= -H) {
            u = state + (H + src) * L;
          } else {
            break;
          }
          for (int64_t c = 0; c < L; ++c) yt[c] += w[c] * u[c];
        }
      }
      if (state) {
        // New state = last H raw inputs of (old state ++ x).
        if (T >= H) {
          for (int64_t i = 0; i < H; ++i) {
            const float* src = x + (T - H + i) * L;
            for (int64_t c = 0; c < L; ++c) state[i * L + c] = src[c];
          }
        } else {
          for (int64_t i = 0; i < H - T; ++i) {
            for (int64_t c = 0; c < L; ++c) state[i * L + c] = state[(i + T) * L + c];
          }
          for (int64_t i = 0; i < T; ++i) {
            for (int64_t c = 0; c < L; ++c) state[(H - T + i) * L + c] = x[i * L + c];
          }
        }
      }
    }
  });
}

}  // namespace gemma_native::ops::cpu::GN_ISA
