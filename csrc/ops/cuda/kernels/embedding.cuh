// Embedding lookup: out[n, :] = table[ids[n], :] * scale for f32 / bf16 / f16 / Q8_0 tables.
// One block per token; the threads walk the row (coalesced).  An id outside the table (which
// the host-side checks already reject) writes zeros instead of reading past the table.
// Napkin math: N*D weight elements read once; trivial next to the linears.
#pragma once

#include "ops/cuda/simt.h"
#include "gemma_native/dtype.h"

namespace GN_KERNELS_NS {

__global__ void __launch_bounds__(256)
    embedding_kernel(const void* table, ::gemma_native::DType dt, int64_t rows, int64_t d,
                     const int32_t* ids, float scale, float* out) {
  const int64_t n = blockIdx.x;
  const int64_t id = ids[n];
  float* o = out + n * d;
  const bool ok = id >= 0 && id < rows;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    o[i] = ok ? ::gemma_native::load_as_f32(table, dt, id * d + i) * scale : 0.0f;
  }
}

}  // namespace GN_KERNELS_NS
