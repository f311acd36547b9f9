// geglu: out = gelu_tanh(gate) * up, elementwise (Gemma MLPs; Griffin's y-branch gating), or
// with ggml's float16-table GELU (GegluArgs::f16_table, GGUF models in llama.cpp's arithmetic).
// Napkin math: one tanh per element; bandwidth bound, tiny next to the linears.
#include "gemma_native/math.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/simd.h"

namespace gemma_native::ops::cpu::GN_ISA {

namespace {

// ggml's table: entry h = gelu of the float16 value with bits h, rounded to float16 (here as
// float).  Built once, on first use (our gelu_tanh: the same value on every machine).
const float* gelu_f16_table() {
  static const float* table = [] {
    float* t = new float[65536];
    for (uint32_t h = 0; h < 65536; ++h) {
      t[h] = round_f16(gelu_tanh(f16_to_f32(static_cast<uint16_t>(h))));
    }
    return t;
  }();
  return table;
}

}  // namespace

void geglu(const GegluArgs& a) {
  if (a.f16_table) {
    const float* table = gelu_f16_table();
    par_for(a.n, 4096, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const float g = a.gate[i];
        const float act = g <= -10.0f ? 0.0f : (g >= 10.0f ? g : table[f32_to_f16(g)]);
        a.out[i] = act * a.up[i];
      }
    });
    return;
  }
  par_for(a.n, 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) a.out[i] = gelu_tanh(a.gate[i]) * a.up[i];
  });
}

}  // namespace gemma_native::ops::cpu::GN_ISA
