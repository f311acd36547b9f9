// Per-element math shared by the CPU kernels, the CUDA kernels and (via the same formulas) the
// numpy twins in python/gemma_native/reference.py.
//
// Same bits everywhere.  On the host (every CPU kernel set, and the CUDA kernels when they run
// on the SIMT emulator) the transcendental functions below are our own: each is evaluated in
// double precision from IEEE basic operations only (+ - * /, exact bit manipulation) and rounded
// once to float.  No libm call (glibc picks different exp/tanh/sin code paths on different CPUs,
// and other C libraries differ outright) and no fused multiply-add (the build passes
// -ffp-contract=off), so every machine, compiler and kernel set gets identical results.  The
// double evaluation is accurate to ~1e-15 relative, so the float results are correctly rounded
// except in rare near-halfway cases -- and even those round the same way everywhere.
// On a GPU (__CUDA_ARCH__) the activation functions use CUDA's fast float functions instead:
// device results agree with the CPU to float rounding, not bit for bit (docs/cuda.md).
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "gemma_native/common.h"

namespace gemma_native {
namespace pm {  // portable math: double evaluation, one rounding

// The bits of a double and back (memcpy on the host; the intrinsics on a GPU, where a memcpy
// would go through local memory).
GN_HD uint64_t bits_of(double x) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint64_t>(__double_as_longlong(x));
#else
  uint64_t b;
  memcpy(&b, &x, sizeof b);
  return b;
#endif
}
GN_HD double double_of(uint64_t b) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(b));
#else
  double x;
  memcpy(&x, &b, sizeof x);
  return x;
#endif
}

// 1 / i! for i = 0..13, rounded once (i! is exact in double).
struct InvFactorials {
  double v[14];
  constexpr InvFactorials() : v() {
    double f = 1.0;
    for (int i = 0; i < 14; ++i) {
      if (i > 0) f *= i;
      v[i] = 1.0 / f;
    }
  }
};

// e^x for any x (NaN propagates); arguments outside [-708, 709] are clamped (the result is
// then below 1e-307 or above 1e307: 0 or inf once rounded to float).  The Taylor series of e^r
// runs to r^Degree: 13 (the default) gives ~2e-16 relative error, 10 gives at most 3.1e-13 (the GELU's
// choice, far below a float's rounding).  Branch-free (the clamps are selects, 2^k is built
// from the bits of the rounding) so that loops calling it vectorize.
template <int Degree = 13>
GN_HD double exp_d(double x) {
  static_assert(Degree >= 1 && Degree <= 13, "exp_d: series degree 1..13");
  constexpr InvFactorials inv{};
  x = x < -708.0 ? -708.0 : (x > 709.0 ? 709.0 : x);
  const double log2e = 1.4426950408889634;           // 1 / ln 2
  const double ln2_hi = 6.93147180369123816490e-01;  // ln 2 in 32 bits: k * ln2_hi is exact
  const double ln2_lo = 1.90821492927058770002e-10;  // ln 2 - ln2_hi
  const double magic = 6755399441055744.0;           // 1.5 * 2^52: rounds to an integer
  const double t = x * log2e + magic;                // k = round(x / ln 2) in the low bits
  const double k = t - magic;
  const double r = (x - k * ln2_hi) - k * ln2_lo;    // |r| <= ~0.347
  // Horner form; truncation < 1e-18 relative on |r| <= 0.35 at degree 13.
  double p = inv.v[Degree];
  for (int i = Degree - 1; i >= 0; --i) p = p * r + inv.v[i];
  // 2^k: k in [-1022, 1023] sits in the low bits of t as a two's complement offset.
  return p * double_of((bits_of(t) - bits_of(magic) + 1023) << 52);
}

// The sampler's weight of logit l: exp_d<kSampleExpDegree>((l - lmax) * inv_t), 0 where that
// argument is below -708 (e^-708 ~ 3e-308 of the most likely id's weight) or NaN.  The CPU
// sampler's scalar code and the vector code of its per-ISA row pass (which repeats exp_d's
// steps on GCC vectors) give the same bits; the numpy twin is reference._weights.
constexpr int kSampleExpDegree = 10;
GN_HD double sample_weight(float l, double lmax, double inv_t) {
  const double a = (static_cast<double>(l) - lmax) * inv_t;
  return a >= -708.0 ? exp_d<kSampleExpDegree>(a) : 0.0;
}

// log(1 + y) for y >= 0 (also correct for y in (-0.25, 0)); relative error ~1e-15.
GN_HD double log1p_d(double y) {
  if (!(y <= 1.7e308)) return y;  // NaN, +inf
  const double ay = y < 0.0 ? -y : y;
  if (ay < 1e-4) {  // series: the next term is below 1e-24 relative
    return y * (1.0 - y * (0.5 - y * (1.0 / 3.0 - y * (0.25 - y * 0.2))));
  }
  // u = 1 + y = m * 2^e with m in [sqrt(1/2), sqrt(2)); log u = e ln 2 + 2 atanh(s),
  // s = (m - 1) / (m + 1) (m - 1 is exact), |s| <= 0.172.
  const double u = 1.0 + y;
  uint64_t bits = bits_of(u);
  int64_t e = static_cast<int64_t>((bits >> 52) & 0x7ff) - 1023;
  double m = double_of((bits & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL);  // in [1, 2)
  if (m > 1.4142135623730951) {
    m *= 0.5;
    e += 1;
  }
  // When u was rounded (y < 2^-52 relative to 1 never reaches here), log u differs from
  // log1p(y) by the rounding of 1 + y; add it back to first order: c = (y - (u - 1)) / u.
  const double c = (y - (u - 1.0)) / u;
  const double s = (m - 1.0) / (m + 1.0);
  const double z = s * s;
  double q = 1.0 / 23.0;  // 2 atanh(s) = 2 s (1 + z/3 + z^2/5 + ... ), to z^11 (< 1e-18)
  q = q * z + 1.0 / 21.0;
  q = q * z + 1.0 / 19.0;
  q = q * z + 1.0 / 17.0;
  q = q * z + 1.0 / 15.0;
  q = q * z + 1.0 / 13.0;
  q = q * z + 1.0 / 11.0;
  q = q * z + 1.0 / 9.0;
  q = q * z + 1.0 / 7.0;
  q = q * z + 1.0 / 5.0;
  q = q * z + 1.0 / 3.0;
  const double log_m = 2.0 * s + 2.0 * s * (z * q);
  const double ed = static_cast<double>(e);
  return ed * 6.93147180369123816490e-01 + (log_m + (ed * 1.90821492927058770002e-10 + c));
}

// tanh(x) for any x (NaN propagates); relative error ~1e-15.  Both formulas are evaluated and
// one selected, so that loops calling it vectorize.
GN_HD double tanh_d(double x) {
  const double a = x < 0.0 ? -x : x;
  // |x| < 1/16: odd series to x^13 (the next term is < 1e-17 relative):
  // tanh a = a - a z (1/3 - 2z/15 + 17z^2/315 - ...), z = a^2.
  const double z = a * a;
  double q = -21844.0 / 6081075.0;
  q = q * z + 1382.0 / 155925.0;
  q = q * z - 62.0 / 2835.0;
  q = q * z + 17.0 / 315.0;
  q = q * z - 2.0 / 15.0;
  q = q * z + 1.0 / 3.0;
  const double series = a - a * (z * q);
  // otherwise (e - 1) / (e + 1) with e = e^(2a), which is 1 in double from a ~ 19 on.
  const double e = exp_d(2.0 * (a < 20.0 ? a : 20.0));
  const double t = a < 0.0625 ? series : (a < 20.0 ? (e - 1.0) / (e + 1.0) : 1.0);
  return x != x ? x : (x < 0.0 ? -t : t);
}

// sin and cos of theta for |theta| < 2^35 (larger arguments lose accuracy but stay
// deterministic).  Cody-Waite reduction by pi/2 in four pieces (the first three of 18 bits, so
// k * piece is exact for |k| < 2^35), then Taylor polynomials on [-pi/4, pi/4].
GN_HD void sincos_d(double theta, double* s_out, double* c_out) {
  const double magic = 6755399441055744.0;  // 1.5 * 2^52: rounds to an integer
  const double k = (theta * 0.63661977236758134308 + magic) - magic;  // theta * 2 / pi
  const double p1 = 1.5707931518554688;                           // pi/2 = p1 + p2 + p3 + p4
  const double p2 = 3.1749368645250797e-06;
  const double p3 = 2.5633384304057927e-12;
  const double p4 = 5.721188726109832e-18;
  const double r = (((theta - k * p1) - k * p2) - k * p3) - k * p4;
  const double z = r * r;
  double ps = -1.0 / 1307674368000.0;  // sin r = r (1 - z/3! + z^2/5! - ... ), to r^15
  ps = ps * z + 1.0 / 6227020800.0;
  ps = ps * z - 1.0 / 39916800.0;
  ps = ps * z + 1.0 / 362880.0;
  ps = ps * z - 1.0 / 5040.0;
  ps = ps * z + 1.0 / 120.0;
  ps = ps * z - 1.0 / 6.0;
  const double sr = r + r * (z * ps);
  double pc = 1.0 / 20922789888000.0;  // cos r = 1 - z/2! + z^2/4! - ... , to r^16
  pc = pc * z - 1.0 / 87178291200.0;
  pc = pc * z + 1.0 / 479001600.0;
  pc = pc * z - 1.0 / 3628800.0;
  pc = pc * z + 1.0 / 40320.0;
  pc = pc * z - 1.0 / 720.0;
  pc = pc * z + 1.0 / 24.0;
  pc = pc * z - 0.5;
  const double cr = 1.0 + z * pc;
  const int64_t q = static_cast<int64_t>(k) & 3;  // quadrant (two's complement: k mod 4)
  const double s = q == 0 ? sr : (q == 1 ? cr : (q == 2 ? -sr : -cr));
  const double c = q == 0 ? cr : (q == 1 ? -sr : (q == 2 ? -cr : sr));
  *s_out = s;
  *c_out = c;
}

// base^e for base >= 1 and 0 <= e <= 1 (RoPE's frequencies): exp(e log base) in double.
GN_HD double pow_d(double base, double e) { return exp_d(e * log1p_d(base - 1.0)); }

}  // namespace pm

// e^x in float (NaN propagates; overflow gives inf, underflow 0).
GN_HD float exp_f(float x) {
  return static_cast<float>(pm::exp_d(x));
}

// GeLU, tanh approximation (all Gemma-family MLPs and the Griffin y-branch).
GN_HD float gelu_tanh(float x) {
#if defined(__CUDA_ARCH__)
  const float k0 = 0.7978845608028654f;  // sqrt(2 / pi)
  const float k1 = 0.044715f;
  return 0.5f * x * (1.0f + tanhf(k0 * (x + k1 * x * x * x)));
#else
  // 0.5 x (1 + tanh u) = x sigmoid(2u), without the cancellation of 1 + tanh u for negative u.
  // With e = e^(-2|u|) in (0, 1]: sigmoid(2u) = 1 / (1 + e) for u >= 0 and e / (1 + e) for
  // u < 0, so the divisor 1 + e always lies in [1, 2].  Its reciprocal is a float division (a
  // 24-bit seed, exact IEEE arithmetic, so the same everywhere) refined by one Newton step in
  // double (relative error < 2e-14, far below the final float rounding), which is several
  // times cheaper than a vector double division; e uses exp_d's shorter series.  The result is
  // within one float ulp (tests/ops/test_kernel_sets.py) and bit-identical on every kernel set.
  const double xd = x;
  const double u = 0.7978845608028654 * (xd + 0.044715 * (xd * xd * xd));
  const double e = pm::exp_d<10>(-2.0 * (u < 0.0 ? -u : u));  // in (0, 1]
  const double y = 1.0 + e;
  const double r0 = static_cast<double>(1.0f / static_cast<float>(y));
  const double inv = r0 + r0 * (1.0 - y * r0);
  const float g = static_cast<float>(xd * ((u < 0.0 ? e : 1.0) * inv));
  return x != x ? x : g;  // NaN: the input itself on every kernel set (a select: vectorizes)
#endif
}

GN_HD float sigmoid(float x) {
#if defined(__CUDA_ARCH__)
  return 1.0f / (1.0f + expf(-x));
#else
  return static_cast<float>(1.0 / (1.0 + pm::exp_d(-static_cast<double>(x))));  // NaN -> NaN
#endif
}

// log(1 + e^x) without overflow for large x.
GN_HD float softplus(float x) {
#if defined(__CUDA_ARCH__)
  return x > 20.0f ? x : log1pf(expf(x));
#else
  if (x != x) return x;
  return x > 20.0f ? x : static_cast<float>(pm::log1p_d(pm::exp_d(x)));
#endif
}

GN_HD float soft_cap(float x, float cap) {
#if defined(__CUDA_ARCH__)
  return cap * tanhf(x / cap);
#else
  const double c = cap;
  return static_cast<float>(c * pm::tanh_d(static_cast<double>(x) / c));
#endif
}

// RoPE's inverse frequency of pair d: 1 / base^(2d / rot_dims) in fp32, the exponent formed in
// fp32 as Hugging Face does, the power in double and rounded once, then divided by the linear
// scaling factor.  Shared by the CPU and CUDA kernels so both get the same frequencies.
GN_HD float rope_inv_freq(float base, int64_t d, int64_t rot_dims, float linear_factor) {
  const float exponent = static_cast<float>(2 * d) / static_cast<float>(rot_dims);
  const float power = static_cast<float>(pm::pow_d(base, exponent));
  float inv_freq = 1.0f / power;
  if (linear_factor != 1.0f) inv_freq = inv_freq / linear_factor;
  return inv_freq;
}

}  // namespace gemma_native
