// RG-LRU scan (ops.h RgLruArgs; docs/model-math.md, 'RG-LRU'), prefill chunks and the decode
// step (T = 1).
// Decomposition: one thread per (sequence, channel) -- channels across the threads of a block
// (coalesced loads of each time step's row), sequences across blockIdx.y -- and time
// sequential in the thread with the state h carried in an fp32 register.  The loads of step
// t+1 are issued before the math of step t (they do not depend on h), so the only serial chain
// is one FMA per step.
// Long prefill chunks (T > kScanChunk) are also split over time, so that B*L*T/kScanChunk
// threads work instead of B*L (20 blocks for B=1 at 2560 channels would leave most of a large
// GPU idle): rglru_chunk_summary_kernel reduces each time chunk of each channel to the affine
// map h -> A h + H it applies (A = product of the decays, H = the chunk's output from h = 0),
// rglru_chunk_carry_kernel walks the chunks of a channel in order from the incoming h (fp32
// carry) and stores each chunk's starting h and the final h, and rglru_scan_kernel then runs
// every chunk from its starting h, writing y with the same arithmetic as the sequential scan.
// Napkin math: per element 3 loads + 1 store (16 B) and ~5 transcendentals (the chunked path
// reads the inputs and evaluates the gates twice); decode at the 2B shape is 2560 channels =
// 40 KB, nothing next to the linears.
#pragma once

#include "ops/cuda/simt.h"
#include "gemma_native/math.h"

namespace GN_KERNELS_NS {

constexpr int64_t kScanChunk = 64;  // time steps per chunk of the chunked prefill path

// One step of the recurrence as (decay, input): h <- decay * h + input (decay 0 at a reset).
__device__ __forceinline__ void rglru_step(float xv, float gxv, float gav, float sp, bool reset,
                                          float* decay, float* input) {
  const float gx = ::gemma_native::sigmoid(gxv);
  const float ga = ::gemma_native::sigmoid(gav);
  const float log_a = -8.0f * ga * sp;
  const float xn = xv * gx;
  if (reset) {
    *decay = 0.0f;
    *input = xn;
  } else {
    *decay = expf(log_a);
    *input = xn * sqrtf(1.0f - expf(2.0f * log_a));
  }
}

// Runs time steps [t0, t1) of sequence blockIdx.z, channel c, from h_start (or, when h_start is
// null, from h[b, c], which it then updates).  blockIdx.y picks the chunk when chunked.
__global__ void __launch_bounds__(128)
    rglru_scan_kernel(const float* x, const float* gate_x, const float* gate_a,
                      const float* a_param, const int32_t* pos, float* h, int64_t T, int64_t L,
                      int64_t chunk, const float* h_start, float* y) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t b = blockIdx.z, k = blockIdx.y;
  if (c >= L) return;  // no barriers in this kernel
  const int64_t t0 = k * chunk, t1 = t0 + chunk < T ? t0 + chunk : T;
  const int64_t chunks = (T + chunk - 1) / chunk;
  const float sp = ::gemma_native::softplus(a_param[c]);
  float hc = h_start != nullptr ? h_start[(b * chunks + k) * L + c] : h[b * L + c];
  int64_t at = (b * T + t0) * L + c;
  float nx = x[at], ngx = gate_x[at], nga = gate_a[at];
  int32_t np = pos[b * T + t0];
  for (int64_t t = t0; t < t1; ++t) {
    const float xv = nx, gxv = ngx, gav = nga;
    const bool reset = np == 0;
    if (t + 1 < t1) {  // the next step's loads go out before this step's math
      nx = x[at + L];
      ngx = gate_x[at + L];
      nga = gate_a[at + L];
      np = pos[b * T + t + 1];
    }
    float decay, input;
    rglru_step(xv, gxv, gav, sp, reset, &decay, &input);
    hc = reset ? input : decay * hc + input;
    y[at] = hc;  // y may alias x: x[at] was read above, x[at + L] is not written here
    at += L;
  }
  if (h_start == nullptr) h[b * L + c] = hc;
}

// Chunked path, pass 1: the affine map (A, H) of each chunk: summary[((b*chunks + k)*2)*L + c]
// = A, [... + 1)*L + c] = H.
__global__ void __launch_bounds__(128)
    rglru_chunk_summary_kernel(const float* x, const float* gate_x, const float* gate_a,
                               const float* a_param, const int32_t* pos, int64_t T, int64_t L,
                               int64_t chunk, float* summary) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t b = blockIdx.z, k = blockIdx.y;
  if (c >= L) return;
  const int64_t t0 = k * chunk, t1 = t0 + chunk < T ? t0 + chunk : T;
  const int64_t chunks = (T + chunk - 1) / chunk;
  const float sp = ::gemma_native::softplus(a_param[c]);
  float A = 1.0f, H = 0.0f;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t at = (b * T + t) * L + c;
    float decay, input;
    rglru_step(x[at], gate_x[at], gate_a[at], sp, pos[b * T + t] == 0, &decay, &input);
    A *= decay;
    H = decay * H + input;
  }
  summary[((b * chunks + k) * 2) * L + c] = A;
  summary[((b * chunks + k) * 2 + 1) * L + c] = H;
}

// Chunked path, pass 2: each chunk's starting h in order from h[b, c]; h[b, c] <- the final h.
__global__ void __launch_bounds__(128)
    rglru_chunk_carry_kernel(const float* summary, int64_t T, int64_t L, int64_t chunk,
                             float* h, float* h_start) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t b = blockIdx.z;
  if (c >= L) return;
  const int64_t chunks = (T + chunk - 1) / chunk;
  float carry = h[b * L + c];
  for (int64_t k = 0; k < chunks; ++k) {
    h_start[(b * chunks + k) * L + c] = carry;
    carry = summary[((b * chunks + k) * 2) * L + c] * carry +
            summary[((b * chunks + k) * 2 + 1) * L + c];
  }
  h[b * L + c] = carry;
}

}  // namespace GN_KERNELS_NS
