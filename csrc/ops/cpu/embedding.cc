// embedding: out[n, :] = table[ids[n], :] * scale  (table [V, D] bf16/f16/f32, BF16R32 or
// quantized, out fp32).
// Napkin math: reads N*D weight elements, writes N*D floats; pure bandwidth, trivial.
// Ids are range-checked by the ops:: front (ops.cc) before this runs.
#include "gemma_native/quant.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/simd.h"

namespace gemma_native::ops::cpu::GN_ISA {

void embedding(const EmbeddingArgs& a) {
  const int64_t d = a.table.cols;
  if (is_quantized(a.table.dtype)) {  // GGUF / int8 tables: dequantize the looked-up rows
    const int64_t rb = row_bytes(a.table.dtype, d);
    par_for(a.n, 1, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        float* o = a.out + r * d;
        if (a.table.dtype == DType::kQ8_0R16) {
          dequantize_q8_0r16_row(a.table.data, d, a.ids[r], o);
        } else {
          dequantize_row(static_cast<const uint8_t*>(a.table.data) + a.ids[r] * rb,
                         a.table.dtype, d, o);
        }
        for (int64_t i = 0; i < d; ++i) o[i] *= a.scale;
      }
    });
    return;
  }
  if (a.table.dtype == DType::kBF16R32) {  // a packed table (also the tied output layer)
    par_for(a.n, 1, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        float* o = a.out + r * d;
        bf16r32_row(a.table.data, d, a.ids[r], o);
        for (int64_t i = 0; i < d; ++i) o[i] *= a.scale;
      }
    });
    return;
  }
  with_dtype(a.table.dtype, [&](auto dt) {
    constexpr DType DT = decltype(dt)::value;
    par_for(a.n, 1, [&](int64_t b, int64_t e) {
      const Vec s = splat(a.scale);
      for (int64_t r = b; r < e; ++r) {
        const int64_t base = static_cast<int64_t>(a.ids[r]) * d;
        float* o = a.out + r * d;
        int64_t i = 0;
        for (; i + kLanes <= d; i += kLanes) store(o + i, mul(load_w<DT>(a.table.data, base + i), s));
        for (; i < d; ++i) o[i] = load_w1<DT>(a.table.data, base + i) * a.scale;
      }
    });
  });
}

}  // namespace gemma_native::ops::cpu::GN_ISA
