// qlinear: y[n, m] = sum_k x[n, k] * W[m, k] + bias[m] for W in a GGML block format (quant.h).
//
// Default path (int8 activations, what llama.cpp computes): each row of x is quantized to 8 bits
// per block of the weight's block size (quant.h: quantize_act_q8_0 for 32-value blocks,
// quantize_act_q8_k for 256-value blocks), every block pair is an exact integer dot product, and
// the block scales combine the integer sums in fp32.  The rounding of the activations is the
// dominant error of a quantized model next to its float twin, so reproducing llama.cpp's exactly
// is what makes our logits agree with llama.cpp's on the same file.
// Float path (a.w.float_activations): each weight row is widened to fp32 and dotted with fp32 x in
// the order `linear` uses, i.e. what the dequantized fp32 twin of the model computes.
//
// Napkin math: decode reads each weight byte once (Q4_K 4.5 bits/weight, Q8_0 8.5); on AVX2 the
// int8 path spends ~10 instructions per 32 weights (maddubs does 32 multiply-adds), so it runs
// at memory speed; the fp32 path needs ~2 ops per weight to widen plus the fp32 FMAs.
// Prefill is instruction-bound instead: per block and (weight row, activation row) pair, sign,
// maddubs, madd, cvt, the scale product and the fma (~7 vector instructions per 32 products),
// because each 32-value block carries its own scale.  The AVX-512 prefill runs two pairs per
// instruction in 4 x 8 tiles and decodes each group of 4 weight rows once for all activation
// rows (Xeon, 1 thread, 512 x 2560 @ 2560 x 7680: Q8_0 72 -> ~120 GOP/s, Q4_0 70 -> ~126).
// The AVX2 prefill decodes groups of 4 weight rows once and forms the scale products 8 rows
// per vmulps; its k-quant products take 8 activation rows per vector (AMD EPYC Zen 3, 1
// thread, 512 rows of the 270M GGUF's layer-0 weights: Q5_0 47 -> 68 GOP/s, Q8_0 57 -> 66,
// Q4_K 66 -> 99, Q6_K 70 -> 102).
#include <cstring>
#include <type_traits>

#include "gemma_native/quant.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/simd.h"

namespace gemma_native::ops::cpu::GN_ISA {
namespace {

constexpr int64_t kPanel = 16;  // activation rows kept hot while a thread walks its weight rows

// Calls f with a 32-value block type (Q8_0, Q4_0 or Q5_0) as a compile-time constant.
template <class F>
void with_b32(DType t, F&& f) {
  switch (t) {
    case DType::kQ8_0: return f(std::integral_constant<DType, DType::kQ8_0>());
    case DType::kQ4_0: return f(std::integral_constant<DType, DType::kQ4_0>());
    default: return f(std::integral_constant<DType, DType::kQ5_0>());
  }
}

// Bytes per block of a 32-value type.
template <DType DT>
constexpr int64_t kB32Bytes = DT == DType::kQ8_0   ? sizeof(BlockQ8_0)
                              : DT == DType::kQ4_0 ? sizeof(BlockQ4_0)
                                                   : sizeof(BlockQ5_0);

// ---- integer block dot products: sum over one block pair, exact in int32 ----

#if defined(GN_X86_AVX2)
// maddubs multiplies unsigned by signed bytes into int16 pairs: signed weights go in as |w|
// with a taking w's sign (pairs <= 2 * 128 * 127 < 2^15); unsigned ones (Q4_K 0..15, Q6_K
// 0..63) go in as they are.
static inline int hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}
static inline float hsum_f32(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
// IEEE half -> float with F16C (exact, like f16_to_f32, without its branches).
#if defined(GN_SIMDE_AVX512)
static inline float half_to_f32(uint16_t h) { return f16_to_f32(h); }  // SIMDe has no _cvtsh_ss
#else
static inline float half_to_f32(uint16_t h) { return _cvtsh_ss(h); }
#endif
static inline __m256i load32(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}
// 16 packed nibbles -> 32 bytes: low nibbles first, then high nibbles (the Q4_0/Q5_0 order).
static inline __m256i nibbles_lo_hi(const uint8_t* p) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i m = _mm_set1_epi8(0xF);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
}
// Q5_0's 32 fifth bits -> 0x10 in each byte whose bit is set.
static inline __m256i fifth_bits(const uint8_t* qh) {
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  const __m256i shuf = _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL,
                                         0x0101010101010101LL, 0x0000000000000000LL);
  const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), shuf);
  const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
  const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
  return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

// Block i of a Q8_0/Q4_0/Q5_0 row as 32 signed bytes; *d gets its scale.
template <DType DT>
static inline __m256i decode_b32(const void* wrow, int64_t i, float* d) {
  if constexpr (DT == DType::kQ8_0) {
    const BlockQ8_0& b = static_cast<const BlockQ8_0*>(wrow)[i];
    *d = half_to_f32(b.d);
    return load32(b.qs);
  } else if constexpr (DT == DType::kQ4_0) {
    const BlockQ4_0& b = static_cast<const BlockQ4_0*>(wrow)[i];
    *d = half_to_f32(b.d);
    return _mm256_sub_epi8(nibbles_lo_hi(b.qs), _mm256_set1_epi8(8));
  } else {
    const BlockQ5_0& b = static_cast<const BlockQ5_0*>(wrow)[i];
    *d = half_to_f32(b.d);
    return _mm256_sub_epi8(_mm256_or_si256(nibbles_lo_hi(b.qs), fifth_bits(b.qh)),
                           _mm256_set1_epi8(16));
  }
}
// acc + (dw * dA) * (8 int32 partial sums of w . a), the one per-block step of every b32 path.
static inline __m256 fma_block(__m256i w, float dw, const ActBlock32& a, __m256 acc) {
  const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(load32(a.qs), w));
  const __m256 s = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
  return _mm256_fmadd_ps(_mm256_set1_ps(dw * a.d), s, acc);
}
#endif

#if defined(GN_ARM_NEON)
// Lane l = the exact int32 sum of products 4l..4l+3 of 16 int8 pairs: SDOT with the
// dot-product extension, else widening multiplies and two pairwise adds.  These are the lane
// partial sums the x86 sets form with maddubs + madd.
static inline int32x4_t dot4x4_s8(int8x16_t a, int8x16_t b) {
#if defined(GN_ARM_DOTPROD)
  return vdotq_s32(vdupq_n_s32(0), a, b);
#else
  return vpaddq_s32(vpaddlq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b))),
                    vpaddlq_s16(vmull_high_s8(a, b)));
#endif
}
#endif

#if defined(GN_X86_AVX2)
// ---- activation quantization, 8 lanes at a time, bit for bit quant.h's scalar definitions ----
static inline __m256 abs8(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }
// max |v| over 32 floats, NaN ignored (max_ps returns its second operand, the running max, when
// the first is NaN), as quant.h's fmaxf loop.
static inline __m256 absmax32(const float* v, __m256 m) {
  for (int j = 0; j < 32; j += 8) m = _mm256_max_ps(abs8(_mm256_loadu_ps(v + j)), m);
  return m;
}
static inline float hmax8(__m256 m) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
// round_q8 of v * scale on 8 lanes: NaN -> 0, clamp to +-127, half to even by the same
// 1.5 * 2^23 addition (no rounding-mode dependence), as an exact int32.
static inline __m256i round_q8_x8(__m256 v, __m256 scale) {
  v = _mm256_mul_ps(v, scale);
  v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));
  v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
  const __m256 magic = _mm256_set1_ps(12582912.0f);
  return _mm256_cvttps_epi32(_mm256_sub_ps(_mm256_add_ps(v, magic), magic));
}
// 32 values -> 32 int8 at q.
static inline void quantize32(const float* v, __m256 scale, int8_t* q) {
  const __m256i i0 = round_q8_x8(_mm256_loadu_ps(v), scale);
  const __m256i i1 = round_q8_x8(_mm256_loadu_ps(v + 8), scale);
  const __m256i i2 = round_q8_x8(_mm256_loadu_ps(v + 16), scale);
  const __m256i i3 = round_q8_x8(_mm256_loadu_ps(v + 24), scale);
  const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q),
                      _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}
#endif

// quant.h's quantize_act_q8_0 / quantize_act_q8_k (the definitions; the scalar build uses them).
void act_q8_0(const float* x, int64_t k, ActBlock32* out) {
#if defined(GN_X86_AVX2)
  for (int64_t i = 0; i < k / 32; ++i) {
    const float* v = x + 32 * i;
    const float amax = hmax8(absmax32(v, _mm256_setzero_ps()));
    out[i].d = f16_to_f32(f32_to_f16(amax / 127.0f));
    quantize32(v, _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f), out[i].qs);
  }
#else
  quantize_act_q8_0(x, k, out);
#endif
}

void act_q8_k(const float* x, int64_t k, ActBlock256* out) {
#if defined(GN_X86_AVX2)
  for (int64_t i = 0; i < k / 256; ++i) {
    const float* v = x + 256 * i;
    __m256 m = _mm256_setzero_ps();
    for (int j = 0; j < 256; j += 32) m = absmax32(v + j, m);
    const float amax = hmax8(m);
    float xm = 0.0f;  // the first value of largest magnitude, as the scalar scan keeps it
    if (amax != 0.0f) {
      const __m256 target = _mm256_set1_ps(amax);
      for (int j = 0; j < 256; j += 8) {
        const int hit = _mm256_movemask_ps(
            _mm256_cmp_ps(abs8(_mm256_loadu_ps(v + j)), target, _CMP_EQ_OQ));
        if (hit) {
          xm = v[j + __builtin_ctz(static_cast<unsigned>(hit))];
          break;
        }
      }
    }
    const float iscale = amax != 0.0f ? -127.0f / xm : 0.0f;
    out[i].d = amax != 0.0f ? 1.0f / iscale : 0.0f;
    for (int j = 0; j < 256; j += 32) quantize32(v + j, _mm256_set1_ps(iscale), out[i].qs + j);
    for (int g = 0; g < 16; ++g) {
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(out[i].qs + 16 * g));
      const __m256i w = _mm256_madd_epi16(_mm256_cvtepi8_epi16(b), _mm256_set1_epi16(1));
      out[i].bsums[g] = static_cast<int16_t>(hsum_i32(w));
    }
  }
#else
  quantize_act_q8_k(x, k, out);
#endif
}

// ---- one weight row . R quantized activation rows (R = 1..4) ----
// Each weight block is decoded once and used for all R rows; every row is summed in the same
// order whatever R is, so a row's result never depends on the batch it came in.

// Q8_0 / Q4_0 / Q5_0 weights x q8_0 activations (32-value blocks), a tile of MW weight rows x
// R activation rows: out[k * R + r] = W[k] . x[r].  Each weight block is decoded once per tile
// and each activation block loaded once; every (k, r) sum is formed in the same order for any
// tile shape, so results never depend on the tiling (or on the batch).
template <DType DT, int MW, int R>
void tile_b32(const char* w, int64_t wstride, const char* act, int64_t act_row, int64_t nb,
              float* out) {
  const ActBlock32* a[R];
  for (int r = 0; r < R; ++r) a[r] = reinterpret_cast<const ActBlock32*>(act + r * act_row);
#if defined(GN_X86_AVX2)
  __m256 acc[MW][R];
  for (int k = 0; k < MW; ++k) {
    for (int r = 0; r < R; ++r) acc[k][r] = _mm256_setzero_ps();
  }
  for (int64_t i = 0; i < nb; ++i) {
    __m256i wq[MW];
    float dw[MW];
    for (int k = 0; k < MW; ++k) wq[k] = decode_b32<DT>(w + k * wstride, i, &dw[k]);
    if constexpr (R == 1) {  // decode streams the weights: fetch the next tile's rows early
      constexpr int64_t kBlock = kB32Bytes<DT>;
      for (int k = 0; k < MW; ++k) {
        _mm_prefetch(w + (MW + k) * wstride + i * kBlock, _MM_HINT_T0);  // never faults
      }
    }
    for (int r = 0; r < R; ++r) {
      for (int k = 0; k < MW; ++k) acc[k][r] = fma_block(wq[k], dw[k], a[r][i], acc[k][r]);
    }
  }
  for (int k = 0; k < MW; ++k) {
    for (int r = 0; r < R; ++r) out[k * R + r] = hsum_f32(acc[k][r]);
  }
#elif defined(GN_ARM_NEON)
  // The AVX2 arithmetic on NEON: lanes 0-3 and 4-7 of a block (the exact int32 sums of products
  // 4l..4l+3, dot4x4_s8), then one fused multiply-add per lane, as below.
  int8_t q[32];
  float32x4_t acc[MW][R][2];
  for (int k = 0; k < MW; ++k) {
    for (int r = 0; r < R; ++r) acc[k][r][0] = acc[k][r][1] = vdupq_n_f32(0.0f);
  }
  for (int64_t i = 0; i < nb; ++i) {
    for (int k = 0; k < MW; ++k) {
      const float dw = block32_int(w + k * wstride, DT, i, q);
      const int8x16_t w0 = vld1q_s8(q), w1 = vld1q_s8(q + 16);
      for (int r = 0; r < R; ++r) {
        const int8x16_t a0 = vld1q_s8(a[r][i].qs), a1 = vld1q_s8(a[r][i].qs + 16);
        const int32x4_t s0 = dot4x4_s8(w0, a0), s1 = dot4x4_s8(w1, a1);
        const float32x4_t sc = vdupq_n_f32(dw * a[r][i].d);
        acc[k][r][0] = vfmaq_f32(acc[k][r][0], sc, vcvtq_f32_s32(s0));
        acc[k][r][1] = vfmaq_f32(acc[k][r][1], sc, vcvtq_f32_s32(s1));
      }
    }
  }
  for (int k = 0; k < MW; ++k) {
    for (int r = 0; r < R; ++r) out[k * R + r] = hsum(Vec{acc[k][r][0], acc[k][r][1]});
  }
#else
  // The AVX2 arithmetic lane by lane: lane l of a block holds the exact integer sum of products
  // 4l..4l+3 (what maddubs + madd leave there), each lane accumulates its fp32 chain with one
  // rounding per block (fmaf), and hsum adds the lanes in the same tree.
  int8_t q[32];
  Vec acc[MW][R];
  for (int k = 0; k < MW; ++k) {
    for (int r = 0; r < R; ++r) acc[k][r] = zero();
  }
  for (int64_t i = 0; i < nb; ++i) {
    for (int k = 0; k < MW; ++k) {
      const float dw = block32_int(w + k * wstride, DT, i, q);
      for (int r = 0; r < R; ++r) {
        float s[8];
        for (int l = 0; l < 8; ++l) {
          int32_t v = 0;
          for (int j = 4 * l; j < 4 * l + 4; ++j) v += q[j] * a[r][i].qs[j];
          s[l] = static_cast<float>(v);
        }
        acc[k][r] = fma(splat(dw * a[r][i].d), load(s), acc[k][r]);
      }
    }
  }
  for (int k = 0; k < MW; ++k) {
    for (int r = 0; r < R; ++r) out[k * R + r] = hsum(acc[k][r]);
  }
#endif
}

#if defined(GN_X86_AVX512)
// Prefill on AVX-512: two weight rows side by side in one zmm (lanes 0-7 row 2p, 8-15 row
// 2p+1) against the activation block broadcast to both halves.  Every lane holds what the
// AVX2 tile above holds for its row (the exact int32 sum of products 4l..4l+3, one fma with
// dw * da per block), with half the instructions.  A group of 4 weight rows is decoded once
// (decode_pairs) and then used for every activation row.  AVX-512 has no vpsignb: the
// activation is negated under the mask of negative weights, which is sign(a, w) wherever
// |w| != 0 (where |w| == 0 the product is 0 either way).
// With VNNI, VPDPBUSD multiplies unsigned by signed bytes and adds each group of 4 products to
// an int32 lane without saturating: the activation goes in as a + 128 (its byte XOR 0x80) and
// the lane starts from -128 * (its 4 weights' sum), which leaves the same exact sum of a * w.
struct PairBlock {
#if defined(GN_X86_AVX512VNNI)
  __m512i wq;      // w of rows 2p (bytes 0-31) and 2p + 1 (bytes 32-63)
  __m512i corr;    // -128 * the sum of each lane's 4 weights
  __m512 dw;       // their block scales, 8 lanes each
#else
  __m512i wabs;    // |w| of rows 2p (bytes 0-31) and 2p + 1 (bytes 32-63)
  __m512 dw;       // their block scales, 8 lanes each
  __mmask64 wneg;  // bytes whose weight is negative
#endif
};
constexpr int kPairs = 2;  // a group of 4 weight rows

// Block i of weight rows 2p, 2p + 1 (rows wstride apart) as a PairBlock.
template <DType DT>
static inline PairBlock decode_pair(const char* w, int64_t wstride, int64_t i, int p) {
  float d0, d1;
  const __m256i w0 = decode_b32<DT>(w + (2 * p) * wstride, i, &d0);
  const __m256i w1 = decode_b32<DT>(w + (2 * p + 1) * wstride, i, &d1);
  const __m512i wq = _mm512_inserti64x4(_mm512_castsi256_si512(w0), w1, 1);
  PairBlock pb;
#if defined(GN_X86_AVX512VNNI)
  pb.wq = wq;
  pb.corr = _mm512_sub_epi32(
      _mm512_setzero_si512(),
      _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(static_cast<char>(0x80)), wq));
#else
  pb.wabs = _mm512_abs_epi8(wq);
  pb.wneg = _mm512_movepi8_mask(wq);
#endif
  pb.dw = _mm512_insertf32x8(_mm512_set1_ps(d0), _mm256_set1_ps(d1), 1);
  return pb;
}

// out[i * kPairs + p] for the blocks i < nb of weight rows 2p, 2p + 1 (rows wstride apart).
template <DType DT>
void decode_pairs(const char* w, int64_t wstride, int64_t nb, PairBlock* out) {
  for (int64_t i = 0; i < nb; ++i) {
    for (int p = 0; p < kPairs; ++p) out[i * kPairs + p] = decode_pair<DT>(w, wstride, i, p);
  }
}

void decode_pairs_any(DType t, const char* w, int64_t wstride, int64_t nb, PairBlock* out) {
  with_b32(t, [&](auto dt) { decode_pairs<decltype(dt)::value>(w, wstride, nb, out); });
}

// out[k * R + r] = W[k] . x[r] for a group of 4 weight rows and R activation rows; pairs(i, p)
// gives block i of pair p (decoded before, or now).
template <int R, class Pairs>
static inline void tile_pairs_of(Pairs&& pairs, const char* act, int64_t act_row, int64_t nb,
                                 float* out) {
  const ActBlock32* a[R];
  for (int r = 0; r < R; ++r) a[r] = reinterpret_cast<const ActBlock32*>(act + r * act_row);
  __m512 acc[kPairs][R];
  for (int p = 0; p < kPairs; ++p) {
    for (int r = 0; r < R; ++r) acc[p][r] = _mm512_setzero_ps();
  }
#if defined(GN_X86_AVX512VNNI)
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
#else
  const __m512i ones = _mm512_set1_epi16(1);
#endif
  for (int64_t i = 0; i < nb; ++i) {
    PairBlock b[kPairs];
    for (int p = 0; p < kPairs; ++p) b[p] = pairs(i, p);
    for (int r = 0; r < R; ++r) {
      const __m512i ab = _mm512_broadcast_i64x4(load32(a[r][i].qs));
      const __m512 da = _mm512_set1_ps(a[r][i].d);
#if defined(GN_X86_AVX512VNNI)
      const __m512i au = _mm512_xor_si512(ab, flip);  // a + 128 as unsigned bytes
#endif
      for (int p = 0; p < kPairs; ++p) {
#if defined(GN_X86_AVX512VNNI)
        const __m512 sv = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(b[p].corr, au, b[p].wq));
#else
        const __m512i as = _mm512_mask_sub_epi8(ab, b[p].wneg, _mm512_setzero_si512(), ab);
        const __m512i p16 = _mm512_maddubs_epi16(b[p].wabs, as);
        const __m512 sv = _mm512_cvtepi32_ps(_mm512_madd_epi16(p16, ones));
#endif
        acc[p][r] = _mm512_fmadd_ps(_mm512_mul_ps(b[p].dw, da), sv, acc[p][r]);
      }
    }
  }
  for (int p = 0; p < kPairs; ++p) {
    for (int r = 0; r < R; ++r) {
      out[(2 * p) * R + r] = hsum_f32(_mm512_castps512_ps256(acc[p][r]));
      out[(2 * p + 1) * R + r] = hsum_f32(_mm512_extractf32x8_ps(acc[p][r], 1));
    }
  }
}

// The 4 weight rows decoded once into pb (nb * kPairs blocks) and met by many activation rows.
template <int R>
void tile_pairs(const PairBlock* pb, const char* act, int64_t act_row, int64_t nb, float* out) {
  tile_pairs_of<R>([pb](int64_t i, int p) { return pb[i * kPairs + p]; }, act, act_row, nb, out);
}

// The same for a batch of 4-7 rows (batched decode): each block decoded in registers and used
// at once, since storing and reloading it would cost more than the one use it gets.
template <DType DT>
void tile_pairs_direct(const char* w, int64_t wstride, const char* act, int64_t act_row,
                       int64_t nb, float* out) {
  constexpr int64_t kBlock = kB32Bytes<DT>;
  tile_pairs_of<4>(
      [w, wstride](int64_t i, int p) {
        // the next group's two rows of this pair, as the one-row decode does (never faults)
        _mm_prefetch(w + (4 + 2 * p) * wstride + i * kBlock, _MM_HINT_T0);
        _mm_prefetch(w + (5 + 2 * p) * wstride + i * kBlock, _MM_HINT_T0);
        return decode_pair<DT>(w, wstride, i, p);
      },
      act, act_row, nb, out);
}

void tile_pairs_direct_any(DType t, const char* w, int64_t wstride, const char* act,
                           int64_t act_row, int64_t nb, float* out) {
  with_b32(t, [&](auto dt) {
    tile_pairs_direct<decltype(dt)::value>(w, wstride, act, act_row, nb, out);
  });
}

// Decode (one activation row) on AVX-512: each weight row's blocks two at a time, block i in
// lanes 0-7 and block i + 1 in lanes 8-15 of one zmm, so that one integer product, one
// convert and one extract serve two blocks; the two fmas stay separate 8-lane steps, so every
// lane's chain is fma_block's, block after block, and the bits are the one-row path's.  The
// activation row is laid out once per call for all weight rows (GemvAct).  With VNNI the
// weights go in unsigned (u = w + off, off = 128 / 8 / 16 for Q8_0 / Q4_0 / Q5_0: the byte
// XOR 0x80, the raw nibbles) against the signed activation, and each lane starts from
// -off * (the sum of its 4 activation bytes), precomputed here once instead of per weight
// block: per pair of blocks the integer side is one XOR (Q8_0), one VPDPBUSD and one convert.
struct GemvAct {
  const ActBlock32* a;   // [nb]: the quantized row (its scales; the odd block's products)
  const int8_t* qs;      // [nb][32]: its bytes, pairs of blocks contiguous
  const int32_t* corr;   // VNNI: [nb][8]: -off * the sum of lane l's 4 bytes
};

// off: what decode_b32_u adds to a block's weights to make them unsigned.
static inline int unsigned_offset(DType t) {
  return t == DType::kQ8_0 ? 128 : (t == DType::kQ4_0 ? 8 : 16);
}

// Block i of a Q8_0/Q4_0/Q5_0 row as 32 unsigned bytes w + unsigned_offset(DT).
template <DType DT>
static inline __m256i decode_b32_u(const void* wrow, int64_t i, float* d) {
  if constexpr (DT == DType::kQ8_0) {
    const BlockQ8_0& b = static_cast<const BlockQ8_0*>(wrow)[i];
    *d = half_to_f32(b.d);
    return _mm256_xor_si256(load32(b.qs), _mm256_set1_epi8(static_cast<char>(0x80)));
  } else if constexpr (DT == DType::kQ4_0) {
    const BlockQ4_0& b = static_cast<const BlockQ4_0*>(wrow)[i];
    *d = half_to_f32(b.d);
    return nibbles_lo_hi(b.qs);
  } else {
    const BlockQ5_0& b = static_cast<const BlockQ5_0*>(wrow)[i];
    *d = half_to_f32(b.d);
    return _mm256_or_si256(nibbles_lo_hi(b.qs), fifth_bits(b.qh));
  }
}

// W's row w . x (nb blocks), prefetching the row after it (rows wstride apart).
template <DType DT>
static float gemv_b32(const char* w, int64_t wstride, const GemvAct& x, int64_t nb) {
  constexpr int64_t kBlock = kB32Bytes<DT>;
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    _mm_prefetch(w + wstride + i * kBlock, _MM_HINT_T0);  // the next row; never faults
    const __m512i xa = _mm512_loadu_si512(x.qs + 32 * i);
    float d0, d1;
#if defined(GN_X86_AVX512VNNI)
    const __m256i u0 = decode_b32_u<DT>(w, i, &d0), u1 = decode_b32_u<DT>(w, i + 1, &d1);
    const __m512i s = _mm512_dpbusd_epi32(_mm512_loadu_si512(x.corr + 8 * i),
                                          _mm512_inserti64x4(_mm512_castsi256_si512(u0), u1, 1), xa);
#else
    const __m256i w0 = decode_b32<DT>(w, i, &d0), w1 = decode_b32<DT>(w, i + 1, &d1);
    const __m512i wq = _mm512_inserti64x4(_mm512_castsi256_si512(w0), w1, 1);
    const __m512i xs = _mm512_mask_sub_epi8(xa, _mm512_movepi8_mask(wq), _mm512_setzero_si512(), xa);
    const __m512i s = _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_abs_epi8(wq), xs),
                                        _mm512_set1_epi16(1));
#endif
    const __m512 sv = _mm512_cvtepi32_ps(s);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d0 * x.a[i].d), _mm512_castps512_ps256(sv), acc);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d1 * x.a[i + 1].d), _mm512_extractf32x8_ps(sv, 1), acc);
  }
  if (i < nb) {  // an odd block count: the last block alone, as the AVX2 path does it
    float d0;
    const __m256i wq = decode_b32<DT>(w, i, &d0);
    acc = fma_block(wq, d0, x.a[i], acc);
  }
  return hsum_f32(acc);
}

// The activation row act (nb ActBlock32) laid out for gemv_b32 with weight type t in qs and
// corr (nb * 32 bytes, nb * 8 int32; corr null without VNNI, which needs none).
static GemvAct gemv_act(DType t, const ActBlock32* act, int64_t nb, int8_t* qs, int32_t* corr) {
  const int off = unsigned_offset(t);
  for (int64_t i = 0; i < nb; ++i) {
    std::memcpy(qs + 32 * i, act[i].qs, 32);
    for (int l = 0; l < 8 && corr != nullptr; ++l) {
      int32_t s = 0;
      for (int j = 4 * l; j < 4 * l + 4; ++j) s += act[i].qs[j];
      corr[8 * i + l] = -off * s;
    }
  }
  return {act, qs, corr};
}

#endif

#if defined(GN_X86_AVX2) && !defined(GN_X86_AVX512)
// Prefill on AVX2: a group of kRowGroup weight rows is decoded once (signed bytes and |w|) and
// then met by every activation row, kActRows at a time.  Per pair and block the arithmetic is
// fma_block's (sign, maddubs, madd, cvt, then one fma with dw * dA), so every lane holds the
// same exact int32 partial sum and every output the same bits as tile_b32.  What goes is the
// weight decoding per 4 activation rows (~12 vector instructions per Q5_0 block) and the scale
// product per pair: a tile's dw * dA products are formed 8 activation rows per vmulps (the
// activation scales are kept transposed, [block][row]) and broadcast from memory in the loop.
// On Zen 3 sign, maddubs, madd, mul and fma share two pipes, so the products were a fifth of
// the bottleneck's work.
struct RowBlock {
  __m256i w;     // the 32 signed weights of one block
  __m256i wabs;  // sign(w, w): |w| as unsigned bytes
};
constexpr int kRowGroup = 4;  // weight rows decoded together
constexpr int kActRows = 3;   // activation rows per tile (<= 8)

// rb[i * kRowGroup + k], dw[i * kRowGroup + k] = block i of weight row k (rows wstride apart).
template <DType DT>
void decode_rows(const char* w, int64_t wstride, int64_t nb, RowBlock* rb, float* dw) {
  for (int64_t i = 0; i < nb; ++i) {
    for (int k = 0; k < kRowGroup; ++k) {
      const __m256i q = decode_b32<DT>(w + k * wstride, i, &dw[i * kRowGroup + k]);
      rb[i * kRowGroup + k] = RowBlock{q, _mm256_sign_epi8(q, q)};
    }
  }
}

void decode_rows_any(DType t, const char* w, int64_t wstride, int64_t nb, RowBlock* rb,
                     float* dw) {
  with_b32(t, [&](auto dt) { decode_rows<decltype(dt)::value>(w, wstride, nb, rb, dw); });
}

// out[k * R + r] = W[k] . x[r] for the kRowGroup decoded weight rows and R activation rows.
// daT[i * ldt + r]: activation row r's block-i scale (8 readable floats from each row start);
// sc: scratch for nb * kRowGroup * 8 floats, 32-byte aligned.
template <int R>
void tile_rows(const RowBlock* rb, const float* dw, const char* act, int64_t act_row,
               const float* daT, int64_t ldt, int64_t nb, float* sc, float* out) {
  static_assert(R <= 8, "one vmulps forms the scale products of up to 8 activation rows");
  for (int64_t i = 0; i < nb; ++i) {
    const __m256 da = _mm256_loadu_ps(daT + i * ldt);
    for (int k = 0; k < kRowGroup; ++k) {
      _mm256_store_ps(sc + (i * kRowGroup + k) * 8,
                      _mm256_mul_ps(_mm256_set1_ps(dw[i * kRowGroup + k]), da));
    }
  }
  const ActBlock32* a[R];
  for (int r = 0; r < R; ++r) a[r] = reinterpret_cast<const ActBlock32*>(act + r * act_row);
  __m256 acc[kRowGroup][R];
  for (int k = 0; k < kRowGroup; ++k) {
    for (int r = 0; r < R; ++r) acc[k][r] = _mm256_setzero_ps();
  }
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t i = 0; i < nb; ++i) {
    const RowBlock* b = rb + i * kRowGroup;
    const float* si = sc + i * kRowGroup * 8;
    for (int r = 0; r < R; ++r) {
      const __m256i aq = load32(a[r][i].qs);
      for (int k = 0; k < kRowGroup; ++k) {
        const __m256i p16 = _mm256_maddubs_epi16(b[k].wabs, _mm256_sign_epi8(aq, b[k].w));
        const __m256 s = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
        acc[k][r] = _mm256_fmadd_ps(_mm256_broadcast_ss(si + k * 8 + r), s, acc[k][r]);
      }
    }
  }
  for (int k = 0; k < kRowGroup; ++k) {
    for (int r = 0; r < R; ++r) out[k * R + r] = hsum_f32(acc[k][r]);
  }
}
#endif

#if defined(GN_X86_AVX2)
// sum of 16 int16 products a[g] * b[g] (exact: |products| < 2^31 / 16 for these operands).
static inline int32_t dot16_i16(__m256i a, __m256i b) { return hsum_i32(_mm256_madd_epi16(a, b)); }
static inline __m256i load_bsums(const ActBlock256& a) { return load32(a.bsums); }

// One Q4_K super-block unpacked for the integer products: q[j] holds sub-block j's 32 unsigned
// nibbles, mul[j] its 6-bit scale as int16 in every lane, mins the 8 mins as int16 pairs
// (m0 m0 m1 m1 ...) against the activation's 16-value sums.
struct Q4KBlock {
  __m256i q[8], mul[8], mins;
  float d, dmin;
};
static inline void unpack_kquant(const BlockQ4_K& b, Q4KBlock& u) {
  u.d = half_to_f32(b.d);
  u.dmin = half_to_f32(b.dmin);
  // q4k_scale_min's unpacking, four sub-blocks per 32-bit word: bytes 0-3 hold scales 0-3 and
  // 4-7 mins 0-3 (6 bits each); bytes 8-11 the low 4 bits of scales / mins 4-7, whose top two
  // bits are bits 6-7 of bytes 0-3 / 4-7.
  uint32_t s0, s1, s2;
  std::memcpy(&s0, b.scales, 4);
  std::memcpy(&s1, b.scales + 4, 4);
  std::memcpy(&s2, b.scales + 8, 4);
  const uint64_t sc8 = (s0 & 0x3F3F3F3Fu) |
                       static_cast<uint64_t>((s2 & 0x0F0F0F0Fu) | ((s0 >> 2) & 0x30303030u)) << 32;
  const uint64_t mn8 = (s1 & 0x3F3F3F3Fu) |
                       static_cast<uint64_t>(((s2 >> 4) & 0x0F0F0F0Fu) | ((s1 >> 2) & 0x30303030u))
                           << 32;
  const __m128i mnb = _mm_cvtsi64_si128(static_cast<long long>(mn8));
  // int16 scales 0-7 in both lanes; scale j is broadcast with a shuffle of bytes 2j, 2j + 1
  const __m256i scales = _mm256_broadcastsi128_si256(
      _mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(sc8))));
  const __m256i m4 = _mm256_set1_epi8(0xF);
  for (int c = 0; c < 4; ++c) {
    const __m256i raw = load32(b.qs + 32 * c);
    u.q[2 * c] = _mm256_and_si256(raw, m4);
    u.q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
  }
  for (int j = 0; j < 8; ++j) {
    u.mul[j] = _mm256_shuffle_epi8(scales,
                                  _mm256_set1_epi16(static_cast<int16_t>(0x0100 + 0x0202 * j)));
  }
  u.mins = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mnb, mnb));
}

// One Q6_K super-block unpacked: q[k] run k's 32 unsigned 6-bit values (0..63), mul[k] the
// int16 scales of its two 16-value groups, scales16 the 16 group scales against the
// activation's 16-value sums (the -32 offset).
struct Q6KBlock {
  __m256i q[8], mul[8], scales16;
  float d;
};
static inline void unpack_kquant(const BlockQ6_K& b, Q6KBlock& u) {
  u.d = half_to_f32(b.d);
  const __m256i m4 = _mm256_set1_epi8(0xF), m2 = _mm256_set1_epi8(3);
  for (int h = 0; h < 2; ++h) {  // halves of 128 values
    const uint8_t* ql = b.ql + 64 * h;
    const __m256i qh = load32(b.qh + 32 * h);
    const __m256i l0 = load32(ql), l1 = load32(ql + 32);
    const auto hi2 = [&](int shift) {
      return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, shift), m2), 4);
    };
    u.q[4 * h + 0] = _mm256_or_si256(_mm256_and_si256(l0, m4), hi2(0));
    u.q[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(l1, m4), hi2(2));
    u.q[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), hi2(4));
    u.q[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), hi2(6));
  }
  const __m128i s8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales));
  u.scales16 = _mm256_cvtepi8_epi16(s8);
  // run k's two groups: scale 2k in the low lane, 2k + 1 in the high one, from the even
  // scales (low lane) and odd scales (high lane) as int16 and one in-lane byte shuffle
  const __m256i eo = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(
      s8, _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15)));
  for (int k = 0; k < 8; ++k) {
    u.mul[k] = _mm256_shuffle_epi8(eo, _mm256_set1_epi16(static_cast<int16_t>(0x0100 + 0x0202 * k)));
  }
}

// Lane r = the sum of v[r]'s eight int32 lanes (exact, so the order is free).
static inline __m256i hsum8x8_i32(const __m256i* v) {
  const __m256i h01 = _mm256_hadd_epi32(v[0], v[1]), h23 = _mm256_hadd_epi32(v[2], v[3]);
  const __m256i h45 = _mm256_hadd_epi32(v[4], v[5]), h67 = _mm256_hadd_epi32(v[6], v[7]);
  const __m256i lo = _mm256_hadd_epi32(h01, h23), hi = _mm256_hadd_epi32(h45, h67);
  return _mm256_add_epi32(_mm256_permute2x128_si256(lo, hi, 0x20),
                          _mm256_permute2x128_si256(lo, hi, 0x31));
}

// The k-quant products for 8 * groups activation rows (act + r * act_row) at once: each
// super-block is unpacked once; per row the integer sums are dot_rows_q4_k's / _q6_k's (exact,
// so they may be added in any order), reduced 8 rows per vector, and the float expression of
// those functions is evaluated 8 rows a vector, the same IEEE operations lane by lane, so every
// row gets the bits the one-row path gives it.  daT[i * ldt + r] is row r's block-i scale.
template <DType T>
void dot8_kquant(const void* wrow, const char* act, int64_t act_row, const float* daT,
                 int64_t ldt, int groups, int64_t nb, float* out) {
  constexpr bool q4k = T == DType::kQ4_K;
  using Block = std::conditional_t<q4k, BlockQ4_K, BlockQ6_K>;
  using Unpacked = std::conditional_t<q4k, Q4KBlock, Q6KBlock>;
  const Block* w = static_cast<const Block*>(wrow);
  __m256 acc[kPanel / 8];
  for (int g = 0; g < groups; ++g) acc[g] = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    Unpacked u;
    unpack_kquant(w[i], u);
    for (int g = 0; g < groups; ++g) {
      const ActBlock256* ar[8];
      for (int r = 0; r < 8; ++r) {
        ar[r] = reinterpret_cast<const ActBlock256*>(act + (8 * g + r) * act_row) + i;
      }
      __m256i v[8];
      __m256 msum = _mm256_setzero_ps();
      if constexpr (q4k) {  // the mins term, then the sums start from 0
        for (int r = 0; r < 8; ++r) v[r] = _mm256_madd_epi16(load_bsums(*ar[r]), u.mins);
        msum = _mm256_cvtepi32_ps(hsum8x8_i32(v));
        for (int r = 0; r < 8; ++r) v[r] = _mm256_setzero_si256();
      } else {  // start from -32 * the offset term: sum (q - 32) a, exact in int32
        for (int r = 0; r < 8; ++r) {
          v[r] = _mm256_sub_epi32(
              _mm256_setzero_si256(),
              _mm256_slli_epi32(_mm256_madd_epi16(load_bsums(*ar[r]), u.scales16), 5));
        }
      }
      for (int j = 0; j < 8; ++j) {
        for (int r = 0; r < 8; ++r) {
          const __m256i p = _mm256_maddubs_epi16(u.q[j], load32(ar[r]->qs + 32 * j));
          v[r] = _mm256_add_epi32(v[r], _mm256_madd_epi16(p, u.mul[j]));
        }
      }
      const __m256 isum = _mm256_cvtepi32_ps(hsum8x8_i32(v));
      const __m256 da = _mm256_loadu_ps(daT + i * ldt + 8 * g);
      __m256 term = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(u.d), da), isum);
      if constexpr (q4k) {
        term = _mm256_sub_ps(term, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(u.dmin), da), msum));
      }
      acc[g] = _mm256_add_ps(acc[g], term);
    }
  }
  for (int g = 0; g < groups; ++g) _mm256_storeu_ps(out + 8 * g, acc[g]);
}
#endif

#if defined(GN_ARM_NEON)
// sum of the 16 products a[l] * b[l] of int8 operands, exact.
static inline int32_t dot16_s8(const int8_t* a, const int8_t* b) {
  return vaddvq_s32(dot4x4_s8(vld1q_s8(a), vld1q_s8(b)));
}
#endif

// Q4_K weights x q8_K activations: per super-block d*dA*sum_j sc_j*dot_j - dmin*dA*sum_j m_j*bsum_j.
// Each super-block is decoded once for all `rows` activation rows (act + r * act_row, r < rows),
// which are summed one after another in the same order whatever `rows` is (batch == singles).
void dot_rows_q4_k(const void* wrow, const char* act, int64_t act_row, int rows, int64_t nb,
                   float* out) {
  const BlockQ4_K* w = static_cast<const BlockQ4_K*>(wrow);
  for (int r = 0; r < rows; ++r) out[r] = 0.0f;
  for (int64_t i = 0; i < nb; ++i) {
    const BlockQ4_K& b = w[i];
#if defined(GN_X86_AVX2)
    Q4KBlock u;
    unpack_kquant(b, u);
    const float d = u.d, dmin = u.dmin;
#else
    int sc[8], mn[8];
    for (int j = 0; j < 8; ++j) q4k_scale_min(j, b.scales, &sc[j], &mn[j]);
    const float d = f16_to_f32(b.d), dmin = f16_to_f32(b.dmin);
    uint8_t u[256];
    unpack_q4_k(b, u);
#endif
    for (int r = 0; r < rows; ++r) {
      const ActBlock256& ar = reinterpret_cast<const ActBlock256*>(act + r * act_row)[i];
#if defined(GN_X86_AVX2)
      const int32_t msum = dot16_i16(load_bsums(ar), u.mins);
      __m256i s32 = _mm256_setzero_si256();
      for (int j = 0; j < 8; ++j) {
        const __m256i p = _mm256_maddubs_epi16(u.q[j], load32(ar.qs + 32 * j));
        s32 = _mm256_add_epi32(s32, _mm256_madd_epi16(p, u.mul[j]));
      }
      const int32_t isum = hsum_i32(s32);
#else
      int32_t msum = 0;
      for (int j = 0; j < 8; ++j) msum += mn[j] * (ar.bsums[2 * j] + ar.bsums[2 * j + 1]);
      int32_t isum = 0;
      for (int j = 0; j < 8; ++j) {
#if defined(GN_ARM_NEON)  // u is 0..15: the same bytes read as int8
        const int8_t* uj = reinterpret_cast<const int8_t*>(u + 32 * j);
        const int32_t s = dot16_s8(uj, ar.qs + 32 * j) + dot16_s8(uj + 16, ar.qs + 32 * j + 16);
#else
        int32_t s = 0;
        for (int l = 0; l < 32; ++l) s += u[32 * j + l] * ar.qs[32 * j + l];
#endif
        isum += sc[j] * s;
      }
#endif
      out[r] += d * ar.d * static_cast<float>(isum) - dmin * ar.d * static_cast<float>(msum);
    }
  }
}

// Q6_K weights x q8_K activations: d*dA*sum_g scale_g * sum (q - 32) * a over 16-value groups.
// The -32 offset is taken out with the activation block sums: sum (q-32) a = sum q a - 32 bsum.
// Rows as in dot_rows_q4_k.
void dot_rows_q6_k(const void* wrow, const char* act, int64_t act_row, int rows, int64_t nb,
                   float* out) {
  const BlockQ6_K* w = static_cast<const BlockQ6_K*>(wrow);
  for (int r = 0; r < rows; ++r) out[r] = 0.0f;
  for (int64_t i = 0; i < nb; ++i) {
    const BlockQ6_K& b = w[i];
#if defined(GN_X86_AVX2)
    Q6KBlock u;
    unpack_kquant(b, u);
    const float d = u.d;
#else
    const float d = f16_to_f32(b.d);
    int8_t q[256];
    unpack_q6_k(b, q);  // already q - 32
#endif
    for (int r = 0; r < rows; ++r) {
      const ActBlock256& ar = reinterpret_cast<const ActBlock256*>(act + r * act_row)[i];
#if defined(GN_X86_AVX2)
      const int32_t off = dot16_i16(load_bsums(ar), u.scales16);
      __m256i s32 = _mm256_setzero_si256();
      for (int k = 0; k < 8; ++k) {
        const __m256i p = _mm256_maddubs_epi16(u.q[k], load32(ar.qs + 32 * k));
        s32 = _mm256_add_epi32(s32, _mm256_madd_epi16(p, u.mul[k]));
      }
      const int32_t isum = hsum_i32(s32) - 32 * off;
#else
      int32_t isum = 0;
      for (int g = 0; g < 16; ++g) {
#if defined(GN_ARM_NEON)
        const int32_t s = dot16_s8(q + 16 * g, ar.qs + 16 * g);
#else
        int32_t s = 0;
        for (int l = 0; l < 16; ++l) s += q[16 * g + l] * ar.qs[16 * g + l];
#endif
        isum += b.scales[g] * s;
      }
#endif
      out[r] += d * ar.d * static_cast<float>(isum);
    }
  }
}

void dot_rows(DType t, const void* wrow, const char* act, int64_t act_row, int rows, int64_t nb,
              float* out) {  // the k-quants (256-value blocks)
  switch (t) {
    case DType::kQ4_K: return dot_rows_q4_k(wrow, act, act_row, rows, nb, out);
    default: return dot_rows_q6_k(wrow, act, act_row, rows, nb, out);
  }
}

// tile_b32 for a run-time weight type and tile shape (MW in 1..4, R in {1, 4}).
template <DType DT>
void tile_b32_dt(int mw, int r, const char* w, int64_t ws, const char* x, int64_t xs, int64_t nb,
                 float* out) {
  if (r == 4) {
    switch (mw) {
      case 1: return tile_b32<DT, 1, 4>(w, ws, x, xs, nb, out);
      default: return tile_b32<DT, 2, 4>(w, ws, x, xs, nb, out);
    }
  }
  switch (mw) {
    case 1: return tile_b32<DT, 1, 1>(w, ws, x, xs, nb, out);
    case 2: return tile_b32<DT, 2, 1>(w, ws, x, xs, nb, out);
    case 3: return tile_b32<DT, 3, 1>(w, ws, x, xs, nb, out);
    default: return tile_b32<DT, 4, 1>(w, ws, x, xs, nb, out);
  }
}

void tile_b32_any(DType t, int mw, int r, const char* w, int64_t ws, const char* x, int64_t xs,
                  int64_t nb, float* out) {
  with_b32(t, [&](auto dt) { tile_b32_dt<decltype(dt)::value>(mw, r, w, ws, x, xs, nb, out); });
}

void qlinear_int8(const LinearArgs& a) {
  const DType t = a.w.dtype;
  const int64_t K = a.w.cols, M = a.w.rows;
  const int64_t nb = K / block_values(t);
  const bool k_quant = block_values(t) == 256;
  const int64_t act_row = nb * (k_quant ? sizeof(ActBlock256) : sizeof(ActBlock32));
  Buf<char> act_buf(a.n * act_row);
  char* act = act_buf.data();
  par_for(a.n, 1, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      if (k_quant) {
        act_q8_k(a.x + n * K, K, reinterpret_cast<ActBlock256*>(act + n * act_row));
      } else {
        act_q8_0(a.x + n * K, K, reinterpret_cast<ActBlock32*>(act + n * act_row));
      }
    }
  });
  const int64_t wrow = row_bytes(t, K);
  const char* wbase = static_cast<const char*>(a.w.data);
#if defined(GN_X86_AVX2)
  // The activation scales as [block][row] for the batch tiles (AVX2's 32-value tiles and the
  // k-quants' 8-row products; +8: a tile reads 8 per block).
#if defined(GN_X86_AVX512)
  const bool scales_t = k_quant && a.n >= 8;
#else
  const bool scales_t = a.n >= (k_quant ? 8 : kActRows);
#endif
  Buf<float> da_t(scales_t ? nb * a.n + 8 : 1);
  if (scales_t) {
    float* dt = da_t.data();
    for (int64_t n = 0; n < a.n; ++n) {
      const char* an = act + n * act_row;
      for (int64_t i = 0; i < nb; ++i) {
        dt[i * a.n + n] = k_quant ? reinterpret_cast<const ActBlock256*>(an)[i].d
                                  : reinterpret_cast<const ActBlock32*>(an)[i].d;
      }
    }
    for (int j = 0; j < 8; ++j) dt[nb * a.n + j] = 0.0f;
  }
#endif
#if defined(GN_X86_AVX512)
  // Decode (1-3 rows) of a 32-value type: each activation row laid out once for gemv_b32.
  const int gemv_rows = !k_quant && a.n < 4 ? static_cast<int>(a.n) : 0;
  Buf<int8_t> gv_qs(gemv_rows * nb * 32 + 1);
#if defined(GN_X86_AVX512VNNI)
  Buf<int32_t> gv_corr(gemv_rows * nb * 8 + 1);
#endif
  GemvAct gv[3];
  for (int n = 0; n < gemv_rows; ++n) {
#if defined(GN_X86_AVX512VNNI)
    int32_t* corr = gv_corr.data() + n * nb * 8;
#else
    int32_t* corr = nullptr;
#endif
    gv[n] = gemv_act(t, reinterpret_cast<const ActBlock32*>(act + n * act_row), nb,
                     gv_qs.data() + n * nb * 32, corr);
  }
#endif
  par_for(M, 16, [&](int64_t m0, int64_t m1) {
    float out[32];  // the largest tile: 4 weight rows x 8 activation rows
#if defined(GN_X86_AVX512)
    if (gemv_rows > 0) {
      with_b32(t, [&](auto dt) {
        for (int64_t m = m0; m < m1; ++m) {
          for (int n = 0; n < gemv_rows; ++n) {
            store_linear(a, n, m, gemv_b32<decltype(dt)::value>(wbase + m * wrow, wrow, gv[n], nb));
          }
        }
      });
      return;
    }
#endif
    // Weight rows [mb, me) one at a time against every activation row (the batch paths'
    // leftover rows).
    [[maybe_unused]] const auto rows_alone = [&](int64_t mb, int64_t me, float* o) {
      for (int64_t m = mb; m < me; ++m) {
        for (int64_t n = 0; n < a.n;) {
          const int r_rows = n + 4 <= a.n ? 4 : 1;
          tile_b32_any(t, 1, r_rows, wbase + m * wrow, wrow, act + n * act_row, act_row, nb, o);
          for (int r = 0; r < r_rows; ++r) store_linear(a, n + r, m, o[r]);
          n += r_rows;
        }
      }
    };
    if (!k_quant) {
#if defined(GN_X86_AVX512)
      if (a.n < 8 && a.n >= 4) {  // 4-7 rows: 4 decoded in registers, then the rest alone
        int64_t m = m0;
        for (; m + 4 <= m1; m += 4) {
          tile_pairs_direct_any(t, wbase + m * wrow, wrow, act, act_row, nb, out);
          for (int k = 0; k < 4; ++k) {
            for (int r = 0; r < 4; ++r) store_linear(a, r, m + k, out[k * 4 + r]);
          }
          for (int64_t n = 4; n < a.n; ++n) {
            tile_b32_any(t, 4, 1, wbase + m * wrow, wrow, act + n * act_row, act_row, nb, out);
            for (int k = 0; k < 4; ++k) store_linear(a, n, m + k, out[k]);
          }
        }
        rows_alone(m, m1, out);  // the last 1-3 rows of the range
        return;
      }
      if (a.n >= 4) {  // batches: each group of 4 weight rows decoded once, then every row
        Buf<PairBlock> pb(nb * kPairs);
        int64_t m = m0;
        for (; m + 4 <= m1; m += 4) {
          decode_pairs_any(t, wbase + m * wrow, wrow, nb, pb.data());
          for (int64_t n = 0; n < a.n;) {
            const int r_rows = n + 8 <= a.n ? 8 : (n + 4 <= a.n ? 4 : 1);
            const char* an = act + n * act_row;
            if (r_rows == 8) tile_pairs<8>(pb.data(), an, act_row, nb, out);
            else if (r_rows == 4) tile_pairs<4>(pb.data(), an, act_row, nb, out);
            else tile_pairs<1>(pb.data(), an, act_row, nb, out);
            for (int k = 0; k < 4; ++k) {
              for (int r = 0; r < r_rows; ++r) store_linear(a, n + r, m + k, out[k * r_rows + r]);
            }
            n += r_rows;
          }
        }
        rows_alone(m, m1, out);  // the last 1-3 rows of the range
        return;
      }
#elif defined(GN_X86_AVX2)
      if (a.n >= kActRows) {  // batches: each group of weight rows decoded once, then every row
        Buf<RowBlock> rb(nb * kRowGroup);
        Buf<float> dw(nb * kRowGroup), sc(nb * kRowGroup * 8);
        int64_t m = m0;
        for (; m + kRowGroup <= m1; m += kRowGroup) {
          decode_rows_any(t, wbase + m * wrow, wrow, nb, rb.data(), dw.data());
          for (int64_t n = 0; n < a.n;) {
            const int r_rows = n + kActRows <= a.n ? kActRows : 1;
            const char* an = act + n * act_row;
            const float* dn = da_t.data() + n;
            if (r_rows == kActRows) {
              tile_rows<kActRows>(rb.data(), dw.data(), an, act_row, dn, a.n, nb, sc.data(), out);
            } else {
              tile_rows<1>(rb.data(), dw.data(), an, act_row, dn, a.n, nb, sc.data(), out);
            }
            for (int k = 0; k < kRowGroup; ++k) {
              for (int r = 0; r < r_rows; ++r) store_linear(a, n + r, m + k, out[k * r_rows + r]);
            }
            n += r_rows;
          }
        }
        rows_alone(m, m1, out);  // the last 1-3 rows of the range
        return;
      }
#endif
      // Decode (n < 4; AVX2, scalar and NEON here, the AVX-512 sets took gemv_b32 above)
      // streams the weights from memory.  Rows shorter than 4 KiB go one at a time, a single
      // sequential stream per thread: in tiles of 4 such rows each 4-row run is four short
      // streams the prefetchers must pick up anew (AMD EPYC Zen 3, 2 threads,
      // cold Q8_0: K = 640 22 -> 24-28 GB/s, 1280 24 -> 30-32, the 270M GGUF's 262144 x 640
      // logits matrix 22 -> 30, decode 69-73 -> 78-81 tok/s); longer rows keep 4-row tiles
      // (K = 7680: 28 GB/s against 22 one at a time).  Prefill: 2 x 4 tiles; then the edges.
      // (The weight type is resolved once per range, so that the tiles inline into the loop:
      // a decode calls them once per weight row.)
      const int mw = a.n < 4 ? (wrow < 4096 ? 1 : 4) : 2;
      with_b32(t, [&](auto dt) {
        for (int64_t n0 = 0; n0 < a.n; n0 += kPanel) {
          const int64_t n1 = min64(a.n, n0 + kPanel);
          for (int64_t m = m0; m < m1; m += mw) {
            const int k_rows = static_cast<int>(min64(mw, m1 - m));
            for (int64_t n = n0; n < n1;) {
              const int r_rows = n + 4 <= n1 ? 4 : 1;
              tile_b32_dt<decltype(dt)::value>(k_rows, r_rows, wbase + m * wrow, wrow,
                                               act + n * act_row, act_row, nb, out);
              for (int k = 0; k < k_rows; ++k) {
                for (int r = 0; r < r_rows; ++r) store_linear(a, n + r, m + k, out[k * r_rows + r]);
              }
              n += r_rows;
            }
          }
        }
      });
      return;
    }
    float outk[kPanel];
    for (int64_t n0 = 0; n0 < a.n; n0 += kPanel) {
      const int rows = static_cast<int>(min64(a.n, n0 + kPanel) - n0);
      for (int64_t m = m0; m < m1; ++m) {
        const char* wm = wbase + m * wrow;
        int done = 0;
#if defined(GN_X86_AVX2)
        if (scales_t && rows >= 8) {  // 8 rows a vector, then the one-row path for the rest
          const int groups = rows / 8;
          const auto dot8 = t == DType::kQ4_K ? dot8_kquant<DType::kQ4_K> : dot8_kquant<DType::kQ6_K>;
          dot8(wm, act + n0 * act_row, act_row, da_t.data() + n0, a.n, groups, nb, outk);
          done = 8 * groups;
        }
#endif
        if (done < rows) {
          dot_rows(t, wm, act + (n0 + done) * act_row, act_row, rows - done, nb, outk + done);
        }
        for (int r = 0; r < rows; ++r) store_linear(a, n0 + r, m, outk[r]);
      }
    }
  });
}

void qlinear_f32(const LinearArgs& a) {
  const DType t = a.w.dtype;
  const int64_t K = a.w.cols, M = a.w.rows;
  const int64_t wrow = row_bytes(t, K);
  const uint8_t* wbase = static_cast<const uint8_t*>(a.w.data);
  par_for(M, 16, [&](int64_t m0, int64_t m1) {
    Buf<float> buf(K);
    for (int64_t m = m0; m < m1; ++m) {
      dequantize_row(wbase + m * wrow, t, K, buf.data());
      for (int64_t n = 0; n < a.n; ++n) {
        store_linear(a, n, m, dot_linear<DType::kF32>(buf.data(), a.x + n * K, K));
      }
    }
  });
}

}  // namespace

void quantize_act(const float* x, int64_t k, int block, void* out) {
  if (block == 256) {
    act_q8_k(x, k, static_cast<ActBlock256*>(out));
  } else {
    act_q8_0(x, k, static_cast<ActBlock32*>(out));
  }
}

void qlinear(const LinearArgs& a) {
  if (a.w.dtype == DType::kQ8_0R16) {
    linear_q8_0r16(a);
  } else if (a.w.float_activations) {
    qlinear_f32(a);
  } else {
    qlinear_int8(a);
  }
}

}  // namespace gemma_native::ops::cpu::GN_ISA
