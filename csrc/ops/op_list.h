// The list of ops, the one place an op is declared to the layers that route calls to it:
//   GN_OPS(CUDA, CPU_ONLY)   CUDA(name, Args) for every op that has a CUDA kernel,
//                            CPU_ONLY(name, Args) for an op with only CPU kernels so far.
// Each op `name` takes `const Args&` (an args struct of ops/ops.h) everywhere.  Generated from
// this list: the Backend's virtual functions and the CPU backend's forwarders (backend.h,
// backend.cc), the CUDA-kernel backends' forwarders (cuda/kernel_backend.h), the CPU kernel
// table and its per-ISA declarations (cpu/kernels.h, cpu/table.cc), the declarations and
// fronts of the CUDA ops (cuda/ops_cuda.h, ops_cuda.cu, emu/ops_emu.cc) and the registration
// of the Python bindings on each device (bindings/bind_ops.cc).  docs/adding-an-op.md walks
// through adding one.
#pragma once

#define GN_OPS(CUDA, CPU_ONLY)                  \
  CUDA(embedding, EmbeddingArgs)                \
  CUDA(rmsnorm, RmsNormArgs)                    \
  CUDA(linear, LinearArgs)                      \
  CUDA(block_diag_linear, BlockDiagLinearArgs)  \
  CUDA(conv1d, Conv1dArgs)                      \
  CUDA(rglru_scan, RgLruArgs)                   \
  CUDA(rope, RopeArgs)                          \
  CUDA(attention, AttentionArgs)                \
  CUDA(geglu, GegluArgs)                        \
  CUDA(softcap, SoftcapArgs)                    \
  CUDA(add, AddArgs)

// Expands to nothing: GN_OPS(X, GN_OP_SKIP) visits only the ops with CUDA kernels.
#define GN_OP_SKIP(name, Args)
// Every op: GN_ALL_OPS(X).
#define GN_ALL_OPS(X) GN_OPS(X, X)
// The ops with CUDA kernels: GN_CUDA_OPS(X).
#define GN_CUDA_OPS(X) GN_OPS(X, GN_OP_SKIP)
