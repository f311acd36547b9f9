// Rotary embedding, half-split (NeoX) layout over the first rot_dims dims of each head, in
// place (ops.h RopeArgs).  One block per token; thread d computes the (cos, sin) of its
// frequency once and rotates pair (d, d + rot_dims/2) of every head of the token.
// inv_freq from gemma_native/math.h, the function the CPU op uses (1 / base^(2d / rot_dims) in
// fp32, the power evaluated in double and rounded once, divided by the linear factor); theta =
// pos * inv_freq in fp32.  cos/sin: theta / pi reduced to [-1, 1] in double,
// then sincospif -- no slow-path range reduction (which would put a local-memory array in the
// kernel), and within ~4e-7 rad of the float theta for any position < 2^31.
// Napkin math: N*heads*rot_dims floats read and written once; one sin/cos pair per (token, d).
#pragma once

#include <math.h>

#include "gemma_native/math.h"
#include "ops/cuda/simt.h"

namespace GN_KERNELS_NS {

// (128, 8): at most 64 registers; with (128) alone ptxas aims for 32 and spills the double
// frequency math.
__global__ void __launch_bounds__(128, 8)
    rope_kernel(float* x, const int32_t* pos, int64_t heads, int64_t head_dim, int64_t rot_dims,
                float base, float linear_factor) {
  const int64_t n = blockIdx.x;
  const int64_t half = rot_dims / 2;
  const float p = static_cast<float>(pos[n]);
  for (int64_t d = threadIdx.x; d < half; d += blockDim.x) {
    const float theta = p * ::gemma_native::rope_inv_freq(base, d, rot_dims, linear_factor);
    const double turns = static_cast<double>(theta) * 0.31830988618379067154;  // theta / pi
    const double reduced = turns - 2.0 * rint(turns * 0.5);                     // in [-1, 1]
    float s, c;
    sincospif(static_cast<float>(reduced), &s, &c);
    for (int64_t h = 0; h < heads; ++h) {
      float* xh = x + (n * heads + h) * head_dim;
      const float x1 = xh[d], x2 = xh[d + half];
      xh[d] = x1 * c - x2 * s;
      xh[d + half] = x2 * c + x1 * s;
    }
  }
}

}  // namespace GN_KERNELS_NS
