// Elementwise kernels: GeGLU (tanh GeLU of the gate times up), the soft-cap of logits and the
// residual add.
// Grid-stride loops, one element per thread per step, consecutive threads on consecutive
// elements (coalesced).  Napkin math: GeGLU reads 8 and writes 4 bytes per element (2B decode:
// 15360 elements, nothing); soft-cap reads and writes the logits once (256000 floats = 1 MB);
// add reads 8 and writes 4 bytes per element (Gemma 3 270M: 640 per token).
#pragma once

#include "ops/cuda/simt.h"
#include "gemma_native/math.h"

namespace GN_KERNELS_NS {

__global__ void __launch_bounds__(256)
    geglu_kernel(const float* gate, const float* up, int64_t n, float* out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    out[i] = ::gemma_native::gelu_tanh(gate[i]) * up[i];  // out may alias gate or up
  }
}

__global__ void __launch_bounds__(256) softcap_kernel(float* x, int64_t n, float cap) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    x[i] = ::gemma_native::soft_cap(x[i], cap);
  }
}

__global__ void __launch_bounds__(256) add_kernel(float* x, const float* y, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    x[i] += y[i];  // y may alias x: each element is read and written by one thread
  }
}

}  // namespace GN_KERNELS_NS
