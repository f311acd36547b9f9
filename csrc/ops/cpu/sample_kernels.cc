// The two passes over a whole row of logits that sampling needs (sample.cc does the rest, once,
// at baseline flags): the row's maximum / argmax, and the sum of every id's unnormalized
// probability.  At Gemma 3's 262,144 ids these passes are the whole cost of sampling a token,
// so they are compiled per kernel set.  Both give the same bits on every set: a maximum does
// not depend on order, and the sum runs in a fixed order (8 lanes, then a fixed tree) with
// pm::exp_d, which is IEEE basic operations only.
#include <string.h>

#include "gemma_native/math.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/simd.h"

namespace gemma_native::ops::cpu::GN_ISA {
namespace {

// GCC vectors as wide as this set's registers: 64 bytes where it has AVX-512, 32 on AVX2, 16
// on the baseline (and the emulated sets, built without ISA flags).  GCC's auto-vectorizer
// would stop at 32 bytes (-mprefer-vector-width=256); a vector wider than the registers is
// split badly, so the width follows the set.
#if defined(__AVX512F__)
constexpr int kBytes = 64;
#elif defined(__AVX2__)
constexpr int kBytes = 32;
#else
constexpr int kBytes = 16;
#endif
constexpr int kF = kBytes / 4;  // floats per vector
constexpr int kD = kBytes / 8;  // doubles per vector
typedef float FV __attribute__((vector_size(kBytes)));
typedef int32_t IV __attribute__((vector_size(kBytes)));
typedef float FH __attribute__((vector_size(kBytes / 2)));
typedef double DV __attribute__((vector_size(kBytes)));
typedef int64_t LV __attribute__((vector_size(kBytes)));

template <class V, class T>
inline V splat_v(T v) {
  V r;
  for (size_t j = 0; j < sizeof(V) / sizeof(T); ++j) r[j] = v;
  return r;
}

}  // namespace

int64_t row_argmax(const float* x, int64_t v, float* max_out) {
  // One pass, two independent chains of per-lane (max, first index): a strict > keeps the
  // first index of a value within a lane and ignores NaN.  The lanes then give the largest
  // value and, among the lanes holding it (-0 == +0), the smallest index, as a sequential scan
  // with a strict > would.
  FV best[2] = {splat_v<FV>(-INFINITY), splat_v<FV>(-INFINITY)};
  IV where[2] = {splat_v<IV>(0), splat_v<IV>(0)};
  IV idx[2];
  for (int j = 0; j < kF; ++j) {
    idx[0][j] = j;
    idx[1][j] = kF + j;
  }
  const IV step = splat_v<IV>(2 * kF);
  int64_t i = 0;
  if (v <= INT32_MAX) {
    for (; i + 2 * kF <= v; i += 2 * kF) {
      for (int c = 0; c < 2; ++c) {
        FV xv;
        memcpy(&xv, x + i + c * kF, sizeof xv);
        const IV gt = xv > best[c];
        best[c] = gt ? xv : best[c];
        where[c] = gt ? idx[c] : where[c];
        idx[c] += step;
      }
    }
  }
  float m = -INFINITY;
  int64_t at = -1;
  for (int c = 0; c < 2; ++c) {
    for (int j = 0; j < kF; ++j) {
      if (best[c][j] > m || (best[c][j] == m && best[c][j] > -INFINITY && where[c][j] < at)) {
        m = best[c][j];
        at = where[c][j];
      }
    }
  }
  for (; i < v; ++i) {
    if (x[i] > m) {
      m = x[i];
      at = i;
    }
  }
  *max_out = m;
  return at < 0 ? 0 : at;  // a row of NaN and -inf only: index 0
}

namespace {

constexpr int kDegree = pm::kSampleExpDegree;

// pm::sample_weight on kD logits: the same operations in the same order as pm::exp_d (its
// clamps are no-ops here: the argument lies in [-708, 0]), so the same bits.
inline DV weights_v(const float* x, DV lm, DV inv_t) {
  constexpr pm::InvFactorials inv{};
  FH xf;
  memcpy(&xf, x, sizeof xf);
  const DV a = (__builtin_convertvector(xf, DV) - lm) * inv_t;
  const LV keep = a >= splat_v<DV>(-708.0);
  const DV y = keep ? a : splat_v<DV>(0.0);
  const DV magic = splat_v<DV>(6755399441055744.0);
  const DV t = y * splat_v<DV>(1.4426950408889634) + magic;
  const DV k = t - magic;
  const DV r = (y - k * splat_v<DV>(6.93147180369123816490e-01)) -
               k * splat_v<DV>(1.90821492927058770002e-10);
  DV p = splat_v<DV>(inv.v[kDegree]);
  for (int i = kDegree - 1; i >= 0; --i) p = p * r + splat_v<DV>(inv.v[i]);
  const LV scale = ((LV)t - (LV)magic + 1023) << 52;
  return keep ? p * (DV)scale : splat_v<DV>(0.0);
}

template <bool kStore>
double exp_weights_impl(const float* x, int64_t v, float lmax, double inv_t, double* p) {
  constexpr int kN = 8 / kD;  // vectors per 8 lanes
  const double lm = static_cast<double>(lmax);
  const DV lmv = splat_v<DV>(lm), invv = splat_v<DV>(inv_t);
  DV acc[kN];
  for (int c = 0; c < kN; ++c) acc[c] = splat_v<DV>(0.0);
  int64_t i = 0;
  for (; i + 8 <= v; i += 8) {
    for (int c = 0; c < kN; ++c) {
      const DV w = weights_v(x + i + c * kD, lmv, invv);
      acc[c] += w;
      if (kStore) memcpy(p + i + c * kD, &w, sizeof w);
    }
  }
  double lanes[8];
  memcpy(lanes, acc, sizeof lanes);
  for (int j = 0; i + j < v; ++j) {
    const double w = pm::sample_weight(x[i + j], lm, inv_t);
    lanes[j] += w;
    if (kStore) p[i + j] = w;
  }
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
         ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

}  // namespace

double exp_weights(const float* x, int64_t v, float lmax, double inv_t, double* p) {
  return p ? exp_weights_impl<true>(x, v, lmax, inv_t, p)
           : exp_weights_impl<false>(x, v, lmax, inv_t, p);
}

}  // namespace gemma_native::ops::cpu::GN_ISA
