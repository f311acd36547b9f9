// sample: next-token choice from logits [B, V], one parameter set per row (ops.h).
// Compiled once (baseline flags): it uses the standard library's sort, which must not be
// instantiated in the per-ISA objects.  Probabilities are formed in double so the numpy twin
// reproduces every draw.  Napkin math: greedy is one pass over V floats; top-k a partial sort;
// top-p one exp per id and a sort of the few ids above a probability floor (a full sort of 256k
// ids took ~30 ms); plain temperature sampling needs no sort.
#include <math.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "ops/ops.h"

namespace gemma_native::ops {
namespace {

int32_t argmax(const float* x, int64_t v) {
  int64_t best = 0;
  float bv = -INFINITY;
  for (int64_t i = 0; i < v; ++i) {
    if (x[i] > bv) {  // NaN never wins; ties keep the lowest index
      bv = x[i];
      best = i;
    }
  }
  return static_cast<int32_t>(best);
}

// top-p without top-k: no sort of the whole row.  Every probability is formed (in id order,
// where `total` is summed), then only the ids above a probability floor are sorted: they are the
// first ids of the full order (a higher logit never has a lower probability), so their running
// sums in that order are the ones a full sort would give.  The floor starts at 1e-3 of the most
// likely id and drops by 1e-4 until those ids hold top_p of the total (a peaked row: once; a
// flat one: down to 0, the whole row).
int32_t sample_top_p(const float* logits, int64_t v, const SamplingRow& r, float lmax) {
  const double inv_t = 1.0 / static_cast<double>(r.temperature);
  std::vector<double> prob(v);
  double total = 0.0;
  for (int64_t i = 0; i < v; ++i) {
    const float l = logits[i];
    prob[i] = isnan(l) ? 0.0 : exp((static_cast<double>(l) - static_cast<double>(lmax)) * inv_t);
    total += prob[i];
  }
  const double target = static_cast<double>(r.top_p) * total;
  auto cmp = [&](int32_t a, int32_t b) {
    const float la = isnan(logits[a]) ? -INFINITY : logits[a];
    const float lb = isnan(logits[b]) ? -INFINITY : logits[b];
    return la > lb || (la == lb && a < b);
  };
  std::vector<int32_t> cand;
  std::vector<double> cum;
  for (double floor = 1e-3;; floor = floor > 1e-300 ? floor * 1e-4 : 0.0) {
    cand.clear();
    for (int64_t i = 0; i < v; ++i) {
      if (floor == 0.0 || prob[i] >= floor) cand.push_back(static_cast<int32_t>(i));
    }
    std::sort(cand.begin(), cand.end(), cmp);
    cum.resize(cand.size());
    double run = 0.0;
    int64_t k = -1;
    for (size_t i = 0; i < cand.size(); ++i) {
      run += prob[cand[i]];
      cum[i] = run;
      if (run >= target) {
        k = static_cast<int64_t>(i);
        break;
      }
    }
    if (k < 0 && floor > 0.0) continue;  // the nucleus reaches below this floor
    if (k < 0) k = static_cast<int64_t>(cand.size()) - 1;  // rounding: the whole row
    const double u = static_cast<double>(sample_uniform(r.seed, r.counter)) * cum[k];
    for (int64_t i = 0; i <= k; ++i) {
      if (cum[i] > u) return cand[i];
    }
    return cand[k];
  }
}

int32_t sample_row(const float* logits, int64_t v, const SamplingRow& r) {
  if (r.temperature <= 0.0f) return argmax(logits, v);
  if (r.top_p < 1.0f && (r.top_k <= 0 || r.top_k >= v)) {
    float lmax = -INFINITY;
    for (int64_t i = 0; i < v; ++i) {
      if (!isnan(logits[i])) lmax = std::max(lmax, logits[i]);
    }
    if (!(lmax > -INFINITY) || isinf(lmax)) return argmax(logits, v);  // nothing finite
    return sample_top_p(logits, v, r, lmax);
  }
  // Probabilities exp((l - lmax) / T) in double: the division cannot overflow even for a
  // denormal temperature (1 / 1e-45 is finite in double), and l - lmax <= 0.
  const double inv_t = 1.0 / static_cast<double>(r.temperature);
  std::vector<int32_t> order;
  const bool need_sort = r.top_k > 0 || r.top_p < 1.0f;
  int64_t keep = v;
  if (need_sort) {
    order.resize(v);
    std::iota(order.begin(), order.end(), 0);
    auto cmp = [&](int32_t a, int32_t b) {
      const float la = isnan(logits[a]) ? -INFINITY : logits[a];
      const float lb = isnan(logits[b]) ? -INFINITY : logits[b];
      return la > lb || (la == lb && a < b);
    };
    if (r.top_k > 0 && r.top_k < v) {
      keep = r.top_k;
      std::partial_sort(order.begin(), order.begin() + keep, order.end(), cmp);
    } else {
      std::sort(order.begin(), order.end(), cmp);
    }
  }
  auto id_at = [&](int64_t i) -> int32_t { return need_sort ? order[i] : static_cast<int32_t>(i); };
  float lmax = -INFINITY;
  for (int64_t i = 0; i < keep; ++i) {
    const float l = logits[id_at(i)];
    if (!isnan(l)) lmax = std::max(lmax, l);
  }
  if (!(lmax > -INFINITY) || isinf(lmax)) return argmax(logits, v);  // nothing finite to weigh
  std::vector<double> cum(keep);
  double total = 0.0;
  for (int64_t i = 0; i < keep; ++i) {
    const float l = logits[id_at(i)];
    const double p =
        isnan(l) ? 0.0 : exp((static_cast<double>(l) - static_cast<double>(lmax)) * inv_t);
    total += p;
    cum[i] = total;
  }
  if (r.top_p < 1.0f) {
    const double target = static_cast<double>(r.top_p) * total;
    int64_t k = 0;
    while (k < keep - 1 && cum[k] < target) ++k;
    keep = k + 1;
    total = cum[k];
  }
  const double u = static_cast<double>(sample_uniform(r.seed, r.counter)) * total;
  for (int64_t i = 0; i < keep; ++i) {
    if (cum[i] > u) return id_at(i);
  }
  return id_at(keep - 1);
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
