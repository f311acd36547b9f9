// Causal depthwise Conv1D over time (ops.h Conv1dArgs; docs/model-math.md, 'Conv1D'), prefill
// and decode.
// conv1d_kernel: one thread per (sequence, time step, channel): blockIdx.x walks (time step,
// channel block) with channels across the threads (coalesced), blockIdx.y the sequence.  Each
// output sums bias, then s = 0..K-1 in order (the CPU op's order), stopping at a document start
// in (t-s, t] or before the carried state.  conv1d_state_kernel then shifts the carried state
// (the last K-1 raw inputs) per (sequence, channel), after every output has read the old one.
// Napkin math: K (= 4) loads per output, mostly from cache; x once from memory, y once: a
// bandwidth-bound elementwise pass.
#pragma once

#include "ops/cuda/simt.h"

namespace GN_KERNELS_NS {

__global__ void __launch_bounds__(128)
    conv1d_kernel(const float* x, const int32_t* pos, const float* w, const float* bias,
                  const float* state, int64_t T, int64_t L, int64_t K, int64_t cblocks,
                  float* y) {
  const int64_t t = blockIdx.x / cblocks;
  const int64_t c = (blockIdx.x % cblocks) * blockDim.x + threadIdx.x;
  const int64_t b = blockIdx.y;
  if (c >= L) return;
  const int64_t H = K - 1;
  const int32_t* p = pos + b * T;
  const float* xb = x + b * T * L;
  float acc = bias != nullptr ? bias[c] : 0.0f;
  for (int64_t s = 0; s < K; ++s) {
    // A document start at a step of this call in (t-s, t] masks this and older inputs.
    if (s > 0 && t - s + 1 >= 0 && p[t - s + 1] == 0) break;
    const int64_t src = t - s;
    float u;
    if (src >= 0) {
      u = xb[src * L + c];
    } else if (state != nullptr && src >= -H) {
      u = state[(b * H + H + src) * L + c];
    } else {
      break;
    }
    acc += w[(K - 1 - s) * L + c] * u;
  }
  y[(b * T + t) * L + c] = acc;
}

__global__ void __launch_bounds__(128)
    conv1d_state_kernel(const float* x, int64_t T, int64_t L, int64_t H, float* state) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t b = blockIdx.y;
  if (c >= L) return;
  float* st = state + b * H * L + c;
  const float* xb = x + b * T * L + c;
  // New state = the last H raw inputs of (old state ++ x), oldest first.  Slot i moves up by
  // T, so reading upwards before writing each slot is safe within this thread.
  for (int64_t i = 0; i < H; ++i) {
    const int64_t src = i + T;  // index into (old state ++ x)
    st[i * L] = src < H ? st[src * L] : xb[(src - H) * L];
  }
}

}  // namespace GN_KERNELS_NS
