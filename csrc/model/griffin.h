// Griffin / RecurrentGemma (MODELS.md 1): residual blocks of two kinds (RG-LRU recurrent block,
// local MQA attention block), each followed by a GeGLU MLP; tied embeddings; soft-capped logits.
// The model owns no weights (TensorRef views) and no per-sequence data: a GriffinState holds
// everything a sequence carries between calls, at a fixed size whatever its length.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/common.h"
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
  float norm_eps = 1e-6f;
  float norm_offset = 1.0f;  // RMSNorm uses (offset + w)
  std::vector<BlockType> blocks;

  void validate() const;  // throws Error(kUnsupported / kModelFormat) on nonsense
};

// Per-sequence state: RG-LRU h and conv taps per recurrent layer, a K/V ring of W slots per
// attention layer, and the number of tokens consumed (the next position).  The floats live in
// the model's backend memory (host memory for the CPU and the emulator, GPU memory for CUDA).
struct GriffinState {
  int64_t pos = 0;
  ops::Buffer<float> data;
  uint64_t layout_id = 0;  // which model layout `data` follows
  mutable InUse in_use;    // one call at a time (model/common.h)

  std::unique_ptr<GriffinState> clone() const;
  // A float32 copy of `data` (host memory), and its inverse with the position that goes with it.
  std::vector<float> download() const;
  void upload(const float* host, int64_t pos_now);
};

// Runs on a Backend (ops/backend.h): the CPU by default; on a device backend the weights are
// copied into its memory once, and decode steps (T = 1) are captured as a graph and replayed
// when the backend supports graphs.
class GriffinModel {
 public:
  GriffinModel(GriffinConfig cfg, const TensorMap& weights,
               ops::Backend& backend = ops::cpu_backend());
  ~GriffinModel();

  const GriffinConfig& config() const { return cfg_; }
  ops::Backend& backend() const { return *backend_; }
  std::unique_ptr<GriffinState> new_state() const;
  int64_t state_floats() const { return state_floats_; }

  // Runs T new tokens for each of B sequences (tokens [B, T], row b continues states[b]).
  // Writes logits [B, T, V] when all_positions, else [B, V] for each row's last token.
  // Atomic per call: if it throws (bad input, out of memory, an interrupt), every state is as
  // it was.  On the CPU, calls on different states run concurrently; on a device backend they
  // take turns (its serial() lock: the decode graph and the stream are shared).
  void forward(const int32_t* tokens, int64_t batch, int64_t time, GriffinState* const* states,
               bool all_positions, float* logits);
  // Graph replays so far (decode steps that ran from a captured graph).
  int64_t graph_replays() const { return graph_replays_; }

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

  // Everything one forward of shape (B, T) works in, in backend memory.
  struct Workspace;
  struct DecodeGraph;

  void run_layers(Workspace& w, int64_t B, int64_t T, GriffinState* const* states,
                  bool all_positions);
  void run(const int32_t* tokens, int64_t B, int64_t T, GriffinState* const* states,
           bool all_positions, float* logits);
  void recurrent_block(const Layer& l, Workspace& w, int64_t B, int64_t T,
                       GriffinState* const* states);
  void attention_block(const Layer& l, Workspace& w, int64_t B, int64_t T,
                       GriffinState* const* states);
  ops::WeightMatrix resident(ops::WeightMatrix m);
  const float* resident(const float* p, int64_t n);
  const void* resident(const void* p, DType t, int64_t n);

  ops::Backend* backend_;
  std::vector<ops::Buffer<unsigned char>> device_weights_;  // device backends only
  std::unique_ptr<DecodeGraph> graph_;
  ops::Buffer<float> rollback_;  // forward's saved state pieces (device backends: reused)
  int64_t graph_replays_ = 0;
  GriffinConfig cfg_;
  ops::WeightMatrix embed_;
  const float* final_norm_ = nullptr;
  std::vector<Layer> layers_;
  int64_t state_floats_ = 0;
  uint64_t layout_id_ = 0;
};

}  // namespace gemma_native::model
