// Every CUDA kernel file, for the two fronts (ops_cuda.cu and emu/ops_emu.cc).  Include
// cuda/simt.h before this.
#pragma once

#include "cuda/kernels/reduce.cuh"
#include "cuda/kernels/attention.cuh"
#include "cuda/kernels/block_diag_linear.cuh"
#include "cuda/kernels/conv1d.cuh"
#include "cuda/kernels/elementwise.cuh"
#include "cuda/kernels/embedding.cuh"
#include "cuda/kernels/linear.cuh"
#include "cuda/kernels/rglru_scan.cuh"
#include "cuda/kernels/rmsnorm.cuh"
#include "cuda/kernels/rope.cuh"
