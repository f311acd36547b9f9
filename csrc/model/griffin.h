// Griffin / RecurrentGemma (MODELS.md 1): residual blocks of two kinds (RG-LRU recurrent block,
// local MQA attention block), each followed by a GeGLU MLP; tied embeddings; soft-capped logits.
// The model owns no weights (TensorRef views) and no per-sequence data: a GriffinState holds
// everything a sequence carries between calls, at a fixed size whatever its length.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/tensor.h"

namespace gemma_native::model {

enum class BlockType : int { kRecurrent = 0, kAttention = 1 };

struct GriffinConfig {
  int64_t vocab_size = 0;
  int64_t width = 0;        // D
  int64_t num_heads = 0;    // H (also the number of RG-LRU gate blocks)
  int64_t head_dim = 0;     // hd
  int64_t kv_heads = 1;
  int64_t lru_width = 0;    // L
  int64_t mlp_width = 0;    // F
  int64_t window = 0;       // W: a query sees keys with q - k <= W (official rule)
  int64_t conv_width = 4;   // K
  int64_t rot_dims = 0;     // rotated dims per head (hd / 2 for Griffin)
  float rope_base = 10000.0f;
  float logits_soft_cap = 30.0f;  // 0 = none
  float embed_scale = 1.0f;
  bool float_activations = false;  // quantized weights: fp32 activations (see ops::WeightMatrix)
  float norm_eps = 1e-6f;
  float norm_offset = 1.0f;  // RMSNorm uses (offset + w)
  std::vector<BlockType> blocks;

  void validate() const;  // throws Error(kUnsupported / kModelFormat) on nonsense
};

// Per-sequence state: RG-LRU h and conv taps per recurrent layer, a K/V ring of W slots per
// attention layer, and the number of tokens consumed (the next position).
struct GriffinState {
  int64_t pos = 0;
  std::vector<float> data;
  uint64_t layout_id = 0;  // which model layout `data` follows
};

class GriffinModel {
 public:
  GriffinModel(GriffinConfig cfg, const TensorMap& weights);

  const GriffinConfig& config() const { return cfg_; }
  std::unique_ptr<GriffinState> new_state() const;
  int64_t state_floats() const { return state_floats_; }

  // Runs T new tokens for each of B sequences (tokens [B, T], row b continues states[b]).
  // Writes logits [B, T, V] when all_positions, else [B, V] for each row's last token.
  void forward(const int32_t* tokens, int64_t batch, int64_t time, GriffinState* const* states,
               bool all_positions, float* logits) const;

 private:
  struct Layer {
    BlockType type;
    const float *pre_norm, *mlp_norm;
    ops::WeightMatrix gate, up, down;
    const float *gate_b, *up_b, *down_b;
    // recurrent
    ops::WeightMatrix lin_x, lin_y, lin_out;
    const float *lin_x_b, *lin_y_b, *lin_out_b, *conv_w, *conv_b, *a_param;
    const void *gx_w, *ga_w;
    DType gx_dtype, ga_dtype;
    const float *gx_b, *ga_b;
    // attention
    ops::WeightMatrix q, k, v, o;
    const float* o_b;
    int64_t state_offset;  // floats into GriffinState::data
  };

  void recurrent_block(const Layer& l, const float* h, int64_t B, int64_t T, const int32_t* pos,
                       GriffinState* const* states, float* out, float* scratch) const;
  void attention_block(const Layer& l, const float* h, int64_t B, int64_t T, const int32_t* pos,
                       GriffinState* const* states, float* out, float* scratch) const;

  GriffinConfig cfg_;
  ops::WeightMatrix embed_;
  const float* final_norm_ = nullptr;
  std::vector<Layer> layers_;
  int64_t state_floats_ = 0;
  uint64_t layout_id_ = 0;
};

}  // namespace gemma_native::model
