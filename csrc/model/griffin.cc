#include "model/griffin.h"

#include "model/common.h"

#include "gemma_native/quant.h"
#include "ops/interrupt.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>

namespace gemma_native::model {
namespace {

std::atomic<uint64_t> g_next_layout{1};
constexpr int64_t kMaxStateBytes = int64_t{1} << 30;

std::string layer_name(size_t i, const char* suffix) {
  return "layers." + std::to_string(i) + "." + suffix;
}

}  // namespace

void GriffinConfig::validate() const {
  auto positive = [](int64_t v, const char* what) {
    GN_CHECK(v > 0, ErrorKind::kModelFormat, std::string("config: ") + what + " must be > 0");
  };
  positive(vocab_size, "vocab_size");
  positive(width, "width");
  positive(num_heads, "num_heads");
  positive(head_dim, "head_dim");
  positive(kv_heads, "kv_heads");
  positive(lru_width, "lru_width");
  positive(mlp_width, "mlp_width");
  positive(window, "attention window");
  positive(conv_width, "conv1d width");
  GN_CHECK(!blocks.empty(), ErrorKind::kModelFormat, "config: no layers");
  GN_CHECK(window <= (int64_t{1} << 24) && kv_heads * head_dim <= (int64_t{1} << 20) &&
               lru_width <= (int64_t{1} << 24) && conv_width <= 64,
           ErrorKind::kModelFormat, "config: implausibly large dimensions");
  GN_CHECK(num_heads % kv_heads == 0, ErrorKind::kModelFormat,
           "config: num_heads must be a multiple of kv_heads");
  GN_CHECK(lru_width % num_heads == 0, ErrorKind::kModelFormat,
           "config: lru_width must be divisible by num_heads (RG-LRU gate blocks)");
  GN_CHECK(rot_dims >= 0 && rot_dims % 2 == 0 && rot_dims <= head_dim, ErrorKind::kModelFormat,
           "config: rotary dims must be even and <= head_dim");
  GN_CHECK(std::isfinite(embed_scale) && std::isfinite(logits_soft_cap) && logits_soft_cap >= 0 &&
               norm_eps >= 0 && rope_base > 0,
           ErrorKind::kModelFormat, "config: bad float parameter");
  // The state is allocated whole for every sequence (its size is the point: fixed, known in
  // advance), so a window that makes it absurd is refused here rather than at new_state().
  int64_t floats = 0;
  for (BlockType b : blocks) {
    floats += b == BlockType::kRecurrent ? conv_width * lru_width : 2 * window * kv_heads * head_dim;
  }
  const double mib = static_cast<double>(floats) * 4.0 / (1 << 20);
  GN_CHECK(floats * 4 <= kMaxStateBytes, ErrorKind::kModelFormat,
           "config: one sequence's state would take " + std::to_string(mib) +
               " MiB (attention window " + std::to_string(window) +
               "); this engine refuses more than 1 GiB (RecurrentGemma 2B: 32.7 MiB)");
}

GriffinModel::GriffinModel(GriffinConfig cfg, const TensorMap& w, ops::Backend& backend)
    : backend_(&backend), cfg_(std::move(cfg)) {
  cfg_.validate();
  const int64_t D = cfg_.width, L = cfg_.lru_width, F = cfg_.mlp_width, H = cfg_.num_heads;
  const int64_t hd = cfg_.head_dim, KV = cfg_.kv_heads, K = cfg_.conv_width, bs = L / H;
  embed_ = resident(matrix(need(w, "embed", {cfg_.vocab_size, D}, false), cfg_.float_activations));
  final_norm_ = resident(f32(need(w, "final_norm", {D}, true)), D);
  int64_t offset = 0;
  for (size_t i = 0; i < cfg_.blocks.size(); ++i) {
    Layer l{};
    l.type = cfg_.blocks[i];
    auto mat = [&](const char* n, std::vector<int64_t> shape) {
      return resident(
          matrix(need(w, layer_name(i, n), std::move(shape), false), cfg_.float_activations));
    };
    auto vec = [&](const char* n, std::vector<int64_t> shape) {
      int64_t count = 1;
      for (int64_t d : shape) count *= d;
      return resident(f32(need(w, layer_name(i, n), std::move(shape), true)), count);
    };
    l.pre_norm = vec("pre_norm", {D});
    l.mlp_norm = vec("mlp_norm", {D});
    l.gate = mat("mlp.gate", {F, D});
    l.up = mat("mlp.up", {F, D});
    l.down = mat("mlp.down", {D, F});
    l.gate_b = vec("mlp.gate_b", {F});
    l.up_b = vec("mlp.up_b", {F});
    l.down_b = vec("mlp.down_b", {D});
    l.state_offset = offset;
    if (l.type == BlockType::kRecurrent) {
      l.lin_x = mat("rec.linear_x", {L, D});
      l.lin_y = mat("rec.linear_y", {L, D});
      l.lin_out = mat("rec.linear_out", {D, L});
      l.lin_x_b = vec("rec.linear_x_b", {L});
      l.lin_y_b = vec("rec.linear_y_b", {L});
      l.lin_out_b = vec("rec.linear_out_b", {D});
      l.conv_w = vec("rec.conv_w", {K, L});
      l.conv_b = vec("rec.conv_b", {L});
      l.a_param = vec("rec.a_param", {L});
      const TensorRef& gx = need(w, layer_name(i, "rec.gate_x"), {H, bs, bs}, false);
      const TensorRef& ga = need(w, layer_name(i, "rec.gate_a"), {H, bs, bs}, false);
      l.gx_w = resident(gx.data, gx.dtype, H * bs * bs);
      l.gx_dtype = gx.dtype;
      l.ga_w = resident(ga.data, ga.dtype, H * bs * bs);
      l.ga_dtype = ga.dtype;
      l.gx_b = vec("rec.gate_x_b", {H, bs});
      l.ga_b = vec("rec.gate_a_b", {H, bs});
      offset += L + (K - 1) * L;  // h, conv taps
    } else {
      l.q = mat("attn.q", {H * hd, D});
      l.k = mat("attn.k", {KV * hd, D});
      l.v = mat("attn.v", {KV * hd, D});
      l.o = mat("attn.o", {D, H * hd});
      l.o_b = vec("attn.o_b", {D});
      offset += 2 * cfg_.window * KV * hd;  // K and V rings
    }
    layers_.push_back(l);
  }
  state_floats_ = offset;
  layout_id_ = g_next_layout.fetch_add(1);
}

GriffinModel::~GriffinModel() = default;

ops::WeightMatrix GriffinModel::resident(ops::WeightMatrix m) {
  if (!backend_->copies_weights()) return m;
  GN_CHECK(!is_quantized(m.dtype), ErrorKind::kDevice,
           std::string("the ") + backend_->name() + " backend has no kernels for " +
               dtype_name(m.dtype) + " weights yet; load with dtype='bfloat16' or on the CPU");
  m.data = resident(m.data, m.dtype, m.rows * m.cols);
  return m;
}

const float* GriffinModel::resident(const float* p, int64_t n) {
  return static_cast<const float*>(resident(static_cast<const void*>(p), DType::kF32, n));
}

const void* GriffinModel::resident(const void* p, DType t, int64_t n) {
  if (!backend_->copies_weights()) return p;
  GN_CHECK(!is_quantized(t), ErrorKind::kDevice,
           std::string("the ") + backend_->name() + " backend has no kernels for " +
               dtype_name(t) + " weights yet");
  ops::Buffer<unsigned char> b(*backend_, n * dtype_size(t));
  backend_->to_device(b.data(), p, b.bytes());
  const void* q = b.data();
  device_weights_.push_back(std::move(b));
  return q;
}

std::unique_ptr<GriffinState> GriffinState::clone() const {
  StateClaim claim({&in_use}, "clone");
  ops::Backend& be = *data.backend();
  ops::SerialScope serial(be);
  auto s = std::make_unique<GriffinState>();
  s->pos = pos;
  s->layout_id = layout_id;
  s->data = ops::Buffer<float>(be, data.size());
  be.copy(s->data.data(), data.data(), data.bytes());
  be.synchronize();
  return s;
}

std::vector<float> GriffinState::download() const {
  StateClaim claim({&in_use}, "save");
  ops::Backend& be = *data.backend();
  ops::SerialScope serial(be);
  std::vector<float> out(data.size());
  be.to_host(out.data(), data.data(), data.bytes());
  return out;
}

void GriffinState::upload(const float* host, int64_t pos_now) {
  GN_CHECK(pos_now >= 0 && pos_now < INT32_MAX, ErrorKind::kInvalidArgument,
           "position must be in [0, 2^31 - 1)");
  StateClaim claim({&in_use}, "restore");
  ops::Backend& be = *data.backend();
  ops::SerialScope serial(be);
  be.to_device(data.data(), host, data.bytes());
  be.synchronize();
  pos = pos_now;
}

std::unique_ptr<GriffinState> GriffinModel::new_state() const {
  auto s = std::make_unique<GriffinState>();
  s->data = ops::Buffer<float>(*backend_, state_floats_);  // zero-filled
  s->layout_id = layout_id_;
  return s;
}

// Backend memory for one forward of B sequences x T tokens.  Inputs (tokens, positions, the
// attention counts) are copied in before the layers run, so a captured graph reads the values
// of each replay.
struct GriffinModel::Workspace {
  int64_t B = 0, T = 0;
  bool all_positions = false;
  ops::Buffer<int32_t> tokens, pos;
  ops::Buffer<int64_t> counts;  // each sequence's position before this forward
  ops::Buffer<float> x, h, f, scratch, logits;
  const int32_t* host_tokens = nullptr;  // for the argument checks
  float* logits_out = nullptr;           // where the head writes: `logits` or the caller's

  Workspace(ops::Backend& be, const GriffinConfig& c, int64_t b, int64_t t, bool all,
            float* caller_logits)
      : B(b), T(t), all_positions(all) {
    const int64_t N = B * T, D = c.width, L = c.lru_width, F = c.mlp_width;
    const int64_t Hhd = c.num_heads * c.head_dim, KVhd = c.kv_heads * c.head_dim;
    tokens = ops::Buffer<int32_t>(be, N);
    pos = ops::Buffer<int32_t>(be, N);
    counts = ops::Buffer<int64_t>(be, B);
    x = ops::Buffer<float>(be, N * D);
    h = ops::Buffer<float>(be, N * D);
    f = ops::Buffer<float>(be, 2 * N * F);
    scratch = ops::Buffer<float>(be, std::max(5 * N * L, N * (2 * Hhd + 2 * KVhd)));
    const int64_t rows = all ? N : B;
    if (caller_logits != nullptr && be.host_memory()) {
      logits_out = caller_logits;  // the CPU writes straight into the caller's array
    } else {
      logits = ops::Buffer<float>(be, rows * c.vocab_size);
      logits_out = logits.data();
    }
  }

  void load_inputs(ops::Backend& be, const int32_t* tok, const std::vector<int32_t>& p,
                   GriffinState* const* states) {
    be.to_device(tokens.data(), tok, tokens.bytes());
    be.to_device(pos.data(), p.data(), pos.bytes());
    std::vector<int64_t> c(B);
    for (int64_t b = 0; b < B; ++b) c[b] = states[b]->pos;
    be.to_device(counts.data(), c.data(), counts.bytes());
    host_tokens = tok;
  }
};

// A captured decode step (T = 1) for one batch of states; replayed while the same states (the
// same memory) come back in the same order.
struct GriffinModel::DecodeGraph {
  std::vector<const float*> key;
  Workspace ws;
  std::unique_ptr<ops::Graph> graph;
  DecodeGraph(ops::Backend& be, const GriffinConfig& c, std::vector<const float*> k)
      : key(std::move(k)), ws(be, c, static_cast<int64_t>(key.size()), 1, false, nullptr) {}
};

void GriffinModel::recurrent_block(const Layer& l, Workspace& w, int64_t B, int64_t T,
                                   GriffinState* const* states) {
  ops::Backend& be = *backend_;
  const int64_t N = B * T, L = cfg_.lru_width, K = cfg_.conv_width;
  const float* h = w.h.data();
  const int32_t* pos = w.pos.data();
  float* y = w.scratch.data();  // [N, L]  gelu branch
  float* u = y + N * L;         // [N, L]  linear_x, then RG-LRU output
  float* c = u + N * L;         // [N, L]  conv output
  float* gx = c + N * L;        // [N, L]
  float* ga = gx + N * L;       // [N, L]
  be.linear({h, N, l.lin_y, l.lin_y_b, false, y});
  be.linear({h, N, l.lin_x, l.lin_x_b, false, u});
  for (int64_t b = 0; b < B; ++b) {
    float* st = states[b]->data.data() + l.state_offset;
    ops::Conv1dArgs ca;
    ca.x = u + b * T * L;
    ca.pos = pos + b * T;
    ca.w = l.conv_w;
    ca.bias = l.conv_b;
    ca.state = st + L;
    ca.batch = 1;
    ca.time = T;
    ca.channels = L;
    ca.width = K;
    ca.y = c + b * T * L;
    be.conv1d(ca);
  }
  const int64_t H = cfg_.num_heads;
  be.block_diag_linear({c, N, H, L / H, l.gx_w, l.gx_dtype, l.gx_b, gx});
  be.block_diag_linear({c, N, H, L / H, l.ga_w, l.ga_dtype, l.ga_b, ga});
  for (int64_t b = 0; b < B; ++b) {
    ops::RgLruArgs ra;
    ra.x = c + b * T * L;
    ra.gate_x = gx + b * T * L;
    ra.gate_a = ga + b * T * L;
    ra.a_param = l.a_param;
    ra.pos = pos + b * T;
    ra.h = states[b]->data.data() + l.state_offset;
    ra.batch = 1;
    ra.time = T;
    ra.channels = L;
    ra.y = u + b * T * L;
    be.rglru_scan(ra);
  }
  be.geglu({y, u, N * L, u});
  be.linear({u, N, l.lin_out, l.lin_out_b, true, w.x.data()});
}

void GriffinModel::attention_block(const Layer& l, Workspace& w, int64_t B, int64_t T,
                                   GriffinState* const* states) {
  ops::Backend& be = *backend_;
  const int64_t N = B * T, H = cfg_.num_heads, KV = cfg_.kv_heads, hd = cfg_.head_dim;
  const int64_t W = cfg_.window;
  const float* h = w.h.data();
  const int32_t* pos = w.pos.data();
  float* q = w.scratch.data();    // [N, H*hd]
  float* k = q + N * H * hd;      // [N, KV*hd]
  float* v = k + N * KV * hd;     // [N, KV*hd]
  float* o = v + N * KV * hd;     // [N, H*hd]
  be.linear({h, N, l.q, nullptr, false, q});
  be.linear({h, N, l.k, nullptr, false, k});
  be.linear({h, N, l.v, nullptr, false, v});
  be.rope({q, pos, N, H, hd, cfg_.rot_dims, cfg_.rope_base});
  be.rope({k, pos, N, KV, hd, cfg_.rot_dims, cfg_.rope_base});
  for (int64_t b = 0; b < B; ++b) {
    float* st = states[b]->data.data() + l.state_offset;
    ops::AttentionArgs aa;
    aa.q = q + b * T * H * hd;
    aa.k = k + b * T * KV * hd;
    aa.v = v + b * T * KV * hd;
    aa.pos = pos + b * T;
    aa.k_cache = st;
    aa.v_cache = st + W * KV * hd;
    aa.count = w.counts.data() + b;
    aa.host_count = &states[b]->pos;
    aa.batch = 1;
    aa.time = T;
    aa.heads = H;
    aa.kv_heads = KV;
    aa.head_dim = hd;
    aa.slots = W;
    aa.window = W;
    aa.scale = 1.0f / std::sqrt(static_cast<float>(hd));
    aa.out = o + b * T * H * hd;
    be.attention(aa);
  }
  be.linear({o, N, l.o, l.o_b, true, w.x.data()});
}

void GriffinModel::run_layers(Workspace& w, int64_t B, int64_t T, GriffinState* const* states,
                              bool all_positions) {
  ops::Backend& be = *backend_;
  const int64_t N = B * T, D = cfg_.width, F = cfg_.mlp_width;
  ops::EmbeddingArgs ea{embed_, w.tokens.data(), N, cfg_.embed_scale, w.x.data()};
  ea.host_ids = w.host_tokens;
  be.embedding(ea);
  for (const Layer& l : layers_) {
    ops::check_interrupt();
    be.rmsnorm({w.x.data(), l.pre_norm, N, D, cfg_.norm_eps, cfg_.norm_offset, w.h.data()});
    if (l.type == BlockType::kRecurrent) {
      recurrent_block(l, w, B, T, states);
    } else {
      attention_block(l, w, B, T, states);
    }
    be.rmsnorm({w.x.data(), l.mlp_norm, N, D, cfg_.norm_eps, cfg_.norm_offset, w.h.data()});
    float* g = w.f.data();
    float* u = g + N * F;
    be.linear({w.h.data(), N, l.gate, l.gate_b, false, g});
    be.linear({w.h.data(), N, l.up, l.up_b, false, u});
    be.geglu({g, u, N * F, g});
    be.linear({g, N, l.down, l.down_b, true, w.x.data()});
  }
  lm_head(be, {&embed_, final_norm_, cfg_.norm_eps, cfg_.norm_offset, cfg_.logits_soft_cap},
          w.x.data(), w.h.data(), B, T, all_positions, w.logits_out);
}

void GriffinModel::forward(const int32_t* tokens, int64_t B, int64_t T,
                           GriffinState* const* states, bool all_positions, float* logits) {
  GN_CHECK(B > 0 && T > 0, ErrorKind::kShape, "forward: need at least one token per sequence");
  std::vector<InUse*> flags(B);
  for (int64_t b = 0; b < B; ++b) {
    GN_CHECK(states[b] != nullptr && states[b]->layout_id == layout_id_, ErrorKind::kInvalidArgument,
             "forward: state " + std::to_string(b) + " was not made by this model");
    for (int64_t c = 0; c < b; ++c) {
      GN_CHECK(states[c] != states[b], ErrorKind::kInvalidArgument,
               "forward: the same state appears twice in one batch");
    }
    flags[b] = &states[b]->in_use;
  }
  StateClaim claim(flags, "forward");
  for (int64_t i = 0; i < B * T; ++i) {
    GN_CHECK(tokens[i] >= 0 && tokens[i] < cfg_.vocab_size, ErrorKind::kInvalidArgument,
             "token id " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                 " is outside the vocabulary [0, " + std::to_string(cfg_.vocab_size) + ")");
  }
  ops::Backend& be = *backend_;
  ops::SerialScope serial(be);
  // Atomic: what a call overwrites -- each recurrent layer's h and conv taps, and the ring
  // slots of each attention layer that the new tokens land in -- is copied aside first (in the
  // backend's memory) and put back if anything throws, with pos.
  struct Piece {
    int64_t offset, floats;  // into the state
  };
  const int64_t W = cfg_.window, row = cfg_.kv_heads * cfg_.head_dim;
  auto overwritten = [&](int64_t pos0) {
    std::vector<Piece> p;
    for (const Layer& l : layers_) {
      if (l.type == BlockType::kRecurrent) {
        p.push_back({l.state_offset, cfg_.conv_width * cfg_.lru_width});  // h, then the taps
        continue;
      }
      const int64_t count = std::min(T, W), first = (pos0 + T - count) % W;
      const int64_t run1 = std::min(count, W - first);  // slots first.. then wrapped to 0..
      for (int64_t kv = 0; kv < 2; ++kv) {
        const int64_t base = l.state_offset + kv * W * row;
        p.push_back({base + first * row, run1 * row});
        if (count > run1) p.push_back({base, (count - run1) * row});
      }
    }
    return p;
  };
  std::vector<std::vector<Piece>> where(B);
  int64_t total = 0;
  for (int64_t b = 0; b < B; ++b) {
    where[b] = overwritten(states[b]->pos);
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
      be.copy(saved->data() + at, states[b]->data.data() + p.offset, p.floats * sizeof(float));
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
        be.copy(states[b]->data.data() + p.offset, saved->data() + at, p.floats * sizeof(float));
        at += p.floats;
      }
    }
    be.synchronize();
    throw;
  }
}

void GriffinModel::run(const int32_t* tokens, int64_t B, int64_t T, GriffinState* const* states,
                       bool all_positions, float* logits) {
  std::vector<int64_t> start(B);
  for (int64_t b = 0; b < B; ++b) start[b] = states[b]->pos;
  const std::vector<int32_t> pos = batch_positions(start, T);
  const int64_t V = cfg_.vocab_size;
  ops::Backend& be = *backend_;

  if (be.supports_graphs() && T == 1 && !all_positions) {
    std::vector<const float*> key(B);
    for (int64_t b = 0; b < B; ++b) key[b] = states[b]->data.data();
    if (!graph_ || graph_->key != key) {
      graph_.reset();
      auto g = std::make_unique<DecodeGraph>(be, cfg_, key);
      g->ws.load_inputs(be, tokens, pos, states);  // values for the capture-time checks
      be.begin_capture();
      try {
        run_layers(g->ws, B, 1, states, false);
      } catch (...) {
        be.end_capture();
        throw;
      }
      g->graph = be.end_capture();
      graph_ = std::move(g);
    }
    Workspace& w = graph_->ws;
    w.load_inputs(be, tokens, pos, states);
    graph_->graph->replay();
    ++graph_replays_;
    be.to_host(logits, w.logits_out, static_cast<size_t>(B * V) * sizeof(float));
  } else {
    Workspace w(be, cfg_, B, T, all_positions, logits);
    w.load_inputs(be, tokens, pos, states);
    run_layers(w, B, T, states, all_positions);
    if (w.logits_out != logits) {
      const int64_t rows = all_positions ? B * T : B;
      be.to_host(logits, w.logits_out, static_cast<size_t>(rows * V) * sizeof(float));
    }
  }
  be.synchronize();
  for (int64_t b = 0; b < B; ++b) states[b]->pos += T;
}

}  // namespace gemma_native::model
