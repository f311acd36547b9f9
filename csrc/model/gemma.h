// Gemma 1 / 2 / 3 decoder-only transformers (MODELS.md 3) on the shared ops: pre-norm
// attention (MQA/GQA/MHA, RoPE over the whole head, optional QK-norm, optional logit soft-cap)
// and GeGLU MLP, optional post-attention / post-MLP norms; layers are either sliding-window
// (key j visible from query i iff i - W < j <= i) or global (full causal).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "model/common.h"
#include "model/tensor.h"

namespace gemma_native::model {

struct GemmaConfig {
  int64_t vocab_size = 0;
  int64_t width = 0;       // d_model
  int64_t num_heads = 0;   // query heads
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  int64_t mlp_width = 0;   // gate/up width
  int64_t window = 0;      // sliding window W (keys incl. the current one)
  int64_t max_context = 0; // global-layer KV cache limit
  std::vector<bool> sliding;  // per layer: sliding-window (true) or global attention
  float rope_base_local = 10000.0f;
  float rope_base_global = 10000.0f;
  float rope_factor_global = 1.0f;  // linear RoPE scaling of the global layers (Gemma 3 4B+)
  float query_scale = 1.0f;   // multiplies q.k
  float attn_softcap = 0.0f;  // 0 = none
  float final_softcap = 0.0f;
  bool post_norms = false;    // Gemma 2/3: norms after attention and after the MLP
  bool qk_norm = false;       // Gemma 3
  float embed_scale = 1.0f;
  bool float_activations = false;  // quantized weights: fp32 activations (see ops::WeightMatrix)
  bool gelu_f16_table = false;     // ggml's float16-table GELU (ops::GegluArgs::f16_table)
  float norm_eps = 1e-6f;
  float norm_offset = 1.0f;   // (offset + w): 1 for HF weights, 0 for GGUF (already +1)

  void validate() const;
};

// Per-sequence KV cache.  Its memory grows with use, so a short sequence costs little whatever
// the configured window or context: each layer's buffer holds `slots` positions, grown (at
// least doubling, from 16) when a call needs more -- up to the window W for a sliding layer,
// which is then a ring (position p in slot p % W), up to max_context for a global layer.
// While a sliding layer has fewer than W slots no position has wrapped (slot p holds p).
struct GemmaState {
  int64_t pos = 0;
  std::vector<std::vector<float>> k, v;  // per layer, [slots, kv_heads, head_dim]
  std::vector<int64_t> slots;            // per layer
  uint64_t layout_id = 0;
  mutable InUse in_use;  // one call at a time (model/common.h)
  int64_t nbytes() const;
  std::unique_ptr<GemmaState> clone() const;
};

class GemmaModel {
 public:
  GemmaModel(GemmaConfig cfg, const TensorMap& weights);
  const GemmaConfig& config() const { return cfg_; }
  std::unique_ptr<GemmaState> new_state() const;
  // A state as one flat float32 vector: per layer K then V, the first min(pos, W) ring slots of
  // a sliding layer and the first `pos` positions of a global one (so its length depends only
  // on pos).
  int64_t state_floats(int64_t pos) const;
  std::vector<float> export_state(const GemmaState& s) const;
  // The inverse; `data` holds state_floats(pos) floats.
  void import_state(GemmaState* s, const float* data, int64_t pos) const;
  // Runs T new tokens for each of B sequences (tokens [B, T], row b continues states[b]).
  // Atomic per call: if it throws (bad input, out of memory, an interrupt), every state is as it
  // was before.  Calls on different states may run concurrently.
  void forward(const int32_t* tokens, int64_t batch, int64_t time, GemmaState* const* states,
               bool all_positions, float* logits) const;

 private:
  struct Layer {
    const float *attn_norm, *mlp_norm, *post_attn_norm, *post_mlp_norm, *q_norm, *k_norm;
    ops::WeightMatrix q, k, v, o, gate, up, down;
  };
  void attention(size_t li, const float* h, int64_t B, int64_t T, const int32_t* pos,
                 GemmaState* const* states, float* out, float* scratch) const;
  // Grows every layer of s to hold the positions a call ending at position `end` needs.
  void reserve(GemmaState& s, int64_t end) const;
  void run(const int32_t* tokens, int64_t B, int64_t T, GemmaState* const* states,
           bool all_positions, float* logits) const;

  GemmaConfig cfg_;
  ops::WeightMatrix embed_;
  const float* final_norm_ = nullptr;
  std::vector<Layer> layers_;
  uint64_t layout_id_ = 0;
};

}  // namespace gemma_native::model
