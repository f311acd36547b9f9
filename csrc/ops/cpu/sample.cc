// sample: next-token choice from logits [B, V], one parameter set per row (ops.h).
// Compiled once (baseline flags): it uses the standard library's sort, which must not be
// instantiated in the per-ISA objects.  The two passes over the whole row (the maximum, and
// the sum of every id's weight) are per-ISA kernels (sample_kernels.cc); everything here
// touches a few ids or walks stored weights.  The weights are exp_d((l - lmax) / T) in double
// (IEEE basic operations only), so the numpy twin reproduces every draw.  Napkin math at
// V = 262,144 (1 MB of logits): greedy is one vector pass of per-lane maxima and indices
// (~20 us); temperature sampling one pass of exp_d (8 doubles per AVX-512 instruction, ~40
// flops per id) and a walk over the stored weights by blocks of 8; top-p the same pass without
// the store and a sort of the few ids above a logit threshold (a full sort of 256k ids took
// ~30 ms); top-k a partial sort of the ids above a threshold taken from every 16th id.
#include <math.h>

#include <algorithm>
#include <functional>
#include <numeric>
#include <vector>

#include "gemma_native/math.h"
#include "ops/cpu/dispatch.h"
#include "ops/ops.h"

namespace gemma_native::ops {
namespace {

// Logit descending, then id; NaN counts as -inf.
struct ByLogit {
  const float* logits;
  bool operator()(int32_t a, int32_t b) const {
    const float la = isnan(logits[a]) ? -INFINITY : logits[a];
    const float lb = isnan(logits[b]) ? -INFINITY : logits[b];
    return la > lb || (la == lb && a < b);
  }
};

// The ids i with x[i] >= thr (never NaN), in id order, into out; returns their count.  Blocks
// of 16 with no such id (nearly all, for the thresholds used here) cost one vectorized test.
int64_t ids_at_least(const float* x, int64_t v, float thr, int32_t* out) {
  int64_t n = 0;
  int64_t b = 0;
  for (; b + 16 <= v; b += 16) {
    int any = 0;
    for (int j = 0; j < 16; ++j) any |= x[b + j] >= thr;
    if (!any) continue;
    for (int j = 0; j < 16; ++j) {  // branch-free compaction
      out[n] = static_cast<int32_t>(b + j);
      n += x[b + j] >= thr;
    }
  }
  for (; b < v; ++b) {
    out[n] = static_cast<int32_t>(b);
    n += x[b] >= thr;
  }
  return n;
}

double tree8(const double* q) {
  return ((q[0] + q[1]) + (q[2] + q[3])) + ((q[4] + q[5]) + (q[6] + q[7]));
}

// Temperature alone: every id may be drawn.  u = uniform x total (the lane sum of
// exp_weights); the draw walks blocks of 8 ids, adding each block's tree8 sum to a running
// total, to the first block whose running total exceeds u, then that block's ids one by one
// from the running total before it, to the first id whose running sum exceeds u.  Where
// rounding leaves u past every sum, the last id with a weight (in the block, or the row).
int32_t sample_all(const float* logits, int64_t v, const SamplingRow& r, float lmax) {
  const double inv_t = 1.0 / static_cast<double>(r.temperature);
  thread_local std::vector<double> w;
  if (static_cast<int64_t>(w.size()) < v) w.resize(v);
  const double total = cpu::active().exp_weights(logits, v, lmax, inv_t, w.data());
  const double u = static_cast<double>(sample_uniform(r.seed, r.counter)) * total;
  double run = 0.0;
  for (int64_t b = 0; b < v; b += 8) {
    double q[8];
    for (int j = 0; j < 8; ++j) q[j] = b + j < v ? w[b + j] : 0.0;
    const double s = tree8(q);
    if (run + s > u) {
      int64_t last = -1;
      for (int64_t i = b; i < std::min(b + 8, v); ++i) {
        run += w[i];
        if (w[i] > 0.0) last = i;
        if (run > u) return static_cast<int32_t>(i);
      }
      return static_cast<int32_t>(last);  // s > 0, so some id of the block has a weight
    }
    run += s;
  }
  for (int64_t i = v - 1; i >= 0; --i) {
    if (w[i] > 0.0) return static_cast<int32_t>(i);
  }
  return 0;  // not reached: the most likely id weighs 1
}

// top-p without top-k: no sort of the whole row.  The total is the lane sum of exp_weights;
// the nucleus is the shortest run of the order (logit descending, then id) whose running sum
// of weights reaches top_p x total.  Only the ids whose logit is at least lmax - d T (as a
// float) are sorted: every id of the full order down to the last one they hold is among them,
// so their running sums are the ones a full sort would give.  d is 6.9 (a weight of ~1e-3) and
// grows until those ids hold the nucleus (a peaked row: once; a flat one: the whole row).
int32_t sample_top_p(const float* logits, int64_t v, const SamplingRow& r, float lmax) {
  const double inv_t = 1.0 / static_cast<double>(r.temperature);
  const double lm = static_cast<double>(lmax);
  const double total = cpu::active().exp_weights(logits, v, lmax, inv_t, nullptr);
  const double target = static_cast<double>(r.top_p) * total;
  thread_local std::vector<int32_t> cand;
  std::vector<double> cum;
  const double depths[] = {6.9, 16.1, 36.8, INFINITY};
  for (const double d : depths) {
    if (static_cast<int64_t>(cand.size()) < v) cand.resize(v);
    int64_t n = 0;
    if (d == INFINITY) {
      std::iota(cand.begin(), cand.begin() + v, 0);
      n = v;
    } else {  // the logits >= lmax - d T (as a float: any threshold keeps a prefix)
      n = ids_at_least(logits, v, static_cast<float>(lm - d * static_cast<double>(r.temperature)),
                       cand.data());
    }
    std::sort(cand.begin(), cand.begin() + n, ByLogit{logits});
    cum.resize(n);
    double run = 0.0;
    int64_t k = -1;
    for (int64_t i = 0; i < n; ++i) {
      run += pm::sample_weight(logits[cand[i]], lm, inv_t);
      cum[i] = run;
      if (run >= target) {
        k = i;
        break;
      }
    }
    if (k < 0 && d != INFINITY) continue;  // the nucleus reaches below this depth
    if (k < 0) k = n - 1;                  // rounding: the whole row
    const double u = static_cast<double>(sample_uniform(r.seed, r.counter)) * cum[k];
    for (int64_t i = 0; i <= k; ++i) {
      if (cum[i] > u) return cand[i];
    }
    return cand[k];
  }
  return 0;  // not reached: the last depth always returns
}

// The first k ids of the order (logit descending, then id), 0 < k < v.  A partial sort of the
// whole row costs ~0.5 ms at 262k ids; instead only the ids at or above a threshold are
// sorted: the k-th largest logit of every 16th id, which is at most the k-th largest of the
// row, so every id of the first k (ties included) is kept, and ~16 k ids pass it.  Where that
// threshold is -inf (a NaN sorts among the -inf ids by id), the whole row is sorted.
const int32_t* first_k(const float* logits, int64_t v, int64_t k) {
  thread_local std::vector<int32_t> order;  // (a fresh 1 MB buffer would cost its page faults)
  if (static_cast<int64_t>(order.size()) < v) order.resize(v);
  const int64_t stride = 16;
  if (v >= 4 * stride * k) {
    thread_local std::vector<float> sample;
    sample.clear();
    for (int64_t i = 0; i < v; i += stride) {
      sample.push_back(isnan(logits[i]) ? -INFINITY : logits[i]);
    }
    std::nth_element(sample.begin(), sample.begin() + (k - 1), sample.end(), std::greater<>());
    const float thr = sample[k - 1];
    if (thr > -INFINITY) {  // (-inf ties with NaN, which sorts among the -inf ids by id)
      const int64_t n = ids_at_least(logits, v, thr, order.data());
      if (n >= k) {
        std::partial_sort(order.begin(), order.begin() + k, order.begin() + n, ByLogit{logits});
        return order.data();
      }
    }
  }
  std::iota(order.begin(), order.begin() + v, 0);
  std::partial_sort(order.begin(), order.begin() + k, order.begin() + v, ByLogit{logits});
  return order.data();
}

// top-k (0 < k < v), then top-p within those k: weights and running sums in that order.
int32_t sample_top_k(const float* logits, int64_t v, const SamplingRow& r) {
  const double inv_t = 1.0 / static_cast<double>(r.temperature);
  const int64_t kk = r.top_k;
  const int32_t* order = first_k(logits, v, kk);
  float lmax = -INFINITY;
  for (int64_t i = 0; i < kk; ++i) {
    const float l = logits[order[i]];
    if (!isnan(l)) lmax = std::max(lmax, l);
  }
  std::vector<double> cum(kk);
  double total = 0.0;
  for (int64_t i = 0; i < kk; ++i) {
    total += pm::sample_weight(logits[order[i]], static_cast<double>(lmax), inv_t);
    cum[i] = total;
  }
  int64_t keep = kk;
  if (r.top_p < 1.0f) {
    const double target = static_cast<double>(r.top_p) * total;
    int64_t k = 0;
    while (k < keep - 1 && cum[k] < target) ++k;
    keep = k + 1;
    total = cum[k];
  }
  const double u = static_cast<double>(sample_uniform(r.seed, r.counter)) * total;
  for (int64_t i = 0; i < keep; ++i) {
    if (cum[i] > u) return order[i];
  }
  return order[keep - 1];
}

int32_t sample_row(const float* logits, int64_t v, const SamplingRow& r) {
  float lmax;
  const int64_t best = cpu::active().row_argmax(logits, v, &lmax);
  if (r.temperature <= 0.0f) return static_cast<int32_t>(best);
  // Nothing finite to weigh (all NaN / -inf), or a +inf logit: that id, as greedy.
  if (!(lmax > -INFINITY) || isinf(lmax)) return static_cast<int32_t>(best);
  if (r.top_k > 0 && r.top_k < v) return sample_top_k(logits, v, r);
  if (r.top_p < 1.0f) return sample_top_p(logits, v, r, lmax);
  return sample_all(logits, v, r, lmax);
}

}  // namespace

float sample_uniform(uint64_t seed, uint64_t counter) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (counter + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
}

void sample(const float* logits, int64_t batch, int64_t vocab, const SamplingRow* rows,
            int32_t* out_ids) {
  GN_CHECK(vocab > 0, ErrorKind::kShape, "sample: empty vocabulary");
  for (int64_t b = 0; b < batch; ++b) {
    const SamplingRow& r = rows[b];
    GN_CHECK(isfinite(r.temperature) && r.temperature >= 0.0f, ErrorKind::kInvalidArgument,
             "temperature must be a finite number >= 0");
    GN_CHECK(r.top_k >= 0, ErrorKind::kInvalidArgument, "top_k must be >= 0 (0 disables it)");
    GN_CHECK(r.top_p > 0.0f && r.top_p <= 1.0f, ErrorKind::kInvalidArgument,
             "top_p must be in (0, 1]");
    out_ids[b] = sample_row(logits + b * vocab, vocab, r);
  }
}

}  // namespace gemma_native::ops
