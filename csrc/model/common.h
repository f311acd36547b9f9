// Pieces every decoder-only model here shares: per-token positions of a batch of sequences,
// the output head (final RMSNorm, tied embedding projection, optional soft-cap), and the rule
// that a state serves one call at a time.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "ops/backend.h"
#include "ops/ops.h"

namespace gemma_native::model {

// pos[b * T + t] = start[b] + t; throws if a sequence would pass 2^31 tokens.
std::vector<int32_t> batch_positions(const std::vector<int64_t>& start, int64_t time);

struct HeadArgs {
  const ops::WeightMatrix* embed;  // [V, D], tied output projection
  const float* norm;               // final RMSNorm weight [D]
  float eps, offset, softcap;      // softcap 0 = none
};

// On backend `be` (all pointers in its memory): x [B*T, D] (overwritten as scratch), normed
// scratch of at least [B*T, D].  Writes logits [B*T, V] when all_positions, else [B, V] for
// each row's last token.
void lm_head(ops::Backend& be, const HeadArgs& h, float* x, float* normed, int64_t batch,
             int64_t time, bool all_positions, float* logits);

// A per-sequence state belongs to one call at a time (a forward, a clone, a save or a restore).
// Each state carries an InUse flag; StateClaim takes the flags of every state a call touches
// and throws InvalidArgumentError when one is already taken, so a second concurrent user is
// refused instead of corrupting the state.  A copy of a state (a clone) starts free.
class InUse {
 public:
  InUse() = default;
  InUse(const InUse&) {}
  InUse& operator=(const InUse&) { return *this; }
  bool try_acquire() {
    bool expected = false;
    return busy_.compare_exchange_strong(expected, true, std::memory_order_acquire);
  }
  void release() { busy_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> busy_{false};
};

class StateClaim {
 public:
  // flags[i] of states[i]; `what` names the call in the error ("forward", "clone", ...).
  StateClaim(const std::vector<InUse*>& flags, const char* what);
  ~StateClaim();
  StateClaim(const StateClaim&) = delete;
  StateClaim& operator=(const StateClaim&) = delete;

 private:
  std::vector<InUse*> held_;
};

}  // namespace gemma_native::model
