// geglu: out = gelu_tanh(gate) * up, elementwise (Gemma MLPs; Griffin's y-branch gating).
// Napkin math: one tanh per element; bandwidth bound, tiny next to the linears.
#include "gemma_native/math.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/simd.h"

namespace gemma_native::ops::cpu::GN_ISA {

void geglu(const GegluArgs& a) {
  par_for(a.n, 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) a.out[i] = gelu_tanh(a.gate[i]) * a.up[i];
  });
}

}  // namespace gemma_native::ops::cpu::GN_ISA
