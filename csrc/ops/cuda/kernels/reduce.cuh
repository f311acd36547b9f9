// Warp and block reductions shared by the kernels.  Blocks are whole warps (a multiple of 32
// threads): the launchers guarantee it, and the emulator faults on a partial-warp shuffle.
#pragma once

#include "ops/cuda/simt.h"

namespace GN_KERNELS_NS {

// Butterfly sum over the 32 lanes; every lane gets the same total (same order in every lane).
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(simt::kFullMask, v, o);
  return v;
}

// Sum over the block, returned to every thread.  `red` is shared scratch of >= 32 floats; it is
// free again when this returns.  Each warp sums the per-warp partials itself, so no broadcast
// step is needed and every thread holds the identical value.
template <class Shared>
__device__ __forceinline__ float block_sum(float v, Shared& red) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int warps = (blockDim.x + 31) / 32;
  v = warp_sum(v);
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float t = lane < warps ? red[lane] : 0.0f;
  t = warp_sum(t);
  __syncthreads();
  return t;
}

}  // namespace GN_KERNELS_NS
