// Block-diagonal linear, input-major blocks (ops.h BlockDiagLinearArgs; the RG-LRU gates):
//   y[n, h*bs + j] = b[h, j] + sum_i x[n, h*bs + i] * w[h, i, j]
// Decomposition: blockIdx.x = gate block h, blockIdx.y = a group of kRows rows of x; the
// threads of a block take output columns j (the weight row w[h, i, :] is contiguous in j, so
// every load of a step i is coalesced), the x rows of the group sit in shared memory (read by
// all threads), and each output sums bias then i = 0, 1, ... in order as the CPU op does.
// Napkin math: H*bs*bs weights (2B: 655k; 1.3 MB bf16) read once per group of kRows rows:
// bandwidth bound at decode, 2*N*H*bs*bs FLOPs at prefill.
#pragma once

#include "ops/cuda/simt.h"
#include "gemma_native/dtype.h"

namespace GN_KERNELS_NS {

constexpr int kBdlRows = 4;     // rows of x per block
constexpr int kBdlMaxBs = 512;  // largest block size staged in shared memory

__global__ void __launch_bounds__(256)
    block_diag_linear_kernel(const float* x, int64_t n, int64_t blocks, int64_t bs,
                             const void* w, ::gemma_native::DType wt, const float* bias,
                             float* y) {
  GN_SHARED(float, xs, kBdlRows * kBdlMaxBs);
  const int64_t h = blockIdx.x;
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * kBdlRows;
  const int64_t rows = n - n0 < kBdlRows ? n - n0 : kBdlRows;
  const int64_t width = blocks * bs;
  for (int64_t e = threadIdx.x; e < rows * bs; e += blockDim.x) {
    const int64_t r = e / bs, i = e % bs;
    xs[r * kBdlMaxBs + i] = x[(n0 + r) * width + h * bs + i];
  }
  __syncthreads();
  for (int64_t j = threadIdx.x; j < bs; j += blockDim.x) {
    float acc[kBdlRows];
    const float b0 = bias != nullptr ? bias[h * bs + j] : 0.0f;
    for (int r = 0; r < kBdlRows; ++r) acc[r] = b0;
    const int64_t wbase = h * bs * bs + j;
    for (int64_t i = 0; i < bs; ++i) {
      const float wv = ::gemma_native::load_as_f32(w, wt, wbase + i * bs);
      for (int r = 0; r < kBdlRows; ++r) {
        if (r < rows) acc[r] += xs[r * kBdlMaxBs + i] * wv;
      }
    }
    for (int r = 0; r < kBdlRows; ++r) {
      if (r < rows) y[(n0 + r) * width + h * bs + j] = acc[r];
    }
  }
}

}  // namespace GN_KERNELS_NS
