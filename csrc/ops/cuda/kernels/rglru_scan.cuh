// RG-LRU scan (ops.h RgLruArgs; MODELS.md 1.7), prefill chunks and the decode step (T = 1).
// Decomposition: one thread per (sequence, channel) -- channels across the threads of a block
// (coalesced loads of each time step's row), sequences across blockIdx.y -- and time
// sequential in the thread with the state h carried in an fp32 register.  The loads of step
// t+1 are issued before the math of step t (they do not depend on h), so the only serial chain
// is one FMA per step.
// Napkin math: per element 3 loads + 1 store (16 B) and ~5 transcendentals; decode at the 2B
// shape is 2560 channels = 40 KB, nothing next to the linears.  Prefill occupancy is B*L/128
// blocks (20 for B=1 at 2560 channels), which under-fills a large GPU; a parallel-in-time
// scan (chunk products + carries) would fix that and is not written yet.
#pragma once

#include "ops/cuda/simt.h"
#include "gemma_native/math.h"

namespace GN_KERNELS_NS {

__global__ void __launch_bounds__(128)
    rglru_scan_kernel(const float* x, const float* gate_x, const float* gate_a,
                      const float* a_param, const int32_t* pos, float* h, int64_t T, int64_t L,
                      float* y) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t b = blockIdx.y;
  if (c >= L) return;  // no barriers in this kernel
  const float sp = ::gemma_native::softplus(a_param[c]);
  float hc = h[b * L + c];
  int64_t at = b * T * L + c;
  float nx = x[at], ngx = gate_x[at], nga = gate_a[at];
  int32_t np = pos[b * T];
  for (int64_t t = 0; t < T; ++t) {
    const float xv = nx, gxv = ngx, gav = nga;
    const bool reset = np == 0;
    if (t + 1 < T) {
      nx = x[at + L];
      ngx = gate_x[at + L];
      nga = gate_a[at + L];
      np = pos[b * T + t + 1];
    }
    const float gx = ::gemma_native::sigmoid(gxv);
    const float ga = ::gemma_native::sigmoid(gav);
    const float log_a = -8.0f * ga * sp;
    const float xn = xv * gx;
    if (reset) {
      hc = xn;
    } else {
      const float decay = expf(log_a);
      const float mult = sqrtf(1.0f - expf(2.0f * log_a));
      hc = decay * hc + xn * mult;
    }
    y[at] = hc;  // y may alias x: x[at] was read above, x[at + L] is not written here
    at += L;
  }
  h[b * L + c] = hc;
}

}  // namespace GN_KERNELS_NS
