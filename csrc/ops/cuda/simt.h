// The one header every CUDA kernel file includes first.  Kernels are written in plain CUDA
// (threadIdx, blockIdx, __syncthreads, __shfl_*_sync, atomics) with two exceptions that let the
// same text compile under g++ on the SIMT emulator (docs/cuda.md, 'How it is verified without a
// GPU'):
//   GN_SHARED(T, name, N)   a static shared array, used only as name[i]
//   GN_DYN_SHARED(T, name)  the dynamic shared buffer given at launch, used only as name[i]
//   GN_LAUNCH(kernel, grid, block, smem_bytes, stream)(args...)   a launch
//   namespace GN_KERNELS_NS { ... }   the namespace every kernel file uses
// Under nvcc these are the CUDA constructs themselves.  Under g++ they go to emu/simt_emu.h,
// where the CUDA threads of a block are fibers (or std::threads in the sanitizer builds, whose
// barriers ThreadSanitizer sees), and shared memory is poisoned with NaN bytes and
// bounds-checked.
#pragma once

#include <stddef.h>
#include <stdint.h>

#if defined(__CUDACC__)

#include <cuda_runtime.h>

#define GN_SHARED(T, name, N) __shared__ T name[N]
#define GN_DYN_SHARED(T, name)                                   \
  extern __shared__ __align__(16) unsigned char gn_dyn_smem_[]; \
  T* name = reinterpret_cast<T*>(gn_dyn_smem_)
#define GN_LAUNCH(kernel, grid, block, smem, stream) kernel<<<(grid), (block), (smem), (stream)>>>
#define GN_EMULATED 0
// Kernels live in a namespace of their own per build, so the nvcc and the g++ copies that are
// linked into one module never meet (same names, different code).
#define GN_KERNELS_NS gemma_native::kernels_cuda

namespace gemma_native::simt {
using Stream = cudaStream_t;
}

#else  // g++: the emulator

#include "ops/cuda/emu/simt_emu.h"

#define GN_SHARED(T, name, N) \
  ::gn_emu::SharedArray<T, (N)>& name = ::gn_emu::shared_array<T, (N)>(#name)
#define GN_DYN_SHARED(T, name) ::gn_emu::SharedSpan<T> name = ::gn_emu::dynamic_shared<T>()
#define GN_LAUNCH(kernel, grid, block, smem, stream) \
  (void)(stream), ::gn_emu::launcher((kernel), #kernel, (grid), (block), (smem))
#define GN_EMULATED 1
#define GN_KERNELS_NS gemma_native::kernels_emu

namespace gemma_native::simt {
using Stream = void*;
}

#endif

namespace gemma_native::simt {
constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

// Ceil division for grid sizes.
inline unsigned blocks_for(int64_t n, int64_t per_block) {
  return static_cast<unsigned>((n + per_block - 1) / per_block);
}
}  // namespace gemma_native::simt
