// The ops that have CUDA kernels: X(name, args struct of ops/ops.h or ops_cuda.h).  One line
// per op; ops_cuda.h, the emulator front (emu/ops_emu.cc), the nvcc front (ops_cuda.cu) and
// the bindings are generated from this list, and each op's launcher lives in
// launch/<group>.inl.
#pragma once

#define GN_CUDA_OPS(X)                        \
  X(embedding, EmbeddingArgs)                 \
  X(rmsnorm, RmsNormArgs)                     \
  X(linear, LinearArgs)                       \
  X(rope, RopeArgs)                           \
  X(geglu, GegluArgs)                         \
  X(softcap, SoftcapArgs)                     \
  X(conv1d, Conv1dArgs)                       \
  X(block_diag_linear, BlockDiagLinearArgs)   \
  X(rglru_scan, RgLruArgs)                    \
  X(attention, AttentionArgs)
