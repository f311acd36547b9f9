#include "model/common.h"

#include <algorithm>
#include <climits>
#include <string>

namespace gemma_native::model {

std::vector<int32_t> batch_positions(const std::vector<int64_t>& start, int64_t time) {
  std::vector<int32_t> pos(start.size() * time);
  for (size_t b = 0; b < start.size(); ++b) {
    GN_CHECK(start[b] >= 0 && start[b] <= INT32_MAX - time, ErrorKind::kInvalidArgument,
             "sequence longer than 2^31 tokens");
    for (int64_t t = 0; t < time; ++t) pos[b * time + t] = static_cast<int32_t>(start[b] + t);
  }
  return pos;
}

void lm_head(ops::Backend& be, const HeadArgs& h, float* x, float* normed, int64_t B, int64_t T,
             bool all_positions, float* logits) {
  const int64_t D = h.embed->cols, V = h.embed->rows;
  const int64_t rows = all_positions ? B * T : B;
  if (!all_positions && T > 1) {  // gather each row's last token to the front (no overlap)
    for (int64_t b = 0; b < B; ++b) {
      be.copy(x + b * D, x + ((b + 1) * T - 1) * D, static_cast<size_t>(D) * sizeof(float));
    }
  }
  be.rmsnorm({x, h.norm, rows, D, h.eps, h.offset, normed});
  be.linear({normed, rows, *h.embed, nullptr, false, logits});
  if (h.softcap > 0.0f) be.softcap({logits, rows * V, h.softcap});
}

StateClaim::StateClaim(const std::vector<InUse*>& flags, const char* what) {
  held_.reserve(flags.size());
  for (size_t i = 0; i < flags.size(); ++i) {
    if (!flags[i]->try_acquire()) {
      for (InUse* f : held_) f->release();
      held_.clear();
      fail(ErrorKind::kInvalidArgument,
           std::string(what) + ": state " + std::to_string(i) +
               " is in use by another call (a state serves one call at a time; clone() it to "
               "continue it elsewhere, or wait for the other call to finish)");
    }
    held_.push_back(flags[i]);
  }
}

StateClaim::~StateClaim() {
  for (InUse* f : held_) f->release();
}

}  // namespace gemma_native::model
