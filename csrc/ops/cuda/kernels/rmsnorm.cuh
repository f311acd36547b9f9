// RMSNorm: one block per row.  out = x * rsqrt(mean(x^2) + eps) * (offset + w), fp32, the
// CPU op's formula (ops.h); x and out may alias (each element is read before it is written by
// the same thread, and the sum is complete before any write).
#pragma once

#include "ops/cuda/kernels/reduce.cuh"

namespace GN_KERNELS_NS {

__global__ void __launch_bounds__(256) rmsnorm_kernel(const float* x, const float* w, int64_t d,
                                                      float eps, float offset, float* out) {
  GN_SHARED(float, red, 32);
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * d;
  float* o = out + static_cast<int64_t>(blockIdx.x) * d;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
  ss = block_sum(ss, red);
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(d) + eps);
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) o[i] = xr[i] * inv * (offset + w[i]);
}

}  // namespace GN_KERNELS_NS
