// Storage dtypes for weights and their conversions to fp32.
// Activations are always fp32 inside the engine; weights keep their file dtype (bf16, fp16 or
// fp32) and are widened in registers.  Conversions are plain bit manipulation so that they are
// identical on every ISA and under nvcc.
#pragma once

#include <cstdint>
#include <cstring>

#include "gemma_native/common.h"

namespace gemma_native {

// Float storage dtypes, then GGML block-quantized ones (gemma_native/quant.h), in code order:
// X(enumerator, name).  The code of a dtype is its position; Python passes weights as
// (array, code) and reads the codes from _core.DTYPE_CODES, generated from this list.
#define GN_DTYPES(X)     \
  X(kF32, "float32")     \
  X(kBF16, "bfloat16")   \
  X(kF16, "float16")     \
  X(kQ8_0, "Q8_0")       \
  X(kQ4_0, "Q4_0")       \
  X(kQ5_0, "Q5_0")       \
  X(kQ4_K, "Q4_K")       \
  X(kQ6_K, "Q6_K")        \
  X(kQ8_0R16, "Q8_0R16")  \
  X(kBF16R32, "BF16R32")

enum class DType : int {
#define GN_DTYPE_ENUM(e, name) e,
  GN_DTYPES(GN_DTYPE_ENUM)
#undef GN_DTYPE_ENUM
};

// Number of dtypes (codes are 0 .. kNumDTypes - 1).
#define GN_DTYPE_COUNT(e, name) +1
constexpr int kNumDTypes = 0 GN_DTYPES(GN_DTYPE_COUNT);
#undef GN_DTYPE_COUNT

// Bytes per element of a float dtype (quantized ones: see block_bytes in quant.h).
GN_HD int dtype_size(DType t) { return t == DType::kF32 ? 4 : 2; }

// BF16R32, the engine's packed bf16 layout (not a file format): what bfloat16 linear matrices
// become at load on the CPU, so that no GEMM repacks them per call.  The same bf16 values and
// bytes as the row-major matrix W [rows, cols], rows % 32 == 0 and cols % 16 == 0, stored as
// 32-bit words that each hold two values of one row: with k = 16 p + l (l < 8),
//   word ((q * 8 + l) * (cols / 16) + p) * 32 + t  =  W[32 q + t][k] | W[32 q + t][k + 8] << 16.
// So a panel q of 32 rows holds, per lane l, one sequential stream of its rows' values at
// k = l, l + 8, l + 16, ... two steps per word (the exact kernels' lane order, gemm.h), and a word
// is a pair of values of one row (the bf16 dot products' operand, bf16_dot.cc, bf16_gemm.cc).
constexpr int64_t kR32Rows = 32;
constexpr int64_t kR32ColStep = 16;
GN_HD bool is_packed_float(DType t) { return t == DType::kBF16R32; }

static inline const char* dtype_name(DType t) {
  switch (t) {
#define GN_DTYPE_CASE(e, name) \
  case DType::e:               \
    return name;
    GN_DTYPES(GN_DTYPE_CASE)
#undef GN_DTYPE_CASE
  }
  return "?";
}

GN_HD float bits_to_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

GN_HD uint32_t f32_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

GN_HD float bf16_to_f32(uint16_t h) { return bits_to_f32(static_cast<uint32_t>(h) << 16); }

// Row `row` of a BF16R32 matrix with `cols` columns into fp32 (the embedding lookup of a packed
// table): value k = 16 p + 8 h + l of row 32 q + t is half h of word
// ((q * 8 + l) * (cols / 16) + p) * 32 + t (layout above).  One word per 128-byte stride: a row
// touches cols / 2 cache lines, trivial beside a matrix-vector product over the whole table.
GN_HD void bf16r32_row(const void* data, int64_t cols, int64_t row, float* out) {
  const uint32_t* w = static_cast<const uint32_t*>(data);
  const int64_t q = row / kR32Rows, t = row % kR32Rows, pairs = cols / kR32ColStep;
  for (int64_t l = 0; l < 8; ++l) {
    const uint32_t* lane = w + (q * 8 + l) * pairs * kR32Rows + t;
    for (int64_t p = 0; p < pairs; ++p) {
      const uint32_t word = lane[p * kR32Rows];
      out[16 * p + l] = bits_to_f32(word << 16);
      out[16 * p + 8 + l] = bits_to_f32(word & 0xffff0000u);
    }
  }
}

// Round to nearest even; NaN stays NaN (quiet).
GN_HD uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// IEEE half -> float, exact for every input including subnormals, inf and NaN.
GN_HD float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | (mant << 13));
  if (exp != 0) return bits_to_f32(sign | ((exp + 112u) << 23) | (mant << 13));
  if (mant == 0) return bits_to_f32(sign);
  // Subnormal half: value = mant * 2^-24.
  float v = static_cast<float>(mant) * 5.9604644775390625e-08f;
  return sign ? -v : v;
}

// float -> IEEE half, round to nearest even (like F16C's vcvtps2ph with rounding mode 0).
GN_HD uint16_t f32_to_f16(float f) {
  const uint32_t u = f32_to_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (abs < 0x38800000u) {  // half subnormal (or zero): round abs * 2^24 to an integer
    const float v = bits_to_f32(abs) * 16777216.0f;  // exact scaling by a power of two
    const uint32_t r = static_cast<uint32_t>(v);
    const float frac = v - static_cast<float>(r);
    uint32_t m = r + ((frac > 0.5f || (frac == 0.5f && (r & 1u))) ? 1u : 0u);
    return static_cast<uint16_t>(sign | m);
  }
  uint32_t m = abs + 0xfffu + ((abs >> 13) & 1u);  // round mantissa to 10 bits, ties to even
  m -= 0x38000000u;                                // rebias exponent 127 -> 15
  return static_cast<uint16_t>(sign | (m >> 13));
}

// x rounded to the nearest float16 value (ties to even), as a float.
GN_HD float round_f16(float x) { return f16_to_f32(f32_to_f16(x)); }

// Element i of an array of dtype t, widened to fp32: float dtypes, and Q8_0 blocks (32 int8
// values after their float16 scale, 34 bytes; element i is value i % 32 of block i / 32, so a
// row-major [rows, cols] matrix with cols % 32 == 0 is indexed like a float one).  Other GGML
// dtypes have no per-element form here.
GN_HD float load_as_f32(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::kBF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::kF16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::kQ8_0: {
      const uint8_t* b = static_cast<const uint8_t*>(p) + (i / 32) * 34;
      const uint16_t d = static_cast<uint16_t>(b[0] | (b[1] << 8));  // little-endian
      return f16_to_f32(d) * static_cast<float>(static_cast<int8_t>(b[2 + i % 32]));
    }
    default: return static_cast<const float*>(p)[i];
  }
}

}  // namespace gemma_native
