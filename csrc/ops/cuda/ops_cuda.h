// The CUDA ops, in two builds of the same source (launch/*.inl + kernels/*.cuh):
//   gemma_native::ops::cuda   nvcc-compiled kernels on a GPU; every pointer in the args is
//                             device memory (only in builds with GEMMA_NATIVE_CUDA)
//   gemma_native::ops::emu    the same kernels compiled by g++ and run on the SIMT emulator
//                             (cuda/emu/simt_emu.h) over host memory: slow, for verification
// Both take the CPU ops' argument structs (ops/ops.h), run the same argument checks
// (ops/checks.h) and compute what the CPU op computes, up to fp32 rounding order.  A kernel
// fault found by the emulator raises gemma_native::Error(kDevice).
// The ops are those of ops/op_list.h with CUDA kernels; ops_supported() returns their names.
#pragma once

#include <string>
#include <vector>

#include "ops/op_list.h"
#include "ops/ops.h"

namespace gemma_native::ops {

// The names of the ops with CUDA kernels (what both fronts support when they are built).
inline std::vector<std::string> kernel_op_names() {
#define GN_OP_NAME(name, Args) #name,
  return {GN_CUDA_OPS(GN_OP_NAME)};
#undef GN_OP_NAME
}

#define GN_CUDA_DECLARE_OP(name, Args) void name(const Args& a);

namespace emu {
GN_CUDA_OPS(GN_CUDA_DECLARE_OP)
std::vector<std::string> ops_supported();
}  // namespace emu

namespace cuda {
GN_CUDA_OPS(GN_CUDA_DECLARE_OP)
std::vector<std::string> ops_supported();
// The stream (a cudaStream_t) the calling thread's launches go on; null = the default stream.
void set_stream(void* stream);
}  // namespace cuda

#undef GN_CUDA_DECLARE_OP

}  // namespace gemma_native::ops
