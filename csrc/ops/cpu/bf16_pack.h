// Shared by the bf16 compute mode's GEMMs (bf16_gemm.cc on AMX tiles, bf16_dot.cc with
// VDPBF16PS): both want W as "pair-major" blocks, for each of 16 rows of W the 32-bit word
// holding its values k = 2i, 2i+1 side by side, 16 rows per 64-byte line.  Packing a bf16
// matrix that way is a 16 x 16 transpose of 32-bit words.  Kernel files only (GN_ISA names
// the namespace, as in simd.h), and only where AVX-512 intrinsics exist (native or SIMDe).
#pragma once

#include <cstdint>

#include "ops/cpu/simd.h"

#if defined(GN_X86_AVX512)
namespace gemma_native::ops::cpu::GN_ISA {

// Four exchange steps: step s swaps bit s of the row index with bit s of the word index (rows
// n and n + 2^s trade the words whose index has bit s set), one two-source permute per row
// and step.
struct TransposeIndex16 {
  alignas(64) int32_t v[4][2][16];  // [step][row with bit s clear / set][word]
  constexpr TransposeIndex16() : v() {
    for (int s = 0; s < 4; ++s) {
      const int bit = 1 << s;
      for (int i = 0; i < 16; ++i) {
        v[s][0][i] = (i & bit) ? 16 + (i ^ bit) : i;
        v[s][1][i] = (i & bit) ? 16 + i : (i ^ bit);
      }
    }
  }
};
alignas(64) static constexpr TransposeIndex16 kTransposeIndex16{};

// r[n] word i -> r[i] word n for n, i < 16: a 16 x 16 transpose of 32-bit words in registers.
static inline void transpose16_words(__m512i r[16]) {
  for (int s = 0; s < 4; ++s) {
    const int bit = 1 << s;
    const __m512i lo = _mm512_load_si512(kTransposeIndex16.v[s][0]);
    const __m512i hi = _mm512_load_si512(kTransposeIndex16.v[s][1]);
    for (int n = 0; n < 16; ++n) {
      if (n & bit) continue;
      const __m512i a = r[n], b = r[n | bit];
      r[n] = _mm512_permutex2var_epi32(a, lo, b);
      r[n | bit] = _mm512_permutex2var_epi32(a, hi, b);
    }
  }
}

// out[2 * (i * 16 + n) + h] = rows[n][j0 + 2 * i + h] for i, n < 16, h < 2: the bf16 pairs
// (32-bit words) of 16 rows from value j0 on, transposed.
static inline void transpose16_pairs(const uint16_t* const rows[16], int64_t j0, uint16_t* out) {
  __m512i r[16];
  for (int n = 0; n < 16; ++n) r[n] = _mm512_loadu_si512(rows[n] + j0);
  transpose16_words(r);
  for (int i = 0; i < 16; ++i) _mm512_storeu_si512(out + i * 32, r[i]);
}

}  // namespace gemma_native::ops::cpu::GN_ISA
#endif
