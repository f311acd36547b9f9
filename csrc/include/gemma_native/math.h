// Per-element math shared by the CPU kernels, the CUDA kernels and (via the same formulas) the
// numpy twins in python/gemma_native/reference.py.  Everything is fp32.
#pragma once

#include <math.h>

#include "gemma_native/common.h"

namespace gemma_native {

// GeLU, tanh approximation (all Gemma-family MLPs and the Griffin y-branch).
GN_HD float gelu_tanh(float x) {
  const float k0 = 0.7978845608028654f;  // sqrt(2 / pi)
  const float k1 = 0.044715f;
  return 0.5f * x * (1.0f + tanhf(k0 * (x + k1 * x * x * x)));
}

GN_HD float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// log(1 + e^x) without overflow for large x.
GN_HD float softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

GN_HD float soft_cap(float x, float cap) { return cap * tanhf(x / cap); }

}  // namespace gemma_native
