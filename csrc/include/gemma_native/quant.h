// GGML block quantization formats, as stored in GGUF files.  Weights stay in these blocks in
// memory (memory-mapped from the file); kernels widen them to fp32 block by block.
//
// Layouts (little-endian, packed; d/dmin are IEEE half):
//   Q8_0  32 values:  d, int8 qs[32]                                  x = d * q
//   Q4_0  32 values:  d, uint8 qs[16] (low nibbles: 0-15, high: 16-31) x = d * (q - 8)
//   Q5_0  32 values:  d, uint32 qh (5th bits), uint8 qs[16]           x = d * (q - 16)
//   Q4_K 256 values:  d, dmin, 12 bytes of 6-bit scales/mins for 8 sub-blocks of 32,
//                     uint8 qs[128] (per 64 values: low nibbles then high nibbles)
//                     x = d * scale_j * q - dmin * min_j
//   Q6_K 256 values:  uint8 ql[128] (low 4 bits), uint8 qh[64] (high 2 bits), int8 scales[16]
//                     (one per 16 values), d                          x = d * scale * (q - 32)
// The engine's own int8 format (not GGML's), what dtype="int8" quantizes linear weights to:
//   Q8_0R16  the Q8_0 blocks of 16 consecutive rows interleaved.  Rows come in groups of 16
//            (a matrix has rows % 16 == 0); group g, block b is kQ8R16GroupBlock = 544 bytes at
//            (g * blocks_per_row + b) * 544: the 16 rows' half scales d (row order), then for
//            k-step j = 0..7 and row r = 0..15 the 4 values 4j..4j+3 of that row's block as
//            unsigned bytes q + 128.  Same values and size as Q8_0; a different arithmetic
//            (ops/cpu/q8_0r16.cc: whole-block int32 sums, one fma per block).
#pragma once

#include <math.h>

#include <cstdint>
#include <cstring>

#include "gemma_native/dtype.h"

namespace gemma_native {

#pragma pack(push, 1)
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[32];
};
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[16];
};
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[16];
};
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qs[128];
};
struct BlockQ6_K {
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;
};
#pragma pack(pop)

static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ5_0) == 22 &&
                  sizeof(BlockQ4_K) == 144 && sizeof(BlockQ6_K) == 210,
              "GGML block sizes");

constexpr int kQ8R16Rows = 16;
constexpr int64_t kQ8R16GroupBlock = 2 * kQ8R16Rows + 32 * kQ8R16Rows;

GN_HD bool is_quantized(DType t) {
  return static_cast<int>(t) >= static_cast<int>(DType::kQ8_0) &&
         static_cast<int>(t) <= static_cast<int>(DType::kQ8_0R16);
}

// Values per block and bytes per block of a weight dtype (1 and the element size for floats).
GN_HD int64_t block_values(DType t) {
  switch (t) {
    case DType::kQ8_0: case DType::kQ4_0: case DType::kQ5_0: case DType::kQ8_0R16: return 32;
    case DType::kQ4_K: case DType::kQ6_K: return 256;
    default: return 1;
  }
}
GN_HD int64_t block_bytes(DType t) {
  switch (t) {
    case DType::kQ8_0: case DType::kQ8_0R16: return 34;
    case DType::kQ4_0: return 18;
    case DType::kQ5_0: return 22;
    case DType::kQ4_K: return 144;
    case DType::kQ6_K: return 210;
    default: return dtype_size(t);
  }
}
GN_HD int64_t row_bytes(DType t, int64_t cols) { return cols / block_values(t) * block_bytes(t); }

// 6-bit scale and min of sub-block j (0..7) of a Q4_K block.
GN_HD void q4k_scale_min(int j, const uint8_t* s, int* scale, int* min) {
  if (j < 4) {
    *scale = s[j] & 63;
    *min = s[j + 4] & 63;
  } else {
    *scale = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    *min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// bits -> bytes: kBitBytes.v[i] holds, in byte b, 0x10 when bit b of i is set (Q5_0's 5th bits).
struct BitBytes {
  uint64_t v[256];
  constexpr BitBytes() : v() {
    for (int i = 0; i < 256; ++i) {
      uint64_t x = 0;
      for (int b = 0; b < 8; ++b) {
        if ((i >> b) & 1) x |= uint64_t{0x10} << (8 * b);
      }
      v[i] = x;
    }
  }
};
static constexpr BitBytes kBitBytes{};

// Unpacks the integer values of one k-quant block: q[i] such that x = scale_of(i) * q[i]
// (Q4_K: q in 0..15; Q6_K: q - 32 in -32..31).
// Written as straight loops over bytes so the compiler vectorizes them per ISA.
GN_HD void unpack_q4_k(const BlockQ4_K& b, uint8_t* q) {
  for (int c = 0; c < 4; ++c) {  // 4 chunks of 64 values
    for (int l = 0; l < 32; ++l) {
      q[64 * c + l] = b.qs[32 * c + l] & 0xF;
      q[64 * c + 32 + l] = b.qs[32 * c + l] >> 4;
    }
  }
}
GN_HD void unpack_q6_k(const BlockQ6_K& b, int8_t* q) {
  for (int h = 0; h < 2; ++h) {  // two halves of 128 values
    const uint8_t* ql = b.ql + 64 * h;
    const uint8_t* qh = b.qh + 32 * h;
    int8_t* o = q + 128 * h;
    for (int l = 0; l < 32; ++l) {
      o[l] = static_cast<int8_t>(((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32);
      o[l + 32] = static_cast<int8_t>(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
      o[l + 64] = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
      o[l + 96] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
    }
  }
}

// ---- 8-bit activations for the integer dot products (qlinear) ----
// One row of activations is quantized per block of the weight's block size, exactly as
// llama.cpp's CPU backend does on x86 (so both engines compute the same integer sums):
//   32-value blocks ("q8_0"): d = amax/127 stored as IEEE half; q = round_half_even(x * 127/amax)
//   256-value blocks ("q8_K"): iscale = -127/x_m (x_m: the first value of largest magnitude);
//     q = round_half_even(x * iscale); d = 1/iscale in fp32; bsums = sums of 16 q's.
struct ActBlock32 {
  float d;  // the half-rounded scale, widened
  int8_t qs[32];
};

// The Q8_0R16 products (VPDPBUSD, AMX TDPBSUD) multiply the weights as unsigned bytes w + 128,
// so each block's integer sum starts from this correction: -128 x the sum of the activation
// block's values, which cancels the offset exactly.
inline int32_t act_block_corr(const ActBlock32& b) {
  int32_t s = 0;
  for (int v = 0; v < 32; ++v) s += b.qs[v];
  return -128 * s;
}

struct ActBlock256 {
  float d;
  int16_t bsums[16];
  int8_t qs[256];
};

// Round half to even without relying on the floating-point environment (|v| < 2^22), clamped to
// +-127 (NaN -> 0), so a broken activation can never produce an out-of-range byte.
GN_HD int8_t round_q8(float v) {
  if (!(v == v)) return 0;
  v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
  const float r = (v + 12582912.0f) - 12582912.0f;
  return static_cast<int8_t>(static_cast<int>(r));
}

GN_HD void quantize_act_q8_0(const float* x, int64_t k, ActBlock32* out) {
  for (int64_t i = 0; i < k / 32; ++i) {
    const float* v = x + 32 * i;
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = fmaxf(amax, fabsf(v[j]));
    out[i].d = f16_to_f32(f32_to_f16(amax / 127.0f));
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    for (int j = 0; j < 32; ++j) out[i].qs[j] = round_q8(v[j] * id);
  }
}

GN_HD void quantize_act_q8_k(const float* x, int64_t k, ActBlock256* out) {
  for (int64_t i = 0; i < k / 256; ++i) {
    const float* v = x + 256 * i;
    float amax = 0.0f, xm = 0.0f;
    for (int j = 0; j < 256; ++j) {
      if (fabsf(v[j]) > amax) {
        amax = fabsf(v[j]);
        xm = v[j];
      }
    }
    const float iscale = amax != 0.0f ? -127.0f / xm : 0.0f;
    out[i].d = amax != 0.0f ? 1.0f / iscale : 0.0f;
    for (int j = 0; j < 256; ++j) out[i].qs[j] = round_q8(v[j] * iscale);
    for (int g = 0; g < 16; ++g) {
      int s = 0;
      for (int j = 0; j < 16; ++j) s += out[i].qs[16 * g + j];
      out[i].bsums[g] = static_cast<int16_t>(s);
    }
  }
}

// The integer values of 32-value block i of a Q8_0/Q4_0/Q5_0 row (x = d * q); returns d.
GN_HD float block32_int(const void* row, DType t, int64_t i, int8_t* q) {
  if (t == DType::kQ8_0) {
    const BlockQ8_0& b = static_cast<const BlockQ8_0*>(row)[i];
    for (int j = 0; j < 32; ++j) q[j] = b.qs[j];
    return f16_to_f32(b.d);
  }
  if (t == DType::kQ4_0) {
    const BlockQ4_0& b = static_cast<const BlockQ4_0*>(row)[i];
    for (int j = 0; j < 16; ++j) {
      q[j] = static_cast<int8_t>((b.qs[j] & 0xF) - 8);
      q[j + 16] = static_cast<int8_t>((b.qs[j] >> 4) - 8);
    }
    return f16_to_f32(b.d);
  }
  const BlockQ5_0& b = static_cast<const BlockQ5_0*>(row)[i];
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  for (int j = 0; j < 16; ++j) {
    q[j] = static_cast<int8_t>(((b.qs[j] & 0xF) | (((qh >> j) & 1) << 4)) - 16);
    q[j + 16] = static_cast<int8_t>(((b.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16);
  }
  return f16_to_f32(b.d);
}

// Quantizes one row of fp32 weights to Q8_0 blocks as ggml's reference quantizer does
// (d = amax / 127 stored as half; q = round-half-away(x / d) using the unrounded d), so an
// "int8" model holds what llama.cpp's Q8_0 conversion of the same weights would.
GN_HD void quantize_row_q8_0(const float* x, int64_t cols, BlockQ8_0* out) {
  for (int64_t i = 0; i < cols / 32; ++i) {
    const float* v = x + 32 * i;
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = fmaxf(amax, fabsf(v[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    out[i].d = f32_to_f16(d);
    for (int j = 0; j < 32; ++j) {
      float r = roundf(v[j] * id);
      r = r > 127.0f ? 127.0f : (r < -127.0f ? -127.0f : r);
      out[i].qs[j] = static_cast<int8_t>(r == r ? r : 0.0f);
    }
  }
}

// Row `row` of a Q8_0R16 matrix with `cols` columns (its 16-row group's blocks, the row's
// scale and bytes picked out of each) into fp32: the same values, computed the same way, as
// dequantize_row on the Q8_0 row it was packed from.
GN_HD void dequantize_q8_0r16_row(const void* data, int64_t cols, int64_t row, float* out) {
  const int64_t nb = cols / 32, r = row % kQ8R16Rows;
  const uint8_t* grp = static_cast<const uint8_t*>(data) + row / kQ8R16Rows * nb * kQ8R16GroupBlock;
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* blk = grp + i * kQ8R16GroupBlock;
    uint16_t h;
    memcpy(&h, blk + 2 * r, 2);
    const float d = f16_to_f32(h);
    for (int j = 0; j < 8; ++j) {
      for (int v = 0; v < 4; ++v) {
        const int8_t q = static_cast<int8_t>(blk[2 * kQ8R16Rows + 64 * j + 4 * r + v] ^ 0x80);
        out[32 * i + 4 * j + v] = d * q;
      }
    }
  }
}

// Dequantizes one row of `cols` values of a quantized or float weight into fp32.
GN_HD void dequantize_row(const void* row, DType t, int64_t cols, float* out) {
  const int64_t nb = cols / block_values(t);
  int8_t q[256];
  uint8_t u[256];
  switch (t) {
    case DType::kQ8_0: {
      const BlockQ8_0* b = static_cast<const BlockQ8_0*>(row);
      for (int64_t i = 0; i < nb; ++i) {
        const float d = f16_to_f32(b[i].d);
        for (int j = 0; j < 32; ++j) out[32 * i + j] = d * b[i].qs[j];
      }
      return;
    }
    case DType::kQ4_0: {  // written straight to floats: the byte-to-float loops vectorize
      const BlockQ4_0* b = static_cast<const BlockQ4_0*>(row);
      for (int64_t i = 0; i < nb; ++i) {
        const float d = f16_to_f32(b[i].d);
        float* o = out + 32 * i;
        for (int j = 0; j < 16; ++j) {
          o[j] = d * static_cast<float>((b[i].qs[j] & 0xF) - 8);
          o[j + 16] = d * static_cast<float>((b[i].qs[j] >> 4) - 8);
        }
      }
      return;
    }
    case DType::kQ5_0: {
      const BlockQ5_0* b = static_cast<const BlockQ5_0*>(row);
      for (int64_t i = 0; i < nb; ++i) {
        uint8_t hi[32];
        for (int k = 0; k < 4; ++k) {
          const uint64_t v = kBitBytes.v[b[i].qh[k]];
          std::memcpy(hi + 8 * k, &v, 8);
        }
        const float d = f16_to_f32(b[i].d);
        float* o = out + 32 * i;
        for (int j = 0; j < 16; ++j) {
          o[j] = d * static_cast<float>(((b[i].qs[j] & 0xF) | hi[j]) - 16);
          o[j + 16] = d * static_cast<float>(((b[i].qs[j] >> 4) | hi[j + 16]) - 16);
        }
      }
      return;
    }
    case DType::kQ4_K: {
      const BlockQ4_K* b = static_cast<const BlockQ4_K*>(row);
      for (int64_t i = 0; i < nb; ++i) {
        unpack_q4_k(b[i], u);
        const float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
        float* o = out + 256 * i;
        for (int j = 0; j < 8; ++j) {
          int sc, mn;
          q4k_scale_min(j, b[i].scales, &sc, &mn);
          const float ds = d * sc, dm = dmin * mn;
          for (int l = 0; l < 32; ++l) o[32 * j + l] = ds * u[32 * j + l] - dm;
        }
      }
      return;
    }
    case DType::kQ6_K: {
      const BlockQ6_K* b = static_cast<const BlockQ6_K*>(row);
      for (int64_t i = 0; i < nb; ++i) {
        unpack_q6_k(b[i], q);
        const float d = f16_to_f32(b[i].d);
        float* o = out + 256 * i;
        for (int g = 0; g < 16; ++g) {
          const float s = d * b[i].scales[g];
          for (int l = 0; l < 16; ++l) o[16 * g + l] = s * q[16 * g + l];
        }
      }
      return;
    }
    default:
      for (int64_t j = 0; j < cols; ++j) out[j] = load_as_f32(row, t, j);
      return;
  }
}

}  // namespace gemma_native
