// What every model family here shares, so that each is written once against ops::Backend:
//   State    what a sequence carries between calls (Griffin: a fixed-size block; Gemma: a KV
//            cache that grows), in the backend's memory, behind one interface;
//   Decoder  the forward skeleton: argument checks, the one-call-per-state claim, atomic calls
//            (the pieces of the states a call overwrites are copied aside and put back if it
//            throws), per-call workspaces, captured-graph decode on backends with graphs, and
//            weights copied into the backend's memory where it needs its own copy.
// A model family (griffin.h, gemma.h) provides its layers (run_layers) and says which parts of
// a state a call overwrites and which memory a captured decode step reads.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "gemma_native/dtype.h"
#include "model/common.h"
#include "ops/backend.h"

namespace gemma_native::model {

// c after c.validate() (which throws on nonsense): for a constructor's initializer list, so
// that nothing is sized from a config before it is checked.
template <class Config>
const Config& validated(const Config& c) {
  c.validate();
  return c;
}

class State {
 public:
  virtual ~State() = default;

  int64_t pos = 0;         // tokens consumed so far (the position of the next token)
  uint64_t layout_id = 0;  // the model that made it (Decoder::layout_id)
  mutable InUse in_use;    // one call at a time (common.h)

  // Bytes of backend memory the state holds now.
  virtual int64_t nbytes() const = 0;
  // An independent copy (same backend), free to be used by another call.
  virtual std::unique_ptr<State> clone() const = 0;
  // The state as one float32 vector in host memory, of saved_floats(pos) floats (its length
  // depends only on the position), and its inverse.
  virtual int64_t saved_floats(int64_t at) const = 0;
  virtual std::vector<float> save() const = 0;
  virtual void restore(const float* data, int64_t at) = 0;
};

class Decoder {
 public:
  virtual ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  ops::Backend& backend() const { return *backend_; }
  int64_t vocab_size() const { return dims_.vocab; }
  // The most positions a sequence may reach.
  virtual int64_t max_context() const = 0;
  virtual std::unique_ptr<State> new_state() const = 0;

  // Runs T new tokens for each of B sequences (tokens [B, T] in host memory, row b continues
  // states[b]).  Writes host logits [B, T, V] when all_positions, else [B, V] for each row's
  // last token.  Atomic per call: if it throws (bad input, out of memory, an interrupt), every
  // state is as it was.  On the CPU, calls on different states run concurrently; on a device
  // backend they take turns (its serial() lock: the decode graph and the stream are shared).
  void forward(const int32_t* tokens, int64_t batch, int64_t time, State* const* states,
               bool all_positions, float* logits);
  // Decode steps run from a captured graph so far.
  int64_t graph_replays() const { return graph_replays_; }

 protected:
  struct Dims {
    int64_t vocab = 0, width = 0, mlp_width = 0;
  };
  Decoder(ops::Backend& backend, Dims dims);

  // Backend memory for one forward of B sequences x T tokens.  The inputs (tokens, positions,
  // each state's position before the call) are copied in before the layers run, so a captured
  // graph reads the values of each replay.
  struct Workspace {
    int64_t B = 0, T = 0;
    bool all_positions = false;
    bool head = true;  // false: a pass before the last, whose logits nobody reads (no head)
    ops::Buffer<int32_t> tokens, pos;
    ops::Buffer<int64_t> counts;
    ops::Buffer<float> x, h, f, scratch, logits;  // x, h [N, D]; f [2N, F]; scratch: the model's
    const int32_t* host_tokens = nullptr;          // for the argument checks
    float* logits_out = nullptr;  // where the head writes: `logits` or the caller's array
  };

  // One pointer-sized piece of a state that a call overwrites.
  struct Piece {
    float* data;
    int64_t floats;
  };

  // --- what a model family provides
  // Floats of Workspace::scratch a forward of n tokens needs.
  virtual int64_t scratch_floats(int64_t n) const = 0;
  // Checks that only the family knows (e.g. the context length); throws.
  virtual void check_call(const State& s, int64_t time) const {}
  // Makes s ready for a call ending at position `end` (e.g. grows a cache); keeps its content.
  virtual void prepare(State& s, int64_t end) const {}
  // The parts of s a call of `time` tokens from its position overwrites.
  virtual void overwritten(const State& s, int64_t time, std::vector<Piece>* out) const = 0;
  // Everything about s a captured decode step depends on (its memory, cache sizes): a graph is
  // replayed only for states with the same key, in the same order.
  virtual void graph_key(const State& s, std::vector<uintptr_t>* key) const = 0;
  // The layers and the head: reads w.tokens / w.pos / w.counts, writes w.logits_out.
  virtual void run_layers(Workspace& w, State* const* states) = 0;

  // --- helpers for the families
  // Weights as the backend reads them: the host pointer, or a copy in its memory.
  ops::WeightMatrix resident(ops::WeightMatrix m);
  const float* resident(const float* p, int64_t n);
  const void* resident(const void* p, DType t, int64_t n);
  // A fresh layout id for a model's states (unique across families).
  static uint64_t next_layout_id();

  uint64_t layout_id_ = 0;

 private:
  struct DecodeGraph;
  // Sizes w for B x T tokens (everything but the logits: set_logits).
  void make_workspace(Workspace& w, int64_t B, int64_t T) const;
  // Where w's head writes: caller_logits (host memory) or w's own buffer; nowhere when !head.
  void set_logits(Workspace& w, bool head, bool all_positions, float* caller_logits) const;
  void load_inputs(Workspace& w, const int32_t* tokens, const std::vector<int32_t>& pos,
                   State* const* states) const;
  void run(const int32_t* tokens, int64_t B, int64_t T, State* const* states, bool all_positions,
           float* logits);

  ops::Backend* backend_;
  Dims dims_;
  std::vector<ops::Buffer<unsigned char>> device_weights_;  // backends that copy weights
  std::unique_ptr<DecodeGraph> graph_;
  ops::Buffer<float> rollback_;  // forward's saved pieces (device backends: reused)
  int64_t graph_replays_ = 0;
};

}  // namespace gemma_native::model
