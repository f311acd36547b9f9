// Small elementwise helpers: softcap (x = cap * tanh(x / cap), the logit soft-cap) and add
// (x += y, residual connections).  Bandwidth bound.
#include "gemma_native/math.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/simd.h"

namespace gemma_native::ops::cpu::GN_ISA {

void softcap(const SoftcapArgs& a) {
  float* x = a.x;
  const float cap = a.cap;
  par_for(a.n, 8192, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) x[i] = soft_cap(x[i], cap);
  });
}

void add(const AddArgs& a) {
  float* x = a.x;
  const float* y = a.y;
  par_for(a.n, 1 << 15, [&](int64_t b, int64_t e) {
    int64_t i = b;
    for (; i + kLanes <= e; i += kLanes) store(x + i, GN_ISA::add(load(x + i), load(y + i)));
    for (; i < e; ++i) x[i] += y[i];
  });
}

}  // namespace gemma_native::ops::cpu::GN_ISA
