// Pieces every decoder-only model here shares: per-token positions of a batch of sequences,
// and the output head (final RMSNorm, tied embedding projection, optional soft-cap).
#pragma once

#include <cstdint>
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

}  // namespace gemma_native::model
