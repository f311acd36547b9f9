// linear: y[n, m] = sum_k x[n, k] * W[m, k] + bias[m] (+ y if accumulate), W [M, K] in
// f32 / bf16 / f16, or Q8_0 blocks widened per element (float activations), x and y fp32
// (ops.h LinearArgs).
//
// linear_gemv_kernel<NR> (decode, N = NR <= 8 rows of x): one warp per weight row m, eight
// rows per block.  The lanes walk the row with 16-byte loads (8 bf16/f16 values) when the row
// and x are 16-byte aligned, so every weight byte is read once for all NR rows of x (which
// stay in L1/L2), and the NR partial sums are reduced with warp shuffles.
// Napkin math: M*K*2 bytes per call for bf16 -- the 2B logits (256000 x 2560) are 1.3 GB, i.e.
// ~0.7 ms at 2 TB/s; the FMAs (2*M*K*NR) are far below the GPU's rate, so this is a bandwidth
// kernel and wants ~all SMs busy: M/8 blocks.
//
// linear_gemm_kernel (prefill, N > 8): a shared-memory tiled SIMT GEMM, 64 x 64 outputs per
// block of 256 threads (4 x 4 each), K in steps of 16, weights widened to fp32 as they are
// staged.  2*N*M*K FLOPs; a tensor-core or cuBLAS path would be several times faster and is
// not written yet.
#pragma once

#include "ops/cuda/kernels/reduce.cuh"
#include "gemma_native/dtype.h"

namespace GN_KERNELS_NS {

constexpr int kGemvRowsPerBlock = 8;  // warps of a 256-thread block
constexpr int kGemvMaxRows = 8;       // rows of x handled by the GEMV kernel

// The 8 values of a 16-byte chunk of a bf16 / f16 row.
__device__ __forceinline__ void unpack8(const uint4& v, ::gemma_native::DType dt, float* f) {
  const unsigned u[4] = {v.x, v.y, v.z, v.w};
  for (int i = 0; i < 4; ++i) {
    const uint16_t lo = static_cast<uint16_t>(u[i] & 0xffffu);
    const uint16_t hi = static_cast<uint16_t>(u[i] >> 16);
    if (dt == ::gemma_native::DType::kBF16) {
      f[2 * i] = ::gemma_native::bf16_to_f32(lo);
      f[2 * i + 1] = ::gemma_native::bf16_to_f32(hi);
    } else {
      f[2 * i] = ::gemma_native::f16_to_f32(lo);
      f[2 * i + 1] = ::gemma_native::f16_to_f32(hi);
    }
  }
}

template <int NR>
__global__ void __launch_bounds__(256)
    linear_gemv_kernel(const float* x, int64_t K, const void* w, ::gemma_native::DType dt,
                       int64_t M, const float* bias, bool accumulate, bool vec16, float* y) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t m = static_cast<int64_t>(blockIdx.x) * kGemvRowsPerBlock + warp;
  if (m >= M) return;  // the whole warp leaves together; no block barriers here
  float acc[NR];
  for (int r = 0; r < NR; ++r) acc[r] = 0.0f;
  int64_t k_done = 0;
  if (vec16) {  // bf16 / f16, K % 8 == 0, 16-byte aligned rows and x
    const uint4* wr = reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(w) + m * K);
    const int64_t chunks = K / 8;
    for (int64_t c = lane; c < chunks; c += 32) {
      float wf[8];
      unpack8(wr[c], dt, wf);
      for (int r = 0; r < NR; ++r) {
        const float4* xr = reinterpret_cast<const float4*>(x + r * K + c * 8);
        const float4 a = xr[0], b = xr[1];
        acc[r] += wf[0] * a.x + wf[1] * a.y + wf[2] * a.z + wf[3] * a.w + wf[4] * b.x +
                  wf[5] * b.y + wf[6] * b.z + wf[7] * b.w;
      }
    }
    k_done = chunks * 8;
  }
  for (int64_t k = k_done + lane; k < K; k += 32) {
    const float wv = ::gemma_native::load_as_f32(w, dt, m * K + k);
    for (int r = 0; r < NR; ++r) acc[r] += wv * x[r * K + k];
  }
  for (int r = 0; r < NR; ++r) acc[r] = warp_sum(acc[r]);
  if (lane == 0) {
    const float b = bias != nullptr ? bias[m] : 0.0f;
    for (int r = 0; r < NR; ++r) {
      float* yo = y + r * M + m;
      *yo = accumulate ? *yo + (acc[r] + b) : acc[r] + b;
    }
  }
}

constexpr int kGemmTile = 64;  // outputs per block edge
constexpr int kGemmK = 16;     // K step staged in shared memory

__global__ void __launch_bounds__(256)
    linear_gemm_kernel(const float* x, int64_t N, int64_t K, const void* w,
                       ::gemma_native::DType dt, int64_t M, const float* bias, bool accumulate,
                       float* y) {
  GN_SHARED(float, xs, kGemmK * (kGemmTile + 1));  // [k][n], padded against bank conflicts
  GN_SHARED(float, ws, kGemmK * (kGemmTile + 1));  // [k][m]
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * kGemmTile;
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * kGemmTile;
  float acc[4][4];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
  for (int64_t k0 = 0; k0 < K; k0 += kGemmK) {
    for (int e = threadIdx.x; e < kGemmTile * kGemmK; e += blockDim.x) {
      const int r = e / kGemmK, kk = e % kGemmK;  // consecutive threads: consecutive k
      const int64_t k = k0 + kk;
      const int64_t n = n0 + r, m = m0 + r;
      xs[kk * (kGemmTile + 1) + r] = (n < N && k < K) ? x[n * K + k] : 0.0f;
      ws[kk * (kGemmTile + 1) + r] =
          (m < M && k < K) ? ::gemma_native::load_as_f32(w, dt, m * K + k) : 0.0f;
    }
    __syncthreads();
    for (int kk = 0; kk < kGemmK; ++kk) {
      float a[4], b[4];
      for (int i = 0; i < 4; ++i) a[i] = xs[kk * (kGemmTile + 1) + ty * 4 + i];
      for (int j = 0; j < 4; ++j) b[j] = ws[kk * (kGemmTile + 1) + tx * 4 + j];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
  for (int i = 0; i < 4; ++i) {
    const int64_t n = n0 + ty * 4 + i;
    if (n >= N) continue;
    for (int j = 0; j < 4; ++j) {
      const int64_t m = m0 + tx * 4 + j;
      if (m >= M) continue;
      const float v = acc[i][j] + (bias != nullptr ? bias[m] : 0.0f);
      float* yo = y + n * M + m;
      *yo = accumulate ? *yo + v : v;
    }
  }
}

}  // namespace GN_KERNELS_NS
