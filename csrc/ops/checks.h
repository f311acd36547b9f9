// Argument checks for every op, shared by the backends (the CPU front in ops.cc, the CUDA and
// emulated-CUDA fronts in csrc/ops/cuda/).  Each throws gemma_native::Error on bad arguments and
// returns whether there is anything to compute (false for empty shapes).  They read only the
// args and, where noted, small host arrays of ids or counts.
#pragma once

#include "ops/ops.h"

namespace gemma_native::ops::check {

bool embedding(const EmbeddingArgs& a);  // reads a.host_ids, or a.ids if that is null
bool rmsnorm(const RmsNormArgs& a);
bool linear(const LinearArgs& a);
bool block_diag_linear(const BlockDiagLinearArgs& a);
bool conv1d(const Conv1dArgs& a);
bool rglru_scan(const RgLruArgs& a);
bool rope(const RopeArgs& a);
bool attention(const AttentionArgs& a);  // reads a.host_count, or a.count, given a cache
bool geglu(const GegluArgs& a);
bool softcap(const SoftcapArgs& a);
bool add(const AddArgs& a);

}  // namespace gemma_native::ops::check
