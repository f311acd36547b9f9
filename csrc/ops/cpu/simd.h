// A minimal SIMD vocabulary for the CPU kernels, one definition per ISA.  Included only by
// kernel files, which are compiled once per ISA with GN_ISA naming the namespace; everything
// here lives in that namespace (or is static) so the copies never meet at link time.
//
// One arithmetic for every kernel set.  A Vec is kLanes = 8 fp32 lanes in *every* set: a
// __m256 on AVX2 and on AVX-512 (which brings ymm16-31 and its integer instructions, not wider
// reductions), two 4-lane registers on aarch64 NEON, and a struct of 8 floats on the scalar
// baseline.  Every float reduction runs over these 8 lanes in the same order, fma rounds once
// everywhere (fmaf on the baseline, FMLA on NEON), and hsum adds the lanes in one fixed tree, so
// the scalar, AVX2, AVX-512 and NEON kernels give bit-identical
// results.  (A wider register may hold the lanes of several outputs, never more lanes of one.)
// Plain float code outside Vec must not be contracted into FMAs either: the build passes
// -ffp-contract=off to every C++ file.
//
//   Vec          8 fp32 lanes; load/store fp32; load_w<DT>(p, i) widens 8 weights of dtype DT
//   fma(a,b,c)   a*b + c rounded once;  hsum(v) = ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7))
//   vmax(a,b)    a > b ? a : b per lane (so a NaN in a is passed over, as MAXPS does)
#pragma once

// GN_X86_AVX2 / GN_X86_AVX512 / GN_X86_AVX512VNNI say which x86 SIMD code a kernel file
// compiles: from the compiler's ISA flags, or, for the emulated AVX-512 sets (GN_SIMDE_AVX512,
// with GN_SIMDE_VNNI for the VNNI one; CMakeLists.txt), from SIMDe's portable implementation of
// the same intrinsics, so that the AVX-512 code paths run (slowly) on any CPU and the tests
// check their logic on machines without AVX-512.
#if defined(GN_SIMDE_AVX512)
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include <simde/x86/f16c.h>
#include <simde/x86/fma.h>
#include <string.h>
#define GN_X86_AVX2 1
#define GN_X86_AVX512 1
#if defined(GN_SIMDE_VNNI)
#define GN_X86_AVX512VNNI 1
#endif
// SIMDe's portable fmadd multiplies, rounds, then adds; the instruction rounds once.  Our
// kernels' bit-identity across sets rests on the single rounding, so the emulated set computes
// each lane with fmaf (exact by the C standard, in software where the CPU has no FMA).
template <class V, int N>
static inline V gn_emu_fmadd(V a, V b, V c) {
  float x[N], y[N], z[N];
  static_assert(sizeof(V) == sizeof x, "gn_emu_fmadd: N lanes of float");
  memcpy(x, &a, sizeof x);
  memcpy(y, &b, sizeof y);
  memcpy(z, &c, sizeof z);
  for (int i = 0; i < N; ++i) z[i] = __builtin_fmaf(x[i], y[i], z[i]);
  memcpy(&c, z, sizeof z);
  return c;
}
#undef _mm256_fmadd_ps
#undef _mm512_fmadd_ps
#define _mm256_fmadd_ps(a, b, c) gn_emu_fmadd<simde__m256, 8>(a, b, c)
#define _mm512_fmadd_ps(a, b, c) gn_emu_fmadd<simde__m512, 16>(a, b, c)
#elif defined(__AVX2__)
#include <immintrin.h>
#define GN_X86_AVX2 1
#if defined(__AVX512F__)
#define GN_X86_AVX512 1
#endif
#if defined(__AVX512VNNI__)
#define GN_X86_AVX512VNNI 1
#endif
#elif defined(GN_ARM_NEON_SET)
// The aarch64 NEON set (CMakeLists.txt defines GN_ARM_NEON_SET for it; NEON is part of every
// ARMv8-A core, so it needs no compiler flag).  GN_ARM_DOTPROD marks the copy built with the
// dot-product extension (SDOT), used by the int8 block products.
#include <arm_neon.h>
#define GN_ARM_NEON 1
#endif

#include <cstdint>
#include <new>
#include <type_traits>

#include "gemma_native/dtype.h"
#include "ops/cpu/threadpool.h"

#ifndef GN_ISA
#error "simd.h is for kernel files compiled per ISA (GN_ISA must be defined)"
#endif

namespace gemma_native::ops::cpu::GN_ISA {

constexpr int kLanes = 8;

#if defined(GN_X86_AVX2)  // the AVX2 and AVX-512 sets (native or emulated)
using Vec = __m256;
static inline Vec zero() { return _mm256_setzero_ps(); }
static inline Vec splat(float x) { return _mm256_set1_ps(x); }
static inline Vec load(const float* p) { return _mm256_loadu_ps(p); }
static inline void store(float* p, Vec v) { _mm256_storeu_ps(p, v); }
static inline Vec fma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
static inline Vec mul(Vec a, Vec b) { return _mm256_mul_ps(a, b); }
static inline Vec add(Vec a, Vec b) { return _mm256_add_ps(a, b); }
static inline Vec vmax(Vec a, Vec b) { return _mm256_max_ps(a, b); }  // a > b ? a : b per lane
static inline float hsum(Vec v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));  // l_i + l_i+4
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));  // s0 + s2, s1 + s3
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
static inline Vec load_bf16(const uint16_t* p) {
  __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
static inline Vec load_f16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
#elif defined(GN_ARM_NEON)  // two 4-lane NEON registers: lanes 0-3 and 4-7
struct Vec {
  float32x4_t lo, hi;
};
static inline Vec zero() { return Vec{vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)}; }
static inline Vec splat(float x) { return Vec{vdupq_n_f32(x), vdupq_n_f32(x)}; }
static inline Vec load(const float* p) { return Vec{vld1q_f32(p), vld1q_f32(p + 4)}; }
static inline void store(float* p, Vec v) {
  vst1q_f32(p, v.lo);
  vst1q_f32(p + 4, v.hi);
}
// vfmaq_f32(c, a, b) = c + a * b with one rounding (FMLA), like fmaf and VFMADD.
static inline Vec fma(Vec a, Vec b, Vec c) {
  return Vec{vfmaq_f32(c.lo, a.lo, b.lo), vfmaq_f32(c.hi, a.hi, b.hi)};
}
static inline Vec mul(Vec a, Vec b) { return Vec{vmulq_f32(a.lo, b.lo), vmulq_f32(a.hi, b.hi)}; }
static inline Vec add(Vec a, Vec b) { return Vec{vaddq_f32(a.lo, b.lo), vaddq_f32(a.hi, b.hi)}; }
// FMAX returns NaN when either operand is; the other sets pass over a NaN in a, so select.
static inline Vec vmax(Vec a, Vec b) {
  return Vec{vbslq_f32(vcgtq_f32(a.lo, b.lo), a.lo, b.lo),
             vbslq_f32(vcgtq_f32(a.hi, b.hi), a.hi, b.hi)};
}
static inline float hsum(Vec v) {
  const float32x4_t s = vaddq_f32(v.lo, v.hi);             // l_i + l_i+4
  const float32x4_t t = vaddq_f32(s, vextq_f32(s, s, 2));  // s0 + s2, s1 + s3
  return vgetq_lane_f32(t, 0) + vgetq_lane_f32(t, 1);
}
static inline Vec load_bf16(const uint16_t* p) {
  const uint16x8_t u = vld1q_u16(p);
  return Vec{vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(u), 16)),
             vreinterpretq_f32_u32(vshll_high_n_u16(u, 16))};
}
static inline Vec load_f16(const uint16_t* p) {
  const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(p));
  return Vec{vcvt_f32_f16(vget_low_f16(h)), vcvt_high_f32_f16(h)};
}
#else  // the scalar baseline: the same 8 lanes, one after another
struct Vec {
  float l[8];
};
static inline Vec zero() { return Vec{}; }
static inline Vec splat(float x) {
  Vec v;
  for (int i = 0; i < 8; ++i) v.l[i] = x;
  return v;
}
static inline Vec load(const float* p) {
  Vec v;
  for (int i = 0; i < 8; ++i) v.l[i] = p[i];
  return v;
}
static inline void store(float* p, Vec v) {
  for (int i = 0; i < 8; ++i) p[i] = v.l[i];
}
static inline Vec fma(Vec a, Vec b, Vec c) {
  for (int i = 0; i < 8; ++i) c.l[i] = __builtin_fmaf(a.l[i], b.l[i], c.l[i]);
  return c;
}
static inline Vec mul(Vec a, Vec b) {
  for (int i = 0; i < 8; ++i) a.l[i] *= b.l[i];
  return a;
}
static inline Vec add(Vec a, Vec b) {
  for (int i = 0; i < 8; ++i) a.l[i] += b.l[i];
  return a;
}
static inline Vec vmax(Vec a, Vec b) {
  for (int i = 0; i < 8; ++i) a.l[i] = a.l[i] > b.l[i] ? a.l[i] : b.l[i];
  return a;
}
static inline float hsum(Vec v) {
  const float* l = v.l;
  return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}
static inline Vec load_bf16(const uint16_t* p) {
  Vec v;
  for (int i = 0; i < 8; ++i) v.l[i] = bf16_to_f32(p[i]);
  return v;
}
static inline Vec load_f16(const uint16_t* p) {
  Vec v;
  for (int i = 0; i < 8; ++i) v.l[i] = f16_to_f32(p[i]);
  return v;
}
#endif

// kLanes weights of dtype DT starting at element i of w, widened to fp32.
template <DType DT>
static inline Vec load_w(const void* w, int64_t i) {
  if constexpr (DT == DType::kF32) {
    return load(static_cast<const float*>(w) + i);
  } else if constexpr (DT == DType::kBF16) {
    return load_bf16(static_cast<const uint16_t*>(w) + i);
  } else {
    return load_f16(static_cast<const uint16_t*>(w) + i);
  }
}

// The wide register of the register-tiled kernels (gemm.h, block_diag_linear.cc): a zmm of 16
// lanes on AVX-512, Vec elsewhere.  Only per-element operations, each lane a different output,
// so the width never changes a result.
#if defined(GN_X86_AVX512)
using WVec = __m512;
constexpr int kWL = 16;
static inline WVec wzero() { return _mm512_setzero_ps(); }
static inline WVec wload(const float* p) { return _mm512_loadu_ps(p); }
static inline void wstore(float* p, WVec v) { _mm512_storeu_ps(p, v); }
static inline WVec wsplat(float x) { return _mm512_set1_ps(x); }
static inline WVec wfma(WVec a, WVec b, WVec c) { return _mm512_fmadd_ps(a, b, c); }
static inline WVec wadd(WVec a, WVec b) { return _mm512_add_ps(a, b); }
// kWL weights of dtype DT from element i of w, widened exactly (load_w's 16-lane twin).
template <DType DT>
static inline WVec wload_w(const void* w, int64_t i) {
  if constexpr (DT == DType::kF32) {
    return _mm512_loadu_ps(static_cast<const float*>(w) + i);
  } else {
    const __m256i h = _mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + i));
    if constexpr (DT == DType::kBF16) {
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    } else {
      return _mm512_cvtph_ps(h);
    }
  }
}
#else
using WVec = Vec;
constexpr int kWL = kLanes;
static inline WVec wzero() { return zero(); }
static inline WVec wload(const float* p) { return load(p); }
static inline void wstore(float* p, WVec v) { store(p, v); }
static inline WVec wsplat(float x) { return splat(x); }
static inline WVec wfma(WVec a, WVec b, WVec c) { return fma(a, b, c); }
static inline WVec wadd(WVec a, WVec b) { return add(a, b); }
template <DType DT>
static inline WVec wload_w(const void* w, int64_t i) {
  return load_w<DT>(w, i);
}
#endif

// Element i of a weight row of dtype DT as bf16 bits (bf16 as stored; others rounded to
// nearest even): the operand of the bf16 compute mode's GEMMs.
template <DType DT>
static inline uint16_t weight_bf16(const void* w, int64_t i) {
  if constexpr (DT == DType::kBF16) {
    return static_cast<const uint16_t*>(w)[i];
  } else {
    return f32_to_bf16(load_as_f32(w, DT, i));
  }
}

template <DType DT>
static inline float load_w1(const void* w, int64_t i) {
  return load_as_f32(w, DT, i);
}

// sum_i w[i] * x[i] with w of dtype DT: two accumulators over alternating vectors, one more
// vector if left, then the scalar tail (two FMA chains halve the latency of one short dot
// product).  Attention's q.k products (dot_f32) use this order; linear uses dot_linear below.
template <DType DT>
static inline float dot_w(const void* w, const float* x, int64_t k) {
  Vec c0 = zero(), c1 = zero();
  int64_t i = 0;
  for (; i + 2 * kLanes <= k; i += 2 * kLanes) {
    c0 = fma(load_w<DT>(w, i), load(x + i), c0);
    c1 = fma(load_w<DT>(w, i + kLanes), load(x + i + kLanes), c1);
  }
  if (i + kLanes <= k) {
    c0 = fma(load_w<DT>(w, i), load(x + i), c0);
    i += kLanes;
  }
  float s = hsum(add(c0, c1));
  for (; i < k; ++i) s += load_w1<DT>(w, i) * x[i];
  return s;
}

// linear's order (linear.cc, gemm.h): one vector accumulator over the whole kLanes vectors in
// increasing k, hsum, then the scalar tail.  Any kernel whose results must equal linear's bit
// for bit (the float path of qlinear) sums this way.
template <DType DT>
static inline float dot_linear(const void* w, const float* x, int64_t k) {
  Vec c = zero();
  int64_t i = 0;
  for (; i + kLanes <= k; i += kLanes) c = fma(load_w<DT>(w, i), load(x + i), c);
  float s = hsum(c);
  for (; i < k; ++i) s += load_w1<DT>(w, i) * x[i];
  return s;
}

static inline float dot_f32(const float* a, const float* b, int64_t k) {
  return dot_w<DType::kF32>(a, b, k);
}

// Hint that the cache line at p will be read soon (into L2); a no-op on the scalar sets.
static inline void prefetch_l2(const void* p) {
#if defined(__AVX2__)  // a real x86 SIMD set (the emulated one has nothing to prefetch for)
  _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T1);
#elif defined(GN_ARM_NEON)
  __builtin_prefetch(p, 0, 2);
#else
  (void)p;
#endif
}

// Heap arrays for kernels, aligned to a cache line.  A large malloc block starts 16 bytes past
// a page boundary, so without this every 64-byte vector or AMX tile row read from a packed
// buffer straddles two cache lines (that alone cost the AMX GEMM ~40%).  Kernel files use these
// instead of std::vector: the STL's out-of-line template code is shared by every ISA's object at
// link time, so an AVX-512 copy of it could end up on the baseline path; these types live in the
// per-ISA namespace.
static constexpr std::align_val_t kCacheLine{64};
template <class T>
static inline T* alloc_lines(int64_t n) {
  return static_cast<T*>(::operator new[](static_cast<size_t>(n > 0 ? n : 1) * sizeof(T), kCacheLine));
}
template <class T>
static inline void free_lines(T* p) {
  ::operator delete[](p, kCacheLine);
}

// A heap array freed when it goes out of scope (an interrupted parallel_for throws).
template <class T>
struct Buf {
  T* p;
  explicit Buf(int64_t n) : p(alloc_lines<T>(n)) {}
  ~Buf() { free_lines(p); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  T& operator[](int64_t i) { return p[i]; }
  T* data() { return p; }
};

// A buffer kept between calls (thread_local in a kernel), grown on demand; its contents do not
// survive growing.
template <class T>
struct Grow {
  T* p = nullptr;
  int64_t n = 0;
  Grow() = default;
  Grow(const Grow&) = delete;
  Grow& operator=(const Grow&) = delete;
  ~Grow() { free_lines(p); }
  T* get(int64_t m) {
    if (m > n) {
      free_lines(p);
      p = nullptr;
      n = 0;
      p = alloc_lines<T>(m);
      n = m;
    }
    return p;
  }
};

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }
static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// parallel_for over a callable (lambda) without crossing translation units with templates.
template <class F>
static inline void par_for(int64_t n, int64_t min_chunk, F&& f) {
  using Fn = typename std::remove_reference<F>::type;
  parallel_for(
      n, min_chunk,
      [](void* ctx, int64_t b, int64_t e) { (*static_cast<Fn*>(ctx))(b, e); },
      const_cast<void*>(static_cast<const void*>(&f)));
}

// Calls f with the DType as a compile-time constant.
template <class F>
static inline void with_dtype(DType t, F&& f) {
  switch (t) {
    case DType::kBF16: f(std::integral_constant<DType, DType::kBF16>()); break;
    case DType::kF16: f(std::integral_constant<DType, DType::kF16>()); break;
    default: f(std::integral_constant<DType, DType::kF32>()); break;
  }
}

}  // namespace gemma_native::ops::cpu::GN_ISA
