// q8_0r16: y[n, m] = sum_k x[n, k] * W[m, k] + bias[m] for W in the engine's Q8_0R16 format
// (quant.h: Q8_0 blocks of 16 rows interleaved), what dtype="int8" turns linear weights into.
//
// The arithmetic (the definition every kernel set reproduces bit for bit):
//   each activation row is quantized to q8_0 blocks as for Q8_0 (quant.h: quantize_act_q8_0,
//   d_x a half value, q_x in [-127, 127]);
//   per output (n, m): acc = +0.0f, then for each block b in order
//     s_b = sum over the block's 32 values of q_w * q_x      (exact, int32)
//     acc = fmaf((float)s_b, d_w * d_x, acc)                 (one rounding; d_w * d_x is exact:
//                                                             two half values)
//   y = acc + bias (or y + (acc + bias) when accumulating).
// llama.cpp's Q8_0 arithmetic (qlinear.cc, kept for GGUF files) converts 8 partial sums per
// block and feeds each to its own fp32 lane; whole-block sums need one convert and one fma per
// 32 products instead of per 4, so the products can run at the integer unit's rate.
//
// Kernels: rows live in vector lanes (16 rows = one zmm, or two 8-row ymm halves on AVX2), an
// activation row's 4 bytes of a k-step are broadcast to all of them:
//   AVX512-VNNI: VPDPBUSD of the stored unsigned bytes (q_w + 128) with the signed activation;
//     the lane starts the block from -128 * (sum of the activation block), so it ends at s_b.
//   AVX-512 / AVX2 without VNNI: maddubs of |q_w| with q_x carrying q_w's sign, then madd
//     with ones (pairs <= 2 * 128 * 127 < 2^15: no saturation), added to the lane.
//   NEON: SDOT (or widening multiplies and pairwise adds) of 4 rows' bytes (XOR 0x80 back to
//     signed) with the broadcast activation group.
//   scalar: the same sums in plain loops.
// Each block's int32 sums are converted once and meet one fma per (row, activation row).
// A tile is 16 weight rows x T activation rows; a thread takes groups of 16 rows and walks every
// activation row against each (the group, 16 x K bytes, stays in L2 meanwhile).  With VNNI a
// thread takes two groups at a time (32 rows x 6 activation rows, tile_pair): each broadcast
// activation group then feeds two VPDPBUSD from a register, which halves the loads per product
// (512 x 2560 @ 2560 x 7680 on 2 Zen 5 cores: 1,322-1,406 -> 1,446-1,580 GOP/s over three
// alternating pairs; the 2B int8 prefill 512 251-253 -> 283-287 tok/s).  Decode (a single
// tile of activation rows) reads W from memory once: one group at a time, prefetched ahead
// (kPfBytes below).
#include <cstring>

#include "gemma_native/quant.h"
#include "ops/cpu/dispatch.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/simd.h"

namespace gemma_native::ops::cpu::GN_ISA {
namespace {

constexpr int kRows = kQ8R16Rows;
constexpr int64_t kGB = kQ8R16GroupBlock;  // bytes per (group, block)
// Activation rows per tile: AVX-512 holds 12 int32 and 12 fp32 accumulators in its 32
// registers; AVX2 has 16 (4 + 4 per 8-row half, with the weight operands).
#if defined(GN_X86_AVX512)
constexpr int kMaxT = 12;
#else
constexpr int kMaxT = 4;
#endif

// With one tile of activation rows (decode) W streams from memory once and the tiles prefetch
// it pf > 0 bytes ahead, the block at blk + pf into L2 (pf = int8_prefetch_bytes(), dispatch.h:
// 4 KiB by default; on AMD Zen 4 none for one row, 16 KiB for more; 0 where W is reused across
// tiles).  On the EPYC Zen 5, 16 matrices of 7680 x 2560 from DRAM in turn, 2 threads, 4 rows:
// 37-46 GB/s without, 42-59 with 4 KiB (three alternating rounds; 1 row 42-46 -> 46-59); 8 KiB
// ahead was no better than none.
static inline void prefetch_block(const uint8_t* blk, int64_t pf) {
  // the address as an integer: it may lie past the matrix (a harmless prefetch)
  const uintptr_t p = reinterpret_cast<uintptr_t>(blk) + static_cast<uintptr_t>(pf);
  for (int64_t i = 0; i <= kGB / 64; ++i) prefetch_l2(reinterpret_cast<const void*>(p + 64 * i));
}

static inline int32_t load_i32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// The activations of one call, quantized and laid out for the tiles: rows in tiles of kMaxT
// (the last one padded with zeros), and per tile and block one XBlock, so that a tile reaches
// all its activation rows from one pointer.  corr = -128 * (sum of the block's 32 values), the
// start of a VNNI lane (see above).
struct XBlock {
  int8_t qs[kMaxT][32];
  float d[kMaxT];
  int32_t corr[kMaxT];
};

#if defined(GN_X86_AVX512)
// out[t * 16 + r] = row r of the 16-row group at grp . activation row t of the tile x
// (t < T <= kMaxT; x: the tile's XBlocks, one per block).
template <int T>
void tile(const uint8_t* grp, const XBlock* x, int64_t nb, float* out, int64_t pf) {
  __m512 facc[T];
  for (int t = 0; t < T; ++t) facc[t] = _mm512_setzero_ps();
#if !defined(GN_X86_AVX512VNNI)
  const __m512i ones = _mm512_set1_epi16(1);
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
#endif
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = grp + b * kGB;
    if (pf > 0) prefetch_block(blk, pf);
    const XBlock& xb = x[b];
    __m512i acc[T];
#if defined(GN_X86_AVX512VNNI)
    for (int t = 0; t < T; ++t) acc[t] = _mm512_set1_epi32(xb.corr[t]);
#else
    for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_si512();
#endif
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      const __m512i wu = _mm512_loadu_si512(blk + 2 * kRows + 64 * j);
#if defined(GN_X86_AVX512VNNI)
      for (int t = 0; t < T; ++t) {
        acc[t] = _mm512_dpbusd_epi32(acc[t], wu, _mm512_set1_epi32(load_i32(xb.qs[t] + 4 * j)));
      }
#else
      const __m512i ws = _mm512_xor_si512(wu, flip);
      const __m512i wa = _mm512_abs_epi8(ws);
      const __mmask64 neg = _mm512_movepi8_mask(ws);
      for (int t = 0; t < T; ++t) {
        const __m512i xv = _mm512_set1_epi32(load_i32(xb.qs[t] + 4 * j));
        const __m512i xs = _mm512_mask_sub_epi8(xv, neg, _mm512_setzero_si512(), xv);
        acc[t] = _mm512_add_epi32(acc[t], _mm512_madd_epi16(_mm512_maddubs_epi16(wa, xs), ones));
      }
#endif
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk)));
    for (int t = 0; t < T; ++t) {
      const __m512 dd = _mm512_mul_ps(dw, _mm512_set1_ps(xb.d[t]));
      facc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[t]), dd, facc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(out + t * kRows, facc[t]);
}
#if defined(GN_X86_AVX512VNNI)
// Two groups (32 rows: group grp and the one gs bytes after it) x T activation rows t0 ..
// t0 + T - 1 of the tile x: out[t * 32 + r].  Each broadcast activation group feeds two
// VPDPBUSD from a register, half the loads of two 16-row tiles.
template <int T>
void tile_pair(const uint8_t* grp, int64_t gs, const XBlock* x, int t0, int64_t nb, float* out) {
  __m512 f0[T], f1[T];
  for (int t = 0; t < T; ++t) f0[t] = f1[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* b0 = grp + b * kGB;
    const uint8_t* b1 = b0 + gs;
    const XBlock& xb = x[b];
    __m512i a0[T], a1[T];
    for (int t = 0; t < T; ++t) a0[t] = a1[t] = _mm512_set1_epi32(xb.corr[t0 + t]);
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      const __m512i w0 = _mm512_loadu_si512(b0 + 2 * kRows + 64 * j);
      const __m512i w1 = _mm512_loadu_si512(b1 + 2 * kRows + 64 * j);
      for (int t = 0; t < T; ++t) {
        const __m512i xv = _mm512_set1_epi32(load_i32(xb.qs[t0 + t] + 4 * j));
        a0[t] = _mm512_dpbusd_epi32(a0[t], w0, xv);
        a1[t] = _mm512_dpbusd_epi32(a1[t], w1, xv);
      }
    }
    const __m512 dw0 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0)));
    const __m512 dw1 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b1)));
    for (int t = 0; t < T; ++t) {
      const __m512 dx = _mm512_set1_ps(xb.d[t0 + t]);
      f0[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a0[t]), _mm512_mul_ps(dw0, dx), f0[t]);
      f1[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a1[t]), _mm512_mul_ps(dw1, dx), f1[t]);
    }
  }
  for (int t = 0; t < T; ++t) {
    _mm512_storeu_ps(out + t * 2 * kRows, f0[t]);
    _mm512_storeu_ps(out + t * 2 * kRows + kRows, f1[t]);
  }
}

template <int T>
void tile_pair_of(int rows, const uint8_t* grp, int64_t gs, const XBlock* x, int t0, int64_t nb,
                  float* out) {
  if constexpr (T > 1) {
    if (rows < T) return tile_pair_of<T - 1>(rows, grp, gs, x, t0, nb, out);
  }
  tile_pair<T>(grp, gs, x, t0, nb, out);
}
#endif
#elif defined(GN_X86_AVX2)
// The same on AVX2, one 8-row half h of the group at a time (rows 8h .. 8h + 7).
template <int T>
void tile_half(const uint8_t* grp, int h, const XBlock* x, int64_t nb, float* out,
               int64_t pf) {
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  __m256 facc[T];
  for (int t = 0; t < T; ++t) facc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = grp + b * kGB;
    if (pf > 0 && h == 0) prefetch_block(blk, pf);  // the first half's pass reads the whole group
    const XBlock& xb = x[b];
    __m256i acc[T];
    for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_si256();
    for (int j = 0; j < 8; ++j) {
      const __m256i wu =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2 * kRows + 64 * j + 32 * h));
      const __m256i ws = _mm256_xor_si256(wu, flip);
      const __m256i wa = _mm256_abs_epi8(ws);
      for (int t = 0; t < T; ++t) {
        const __m256i xs = _mm256_sign_epi8(_mm256_set1_epi32(load_i32(xb.qs[t] + 4 * j)), ws);
        acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(_mm256_maddubs_epi16(wa, xs), ones));
      }
    }
    const __m256 dw =
        _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 16 * h)));
    for (int t = 0; t < T; ++t) {
      const __m256 dd = _mm256_mul_ps(dw, _mm256_set1_ps(xb.d[t]));
      facc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[t]), dd, facc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(out + t * kRows + 8 * h, facc[t]);
}

template <int T>
void tile(const uint8_t* grp, const XBlock* x, int64_t nb, float* out, int64_t pf) {
  tile_half<T>(grp, 0, x, nb, out, pf);
  tile_half<T>(grp, 1, x, nb, out, pf);
}
#elif defined(GN_ARM_NEON)
// NEON: 4 rows per int32x4, the group in two 8-row halves.  A k-step's 16 bytes for 4 rows meet
// one activation 4-byte group broadcast to every lane: SDOT with the dot-product extension,
// else widening multiplies and two pairwise adds (dot4 below); either way the exact int32 sum
// of each row's 4 products.
static inline int32x4_t dot4(int32x4_t acc, int8x16_t w, int8x16_t x) {
#if defined(GN_ARM_DOTPROD)
  return vdotq_s32(acc, w, x);
#else
  return vaddq_s32(acc, vpaddq_s32(vpaddlq_s16(vmull_s8(vget_low_s8(w), vget_low_s8(x))),
                                   vpaddlq_s16(vmull_high_s8(w, x))));
#endif
}

template <int T>
void tile_half(const uint8_t* grp, int h, const XBlock* x, int64_t nb, float* out,
               int64_t pf) {
  const uint8x16_t flip = vdupq_n_u8(0x80);
  float32x4_t facc[T][2];
  for (int t = 0; t < T; ++t) facc[t][0] = facc[t][1] = vdupq_n_f32(0.0f);
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = grp + b * kGB;
    if (pf > 0 && h == 0) prefetch_block(blk, pf);
    const XBlock& xb = x[b];
    int32x4_t acc[T][2];
    for (int t = 0; t < T; ++t) acc[t][0] = acc[t][1] = vdupq_n_s32(0);
    for (int j = 0; j < 8; ++j) {
      const uint8_t* wj = blk + 2 * kRows + 64 * j + 32 * h;
      const int8x16_t w0 = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(wj), flip));
      const int8x16_t w1 = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(wj + 16), flip));
      for (int t = 0; t < T; ++t) {
        const int8x16_t xv = vreinterpretq_s8_s32(vdupq_n_s32(load_i32(xb.qs[t] + 4 * j)));
        acc[t][0] = dot4(acc[t][0], w0, xv);
        acc[t][1] = dot4(acc[t][1], w1, xv);
      }
    }
    uint16_t hs[8];
    std::memcpy(hs, blk + 16 * h, 16);
    const float32x4_t dw0 = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(hs)));
    const float32x4_t dw1 = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(hs + 4)));
    for (int t = 0; t < T; ++t) {
      const float32x4_t dx = vdupq_n_f32(xb.d[t]);
      facc[t][0] = vfmaq_f32(facc[t][0], vcvtq_f32_s32(acc[t][0]), vmulq_f32(dw0, dx));
      facc[t][1] = vfmaq_f32(facc[t][1], vcvtq_f32_s32(acc[t][1]), vmulq_f32(dw1, dx));
    }
  }
  for (int t = 0; t < T; ++t) {
    vst1q_f32(out + t * kRows + 8 * h, facc[t][0]);
    vst1q_f32(out + t * kRows + 8 * h + 4, facc[t][1]);
  }
}

template <int T>
void tile(const uint8_t* grp, const XBlock* x, int64_t nb, float* out, int64_t pf) {
  tile_half<T>(grp, 0, x, nb, out, pf);
  tile_half<T>(grp, 1, x, nb, out, pf);
}
#else
// The scalar set: the same sums and steps in plain loops (nothing to prefetch for).
template <int T>
void tile(const uint8_t* grp, const XBlock* x, int64_t nb, float* out, int64_t /*pf*/) {
  float facc[T][kRows];
  for (int t = 0; t < T; ++t) {
    for (int r = 0; r < kRows; ++r) facc[t][r] = 0.0f;
  }
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = grp + b * kGB;
    float dw[kRows];
    for (int r = 0; r < kRows; ++r) {
      dw[r] = f16_to_f32(static_cast<uint16_t>(blk[2 * r] | (blk[2 * r + 1] << 8)));
    }
    for (int t = 0; t < T; ++t) {
      const XBlock& xb = x[b];
      int32_t s[kRows] = {};
      for (int j = 0; j < 8; ++j) {
        const uint8_t* w = blk + 2 * kRows + 64 * j;
        for (int r = 0; r < kRows; ++r) {
          for (int i = 0; i < 4; ++i) s[r] += (static_cast<int32_t>(w[4 * r + i]) - 128) * xb.qs[t][4 * j + i];
        }
      }
      for (int r = 0; r < kRows; ++r) {
        facc[t][r] = fmaf(static_cast<float>(s[r]), dw[r] * xb.d[t], facc[t][r]);
      }
    }
  }
  for (int t = 0; t < T; ++t) {
    for (int r = 0; r < kRows; ++r) out[t * kRows + r] = facc[t][r];
  }
}
#endif

template <int T>
void tile_of(int rows, const uint8_t* grp, const XBlock* x, int64_t nb, float* out,
             int64_t pf) {
  if constexpr (T > 1) {
    if (rows < T) return tile_of<T - 1>(rows, grp, x, nb, out, pf);
  }
  tile<T>(grp, x, nb, out, pf);
}

}  // namespace

void linear_q8_0r16(const LinearArgs& a) {
  const int64_t K = a.w.cols, M = a.w.rows, nb = K / 32;
  const int64_t tiles = (a.n + kMaxT - 1) / kMaxT;
  Buf<XBlock> xt(tiles * nb);
  par_for(tiles, 1, [&](int64_t i0, int64_t i1) {
    Buf<ActBlock32> row(nb);
    for (int64_t i = i0; i < i1; ++i) {
      XBlock* x = xt.data() + i * nb;
      std::memset(static_cast<void*>(x), 0, static_cast<size_t>(nb) * sizeof(XBlock));
      for (int t = 0; t < kMaxT && i * kMaxT + t < a.n; ++t) {
        quantize_act(a.x + (i * kMaxT + t) * K, K, 32, row.data());
        for (int64_t b = 0; b < nb; ++b) {
          std::memcpy(x[b].qs[t], row[b].qs, 32);
          x[b].d[t] = row[b].d;
          x[b].corr[t] = act_block_corr(row[b]);
        }
      }
    }
  });
  const uint8_t* wbase = static_cast<const uint8_t*>(a.w.data);
  // A single tile (decode) streams W from memory once: prefetched ahead (above).
  const int64_t pf = tiles == 1 ? int8_prefetch_bytes(a.n) : 0;
  // o[t * width + r]: output row n0 + t, column m0 + r.
  const auto emit = [&](int64_t n0, int rows, int64_t m0, int width, const float* o) {
    for (int t = 0; t < rows; ++t) {
      for (int r = 0; r < width; ++r) store_linear(a, n0 + t, m0 + r, o[t * width + r]);
    }
  };
  par_for(M / kRows, 1, [&](int64_t g0, int64_t g1) {
    float out[kMaxT * 2 * kRows];
    int64_t g = g0;
#if defined(GN_X86_AVX512VNNI)
    // Two groups at a time (tile_pair) where W is reused across tiles of activation rows; a
    // single tile (decode) streams W from memory once, where one group at a time with
    // prefetch kept DRAM busier (same 16 matrices, 4 rows: 40-42 -> 46-49 GB/s).
    for (; g + 2 <= g1 && tiles > 1; g += 2) {
      for (int64_t i = 0; i < tiles; ++i) {
        const int rows = static_cast<int>(min64(kMaxT, a.n - i * kMaxT));
        for (int t0 = 0; t0 < rows; t0 += kMaxT / 2) {
          tile_pair_of<kMaxT / 2>(rows - t0, wbase + g * nb * kGB, nb * kGB, xt.data() + i * nb,
                                  t0, nb, out + t0 * 2 * kRows);
        }
        emit(i * kMaxT, rows, g * kRows, 2 * kRows, out);
      }
    }
#endif
    for (; g < g1; ++g) {
      for (int64_t i = 0; i < tiles; ++i) {
        const int rows = static_cast<int>(min64(kMaxT, a.n - i * kMaxT));
        const uint8_t* grp = wbase + g * nb * kGB;
        tile_of<kMaxT>(rows, grp, xt.data() + i * nb, nb, out, pf);
        emit(i * kMaxT, rows, g * kRows, kRows, out);
      }
    }
  });
}

}  // namespace gemma_native::ops::cpu::GN_ISA
