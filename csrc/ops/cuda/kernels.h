// Every CUDA kernel file, for the two fronts (ops_cuda.cu and emu/ops_emu.cc).  Include
// cuda/simt.h before this.
#pragma once

#include "ops/cuda/kernels/reduce.cuh"
#include "ops/cuda/kernels/attention.cuh"
#include "ops/cuda/kernels/block_diag_linear.cuh"
#include "ops/cuda/kernels/conv1d.cuh"
#include "ops/cuda/kernels/elementwise.cuh"
#include "ops/cuda/kernels/embedding.cuh"
#include "ops/cuda/kernels/linear.cuh"
#include "ops/cuda/kernels/rglru_scan.cuh"
#include "ops/cuda/kernels/rmsnorm.cuh"
#include "ops/cuda/kernels/rope.cuh"
