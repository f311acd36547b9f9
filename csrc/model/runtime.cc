#include "model/runtime.h"

#include <algorithm>
#include <atomic>
#include <string>

#include "gemma_native/quant.h"
#include "ops/interrupt.h"

namespace gemma_native::model {

// A captured decode step (T = 1) for one batch of states; replayed while states with the same
// graph_key come back in the same order.
struct Decoder::DecodeGraph {
  std::vector<uintptr_t> key;
  Workspace ws;
  std::unique_ptr<ops::Graph> graph;
};

Decoder::Decoder(ops::Backend& backend, Dims dims) : backend_(&backend), dims_(dims) {}

Decoder::~Decoder() = default;

uint64_t Decoder::next_layout_id() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1);
}

ops::WeightMatrix Decoder::resident(ops::WeightMatrix m) {
  if (!backend_->copies_weights()) return m;
  GN_CHECK(!m.bf16_activations, ErrorKind::kDevice,
           std::string("activations='bfloat16' (the bf16 compute mode) runs on the CPU only so "
                       "far; the ") + backend_->name() + " backend computes with float32 activations");
  if (m.dtype == DType::kQ8_0) {  // the device kernels widen Q8_0 blocks for float activations
    GN_CHECK(m.float_activations, ErrorKind::kDevice,
             std::string("the ") + backend_->name() +
                 " backend has no kernels for Q8_0 weights with 8-bit activations; load with "
                 "activations='float32' (or dtype='bfloat16')");
    const int64_t bytes = m.rows * row_bytes(m.dtype, m.cols);
    ops::Buffer<unsigned char> b(*backend_, bytes);
    backend_->to_device(b.data(), m.data, b.bytes());
    m.data = b.data();
    device_weights_.push_back(std::move(b));
    return m;
  }
  GN_CHECK(!is_quantized(m.dtype) && !is_packed_float(m.dtype), ErrorKind::kDevice,
           std::string("the ") + backend_->name() + " backend has no kernels for " +
               dtype_name(m.dtype) + " weights yet; load with dtype='bfloat16' (or 'int8' with "
               "activations='float32'), or on the CPU");
  m.data = resident(m.data, m.dtype, m.rows * m.cols);
  return m;
}

const float* Decoder::resident(const float* p, int64_t n) {
  return static_cast<const float*>(resident(static_cast<const void*>(p), DType::kF32, n));
}

const void* Decoder::resident(const void* p, DType t, int64_t n) {
  if (!backend_->copies_weights() || p == nullptr) return p;
  GN_CHECK(!is_quantized(t) && !is_packed_float(t), ErrorKind::kDevice,
           std::string("the ") + backend_->name() + " backend has no kernels for " +
               dtype_name(t) + " weights yet");
  ops::Buffer<unsigned char> b(*backend_, n * dtype_size(t));
  backend_->to_device(b.data(), p, b.bytes());
  const void* q = b.data();
  device_weights_.push_back(std::move(b));
  return q;
}

void Decoder::make_workspace(Workspace& w, int64_t B, int64_t T) const {
  ops::Backend& be = *backend_;
  const int64_t N = B * T, D = dims_.width, F = dims_.mlp_width;
  w.B = B;
  w.T = T;
  w.tokens = ops::Buffer<int32_t>(be, N);
  w.pos = ops::Buffer<int32_t>(be, N);
  w.counts = ops::Buffer<int64_t>(be, B);
  w.x = ops::Buffer<float>(be, N * D);
  w.h = ops::Buffer<float>(be, N * D);
  w.f = ops::Buffer<float>(be, 2 * N * F);
  w.scratch = ops::Buffer<float>(be, scratch_floats(N));
}

void Decoder::set_logits(Workspace& w, bool head, bool all_positions,
                         float* caller_logits) const {
  ops::Backend& be = *backend_;
  w.head = head;
  w.all_positions = all_positions;
  w.logits_out = nullptr;
  if (!head) return;
  const int64_t rows = all_positions ? w.B * w.T : w.B;
  if (caller_logits != nullptr && be.host_memory()) {
    w.logits_out = caller_logits;  // host memory: the head writes straight into the caller's array
    return;
  }
  if (w.logits.size() != rows * dims_.vocab) w.logits = ops::Buffer<float>(be, rows * dims_.vocab);
  w.logits_out = w.logits.data();
}

void Decoder::load_inputs(Workspace& w, const int32_t* tokens, const std::vector<int32_t>& pos,
                          State* const* states) const {
  ops::Backend& be = *backend_;
  be.to_device(w.tokens.data(), tokens, w.tokens.bytes());
  be.to_device(w.pos.data(), pos.data(), w.pos.bytes());
  std::vector<int64_t> c(w.B);
  for (int64_t b = 0; b < w.B; ++b) c[b] = states[b]->pos;
  be.to_device(w.counts.data(), c.data(), w.counts.bytes());
  w.host_tokens = tokens;
}

void Decoder::forward(const int32_t* tokens, int64_t B, int64_t T, State* const* states,
                      bool all_positions, float* logits) {
  GN_CHECK(B > 0 && T > 0, ErrorKind::kShape, "forward: need at least one token per sequence");
  std::vector<InUse*> flags(B);
  for (int64_t b = 0; b < B; ++b) {
    GN_CHECK(states[b] != nullptr && states[b]->layout_id == layout_id_,
             ErrorKind::kInvalidArgument,
             "forward: state " + std::to_string(b) + " was not made by this model");
    for (int64_t c = 0; c < b; ++c) {
      GN_CHECK(states[c] != states[b], ErrorKind::kInvalidArgument,
               "forward: the same state appears twice in one batch");
    }
    flags[b] = &states[b]->in_use;
  }
  StateClaim claim(flags, "forward");
  for (int64_t b = 0; b < B; ++b) {
    GN_CHECK(states[b]->pos + T <= max_context(), ErrorKind::kInvalidArgument,
             "context length exceeded: " + std::to_string(states[b]->pos + T) + " tokens > " +
                 std::to_string(max_context()) + " (the model's context length)");
    check_call(*states[b], T);
  }
  for (int64_t i = 0; i < B * T; ++i) {
    GN_CHECK(tokens[i] >= 0 && tokens[i] < dims_.vocab, ErrorKind::kInvalidArgument,
             "token id " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                 " is outside the vocabulary [0, " + std::to_string(dims_.vocab) + ")");
  }
  ops::Backend& be = *backend_;
  ops::SerialScope serial(be);
  // Atomic: what the call overwrites is copied aside first (in the backend's memory) and put
  // back, with pos, if anything throws.  Growing a cache (prepare) keeps every position where
  // it is, so it needs no undoing.
  std::vector<std::vector<Piece>> where(B);
  int64_t total = 0;
  for (int64_t b = 0; b < B; ++b) {
    prepare(*states[b], states[b]->pos + T);
    overwritten(*states[b], T, &where[b]);
    for (const Piece& p : where[b]) total += p.floats;
  }
  // A device backend runs one call at a time (serial()): reuse one buffer there rather than
  // allocate device memory per decode step; CPU calls may overlap, so each has its own.
  ops::Buffer<float> local;
  ops::Buffer<float>* saved = &local;
  if (be.serial() != nullptr) {
    if (rollback_.size() < total) rollback_ = ops::Buffer<float>(be, total);
    saved = &rollback_;
  } else {
    local = ops::Buffer<float>(be, total);
  }
  std::vector<int64_t> start(B);
  int64_t at = 0;
  for (int64_t b = 0; b < B; ++b) {
    start[b] = states[b]->pos;
    for (const Piece& p : where[b]) {
      be.copy(saved->data() + at, p.data, p.floats * sizeof(float));
      at += p.floats;
    }
  }
  try {
    ops::InterruptibleScope interruptible(true);
    run(tokens, B, T, states, all_positions, logits);
  } catch (...) {
    at = 0;
    for (int64_t b = 0; b < B; ++b) {
      states[b]->pos = start[b];
      for (const Piece& p : where[b]) {
        be.copy(p.data, saved->data() + at, p.floats * sizeof(float));
        at += p.floats;
      }
    }
    be.synchronize();
    throw;
  }
}

void Decoder::run(const int32_t* tokens, int64_t B, int64_t T, State* const* states,
                  bool all_positions, float* logits) {
  const int64_t V = dims_.vocab;
  ops::Backend& be = *backend_;
  // Each row's positions for the next `t` tokens, from where its state is now.
  const auto positions = [&](int64_t t) {
    std::vector<int64_t> at(B);
    for (int64_t b = 0; b < B; ++b) at[b] = states[b]->pos;
    return batch_positions(at, t);
  };

  if (be.supports_graphs() && T == 1 && !all_positions) {
    const std::vector<int32_t> pos = positions(1);
    std::vector<uintptr_t> key;
    for (int64_t b = 0; b < B; ++b) graph_key(*states[b], &key);
    if (!graph_ || graph_->key != key) {
      graph_.reset();
      auto g = std::make_unique<DecodeGraph>();
      g->key = std::move(key);
      make_workspace(g->ws, B, 1);
      set_logits(g->ws, true, false, nullptr);
      load_inputs(g->ws, tokens, pos, states);  // values for the capture-time checks
      be.begin_capture();
      try {
        run_layers(g->ws, states);
      } catch (...) {
        be.end_capture();
        throw;
      }
      g->graph = be.end_capture();
      graph_ = std::move(g);
    }
    Workspace& w = graph_->ws;
    load_inputs(w, tokens, pos, states);
    graph_->graph->replay();
    ++graph_replays_;
    be.to_host(logits, w.logits_out, static_cast<size_t>(B * V) * sizeof(float));
    be.synchronize();
    for (int64_t b = 0; b < B; ++b) states[b]->pos += T;
    return;
  }
  // Passes of at most max_pass_tokens() rows: a share of every sequence's tokens at a time
  // (the first T % passes passes one token longer, so no pass is a sliver and the workspace
  // is made at most twice), each continuing the states the one before left.  Every op's result
  // for a row depends only on that row and the states (batch invariance), so the passes give
  // the bits of one pass; on the CPU they keep each layer's activations in the caches (the 2B
  // at 2048 tokens on 2 Zen 5 cores: bf16 mode 164-173 -> 198-201 tok/s, int8 217-227 ->
  // 258-266) and the workspace at the size of one pass.  The bf16 compute mode multiplies in
  // bf16 from kBf16MinRows rows on, so no pass gets fewer rows than that when the call has
  // them (only a limit below ~48 rows needs this).  Only the last pass runs the head unless
  // every position's logits are wanted.
  const int64_t cap = be.max_pass_tokens();
  int64_t passes = 1;
  if (cap > 0 && B * T > cap) {
    const int64_t per = std::max<int64_t>(1, cap / B);  // tokens per sequence and pass
    passes = (T + per - 1) / per;
    while (passes > 1 && B * T >= ops::kBf16MinRows && B * (T / passes) < ops::kBf16MinRows) {
      --passes;
    }
  }
  std::vector<int32_t> part;  // the pass's tokens [B, t], when they are not one range
  Workspace w;
  for (int64_t i = 0, t0 = 0; i < passes; ++i) {
    const int64_t t = T / passes + (i < T % passes ? 1 : 0);
    const bool last = t0 + t == T;
    if (w.T != t) make_workspace(w, B, t);
    // Logits straight into the caller's array where the pass's rows are one range of it.
    const bool direct = !all_positions || B == 1;
    float* dest = !all_positions ? logits : logits + t0 * V;
    set_logits(w, all_positions || last, all_positions, direct ? dest : nullptr);
    const int32_t* toks = tokens + t0;
    if (passes > 1 && B > 1) {
      part.resize(static_cast<size_t>(B * t));
      for (int64_t b = 0; b < B; ++b) {
        std::copy(tokens + b * T + t0, tokens + b * T + t0 + t, part.data() + b * t);
      }
      toks = part.data();
    }
    load_inputs(w, toks, positions(t), states);
    run_layers(w, states);
    if (w.head && w.logits_out != dest) {
      if (direct) {
        const int64_t rows = all_positions ? B * t : B;
        be.to_host(dest, w.logits_out, static_cast<size_t>(rows * V) * sizeof(float));
      } else {  // every position of several sequences: row b's t positions at [b, t0]
        for (int64_t b = 0; b < B; ++b) {
          be.to_host(logits + (b * T + t0) * V, w.logits_out + b * t * V,
                     static_cast<size_t>(t * V) * sizeof(float));
        }
      }
    }
    be.synchronize();
    for (int64_t b = 0; b < B; ++b) states[b]->pos += t;
    t0 += t;
  }
}

}  // namespace gemma_native::model
