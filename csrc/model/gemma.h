// Gemma 1 / 2 / 3 decoder-only transformers (docs/model-math.md, "Gemma 1, 2 and 3") on the
// shared ops: pre-norm attention (MQA/GQA/MHA, RoPE over the whole head, optional QK-norm,
// optional logit soft-cap) and GeGLU MLP, optional post-attention / post-MLP norms; layers are
// either sliding-window (key j visible from query i iff i - W < j <= i) or global (full causal).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "model/common.h"
#include "model/runtime.h"
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
  bool bf16_activations = false;   // float weights: the bf16 compute mode (ops::WeightMatrix)
  bool gelu_f16_table = false;     // ggml's float16-table GELU (ops::GegluArgs::f16_table)
  float norm_eps = 1e-6f;
  float norm_offset = 1.0f;   // (offset + w): 1 for HF weights, 0 for GGUF (already +1)

  void validate() const;
};

// The shape of a Gemma model's KV caches, shared by the model and its states.
struct GemmaCacheShape {
  int64_t row = 0;             // kv_heads * head_dim floats per position
  int64_t window = 0;          // W of the sliding layers
  int64_t max_context = 0;     // the most positions of a global layer
  std::vector<bool> sliding;   // per layer
  // The slots a layer holds for a sequence at position `at`: min(at, W) or at.
  int64_t slots_at(size_t layer, int64_t at) const;
};

// Per-sequence KV cache, in the model's backend memory.  Its memory grows with use, so a short
// sequence costs little whatever the configured window or context: each layer's buffers hold
// `slots` positions, grown (at least doubling, from 16) when a call needs more -- up to the
// window W for a sliding layer, which is then a ring (position p in slot p % W), up to
// max_context for a global layer.  While a sliding layer has fewer than W slots no position has
// wrapped (slot p holds p), so growing keeps every position where it is.
struct GemmaState final : State {
  std::shared_ptr<const GemmaCacheShape> shape;
  ops::Backend* backend = nullptr;
  std::vector<ops::Buffer<float>> k, v;  // per layer, [slots, kv_heads, head_dim]
  std::vector<int64_t> slots;            // per layer

  int64_t nbytes() const override;
  std::unique_ptr<State> clone() const override;
  // Per layer K then V: the first min(pos, W) ring slots of a sliding layer and the first pos
  // positions of a global one (so the length depends only on pos).
  int64_t saved_floats(int64_t at) const override;
  std::vector<float> save() const override;
  void restore(const float* data, int64_t at) override;
  // Grows every layer to hold the positions a call ending at position `end` needs.
  void reserve(int64_t end);
};

// Runs on a Backend like GriffinModel: the CPU by default; on a device backend the weights are
// copied into its memory (float weights only) and decode steps are captured as graphs -- a
// cache that grows gets new memory, so its key changes and the step is captured again (at most
// about log2(context) times per sequence).
class GemmaModel final : public Decoder {
 public:
  GemmaModel(GemmaConfig cfg, const TensorMap& weights,
             ops::Backend& backend = ops::cpu_backend());
  const GemmaConfig& config() const { return cfg_; }
  int64_t max_context() const override { return cfg_.max_context; }
  std::unique_ptr<State> new_state() const override;

 private:
  struct Layer {
    const float *attn_norm, *mlp_norm, *post_attn_norm, *post_mlp_norm, *q_norm, *k_norm;
    ops::WeightMatrix q, k, v, o, gate, up, down;
  };
  int64_t scratch_floats(int64_t n) const override;
  void prepare(State& s, int64_t end) const override;
  void overwritten(const State& s, int64_t time, std::vector<Piece>* out) const override;
  void graph_key(const State& s, std::vector<uintptr_t>* key) const override;
  void run_layers(Workspace& w, State* const* states) override;
  void attention(size_t li, Workspace& w, State* const* states);

  GemmaConfig cfg_;
  std::shared_ptr<const GemmaCacheShape> shape_;
  ops::WeightMatrix embed_;
  const float* final_norm_ = nullptr;
  std::vector<Layer> layers_;
};

}  // namespace gemma_native::model
