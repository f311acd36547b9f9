// The AMX tile configuration (the 64-byte block LDTILECFG reads), shared by the AMX kernels
// (bf16_gemm.cc: TDPBF16PS; q8_0r16_amx.cc: TDPBSUD), which set their tiles' shapes in it.
#pragma once

#include <cstdint>

namespace gemma_native::ops::cpu {

// Palette 1: per tile t < 8 its rows (<= 16) and bytes per row (<= 64); tiles 8-15 and the
// reserved bytes must stay zero.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64, "LDTILECFG reads 64 bytes");

}  // namespace gemma_native::ops::cpu
