// Griffin / RecurrentGemma (docs/model-math.md, "Griffin block structure"): residual blocks of
// two kinds (RG-LRU recurrent block, local MQA attention block), each followed by a GeGLU MLP;
// tied embeddings; soft-capped logits.
// The model owns no weights (TensorRef views) and no per-sequence data: a GriffinState holds
// everything a sequence carries between calls, at a fixed size whatever its length.
#pragma once

#include <climits>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/common.h"
#include "model/runtime.h"
#include "model/tensor.h"
#include "ops/backend.h"

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
  bool bf16_activations = false;   // float weights: the bf16 compute mode (ops::WeightMatrix)
  float norm_eps = 1e-6f;
  float norm_offset = 1.0f;  // RMSNorm uses (offset + w)
  std::vector<BlockType> blocks;

  void validate() const;  // throws Error(kUnsupported / kModelFormat) on nonsense
};

// Per-sequence state: RG-LRU h and conv taps per recurrent layer, a K/V ring of W slots per
// attention layer, and the number of tokens consumed (the next position).  The floats live in
// the model's backend memory (host memory for the CPU and the emulator, GPU memory for CUDA).
struct GriffinState final : State {
  ops::Buffer<float> data;

  int64_t nbytes() const override { return static_cast<int64_t>(data.bytes()); }
  std::unique_ptr<State> clone() const override;
  int64_t saved_floats(int64_t) const override { return data.size(); }
  std::vector<float> save() const override;
  void restore(const float* host, int64_t at) override;
};

// Runs on a Backend (ops/backend.h): the CPU by default; on a device backend the weights are
// copied into its memory once, and decode steps (T = 1) are captured as a graph and replayed
// when the backend supports graphs (model/runtime.h).
class GriffinModel final : public Decoder {
 public:
  GriffinModel(GriffinConfig cfg, const TensorMap& weights,
               ops::Backend& backend = ops::cpu_backend());

  const GriffinConfig& config() const { return cfg_; }
  int64_t max_context() const override { return INT32_MAX; }  // int32 positions, no other limit
  std::unique_ptr<State> new_state() const override;
  int64_t state_floats() const { return state_floats_; }

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

  int64_t scratch_floats(int64_t n) const override;
  void overwritten(const State& s, int64_t time, std::vector<Piece>* out) const override;
  void graph_key(const State& s, std::vector<uintptr_t>* key) const override;
  void run_layers(Workspace& w, State* const* states) override;
  void recurrent_block(const Layer& l, Workspace& w, State* const* states);
  void attention_block(const Layer& l, Workspace& w, State* const* states);

  GriffinConfig cfg_;
  ops::WeightMatrix embed_;
  const float* final_norm_ = nullptr;
  std::vector<Layer> layers_;
  int64_t state_floats_ = 0;
};

}  // namespace gemma_native::model
