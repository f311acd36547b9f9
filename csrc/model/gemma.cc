#include "model/gemma.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <string>

#include "model/common.h"
#include "ops/interrupt.h"

namespace gemma_native::model {
namespace {

std::atomic<uint64_t> g_next_layout{1u << 30};  // distinct from Griffin's ids
constexpr int64_t kGlobalWindow = int64_t{1} << 40;  // "no window" for global layers
constexpr int64_t kMaxContext = int64_t{1} << 24;
constexpr int64_t kMinSlots = 16;  // a cache's first allocation

std::string lname(size_t i, const char* s) { return "layers." + std::to_string(i) + "." + s; }

}  // namespace

void GemmaConfig::validate() const {
  auto positive = [](int64_t v, const char* what) {
    GN_CHECK(v > 0, ErrorKind::kModelFormat, std::string("config: ") + what + " must be > 0");
  };
  positive(vocab_size, "vocab_size");
  positive(width, "width");
  positive(num_heads, "num_heads");
  positive(kv_heads, "kv_heads");
  positive(head_dim, "head_dim");
  positive(mlp_width, "mlp_width");
  positive(max_context, "max_context");
  GN_CHECK(!sliding.empty(), ErrorKind::kModelFormat, "config: no layers");
  GN_CHECK(num_heads % kv_heads == 0, ErrorKind::kModelFormat,
           "config: num_heads must be a multiple of kv_heads");
  GN_CHECK(head_dim % 2 == 0, ErrorKind::kModelFormat, "config: head_dim must be even (RoPE)");
  for (bool s : sliding) {
    if (s) positive(window, "sliding window");
  }
  // Absurd sizes are refused at load (caches grow with use, so legitimate large ones cost
  // nothing until a sequence gets that long; the largest Gemma context is 131072).
  GN_CHECK(max_context <= kMaxContext, ErrorKind::kModelFormat,
           "config: a context length of " + std::to_string(max_context) +
               " positions is absurd (this engine accepts up to 2^24)");
  GN_CHECK(window <= max_context, ErrorKind::kModelFormat,
           "config: the sliding window (" + std::to_string(window) +
               ") must not exceed the context length (" + std::to_string(max_context) + ")");
  GN_CHECK(kv_heads * head_dim <= (int64_t{1} << 20) && width <= (int64_t{1} << 20) &&
               mlp_width <= (int64_t{1} << 24),
           ErrorKind::kModelFormat, "config: implausibly large dimensions");
  GN_CHECK(std::isfinite(query_scale) && std::isfinite(embed_scale) && attn_softcap >= 0 &&
               final_softcap >= 0 && rope_base_local > 0 && rope_base_global > 0 && rope_factor_global > 0,
           ErrorKind::kModelFormat, "config: bad float parameter");
}

int64_t GemmaState::nbytes() const {
  int64_t n = 0;
  for (size_t i = 0; i < k.size(); ++i) n += (k[i].size() + v[i].size()) * sizeof(float);
  return n;
}

std::unique_ptr<GemmaState> GemmaState::clone() const {
  StateClaim claim({&in_use}, "clone");
  return std::make_unique<GemmaState>(*this);
}

GemmaModel::GemmaModel(GemmaConfig cfg, const TensorMap& w) : cfg_(std::move(cfg)) {
  cfg_.validate();
  const int64_t D = cfg_.width, F = cfg_.mlp_width, H = cfg_.num_heads, KV = cfg_.kv_heads;
  const int64_t hd = cfg_.head_dim;
  embed_ = matrix(need(w, "embed", {cfg_.vocab_size, D}, false), cfg_.float_activations);
  final_norm_ = f32(need(w, "final_norm", {D}, true));
  for (size_t i = 0; i < cfg_.sliding.size(); ++i) {
    Layer l{};
    auto mat = [&](const char* n, int64_t rows, int64_t cols) {
      return matrix(need(w, lname(i, n), {rows, cols}, false), cfg_.float_activations);
    };
    auto vec = [&](const char* n, int64_t len) { return f32(need(w, lname(i, n), {len}, true)); };
    l.attn_norm = vec("attn_norm", D);
    l.mlp_norm = vec("mlp_norm", D);
    l.q = mat("attn.q", H * hd, D);
    l.k = mat("attn.k", KV * hd, D);
    l.v = mat("attn.v", KV * hd, D);
    l.o = mat("attn.o", D, H * hd);
    l.gate = mat("mlp.gate", F, D);
    l.up = mat("mlp.up", F, D);
    l.down = mat("mlp.down", D, F);
    if (cfg_.post_norms) {
      l.post_attn_norm = vec("post_attn_norm", D);
      l.post_mlp_norm = vec("post_mlp_norm", D);
    }
    if (cfg_.qk_norm) {
      l.q_norm = vec("attn.q_norm", hd);
      l.k_norm = vec("attn.k_norm", hd);
    }
    layers_.push_back(l);
  }
  layout_id_ = g_next_layout.fetch_add(1);
}

std::unique_ptr<GemmaState> GemmaModel::new_state() const {
  auto s = std::make_unique<GemmaState>();
  const size_t n = layers_.size();
  s->k.resize(n);
  s->v.resize(n);
  s->slots.assign(n, 0);  // nothing allocated until the first call (reserve)
  s->layout_id = layout_id_;
  return s;
}

void GemmaModel::reserve(GemmaState& s, int64_t end) const {
  const int64_t row = cfg_.kv_heads * cfg_.head_dim;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const int64_t limit = cfg_.sliding[i] ? cfg_.window : cfg_.max_context;
    const int64_t need = std::min(limit, end);
    if (s.slots[i] >= need) continue;
    // A sliding layer below W slots has not wrapped (slot p holds position p), so growing keeps
    // every position where it is.
    const int64_t cap = std::min(limit, std::max({need, 2 * s.slots[i], kMinSlots}));
    s.k[i].resize(cap * row, 0.0f);
    s.v[i].resize(cap * row, 0.0f);
    s.slots[i] = cap;
  }
}

int64_t GemmaModel::state_floats(int64_t pos) const {
  const int64_t row = cfg_.kv_heads * cfg_.head_dim;
  int64_t n = 0;
  for (size_t i = 0; i < layers_.size(); ++i) {
    n += 2 * row * (cfg_.sliding[i] ? std::min(pos, cfg_.window) : pos);
  }
  return n;
}

std::vector<float> GemmaModel::export_state(const GemmaState& s) const {
  GN_CHECK(s.layout_id == layout_id_, ErrorKind::kInvalidArgument,
           "state was not made by this model");
  StateClaim claim({&s.in_use}, "save");
  std::vector<float> all(state_floats(s.pos));
  float* out = all.data();
  const int64_t row = cfg_.kv_heads * cfg_.head_dim;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const int64_t n = row * (cfg_.sliding[i] ? std::min(s.pos, cfg_.window) : s.pos);
    std::copy(s.k[i].begin(), s.k[i].begin() + n, out);
    std::copy(s.v[i].begin(), s.v[i].begin() + n, out + n);
    out += 2 * n;
  }
  return all;
}

void GemmaModel::import_state(GemmaState* s, const float* data, int64_t pos) const {
  GN_CHECK(s->layout_id == layout_id_, ErrorKind::kInvalidArgument,
           "state was not made by this model");
  GN_CHECK(pos >= 0 && pos <= cfg_.max_context, ErrorKind::kInvalidArgument,
           "position must be in [0, " + std::to_string(cfg_.max_context) + "]");
  StateClaim claim({&s->in_use}, "restore");
  const int64_t row = cfg_.kv_heads * cfg_.head_dim;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const int64_t slots = cfg_.sliding[i] ? std::min(pos, cfg_.window) : pos;
    const int64_t n = row * slots;
    s->k[i].assign(data, data + n);
    s->v[i].assign(data + n, data + 2 * n);
    s->slots[i] = slots;
    data += 2 * n;
  }
  s->pos = pos;
}

void GemmaModel::attention(size_t li, const float* h, int64_t B, int64_t T, const int32_t* pos,
                           GemmaState* const* states, float* x, float* scratch) const {
  const Layer& l = layers_[li];
  const int64_t N = B * T, H = cfg_.num_heads, KV = cfg_.kv_heads, hd = cfg_.head_dim;
  const int64_t D = cfg_.width;
  const bool sliding = cfg_.sliding[li];
  float* q = scratch;          // [N, H*hd]
  float* k = q + N * H * hd;   // [N, KV*hd]
  float* v = k + N * KV * hd;  // [N, KV*hd]
  float* o = v + N * KV * hd;  // [N, H*hd]
  float* p = o + N * H * hd;   // [N, D]
  ops::linear({h, N, l.q, nullptr, false, q});
  ops::linear({h, N, l.k, nullptr, false, k});
  ops::linear({h, N, l.v, nullptr, false, v});
  if (cfg_.qk_norm) {  // per-head RMSNorm before RoPE (Gemma 3), in place
    ops::rmsnorm({q, l.q_norm, N * H, hd, cfg_.norm_eps, cfg_.norm_offset, q});
    ops::rmsnorm({k, l.k_norm, N * KV, hd, cfg_.norm_eps, cfg_.norm_offset, k});
  }
  const float base = sliding ? cfg_.rope_base_local : cfg_.rope_base_global;
  const float factor = sliding ? 1.0f : cfg_.rope_factor_global;
  ops::rope({q, pos, N, H, hd, hd, base, factor});
  ops::rope({k, pos, N, KV, hd, hd, base, factor});
  const int64_t row = KV * hd;
  for (int64_t b = 0; b < B; ++b) {
    GemmaState& st = *states[b];
    ops::AttentionArgs a;
    a.q = q + b * T * H * hd;
    a.k = k + b * T * row;
    a.v = v + b * T * row;
    a.pos = pos + b * T;
    a.k_cache = st.k[li].data();
    a.v_cache = st.v[li].data();
    a.count = &st.pos;
    a.batch = 1;
    a.time = T;
    a.heads = H;
    a.kv_heads = KV;
    a.head_dim = hd;
    a.slots = st.slots[li];
    a.window = sliding ? cfg_.window - 1 : kGlobalWindow;
    a.scale = cfg_.query_scale;
    a.softcap = cfg_.attn_softcap;
    a.out = o + b * T * H * hd;
    ops::attention(a);
  }
  if (cfg_.post_norms) {
    ops::linear({o, N, l.o, nullptr, false, p});
    ops::rmsnorm({p, l.post_attn_norm, N, D, cfg_.norm_eps, cfg_.norm_offset, p});
    ops::add(x, p, N * D);
  } else {
    ops::linear({o, N, l.o, nullptr, true, x});
  }
}

void GemmaModel::forward(const int32_t* tokens, int64_t B, int64_t T, GemmaState* const* states,
                         bool all_positions, float* logits) const {
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
    GN_CHECK(states[b]->pos + T <= cfg_.max_context, ErrorKind::kInvalidArgument,
             "context length exceeded: " + std::to_string(states[b]->pos + T) + " tokens > " +
                 std::to_string(cfg_.max_context) + " (the model's max_position_embeddings)");
  }
  for (int64_t i = 0; i < B * T; ++i) {
    GN_CHECK(tokens[i] >= 0 && tokens[i] < cfg_.vocab_size, ErrorKind::kInvalidArgument,
             "token id " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                 " is outside the vocabulary [0, " + std::to_string(cfg_.vocab_size) + ")");
  }
  // Atomic: pos and the ring slots a call overwrites (a sliding layer that has reached W slots;
  // below that, and in a global layer, a call only writes past pos) are saved first and put
  // back if anything throws -- an interrupt (ops/interrupt.h), running out of memory.
  const int64_t row = cfg_.kv_heads * cfg_.head_dim;
  struct Saved {
    size_t layer;
    int64_t first, count;  // ring slots first, first + 1, ... (mod W)
    std::vector<float> k, v;
  };
  std::vector<int64_t> start(B);
  std::vector<std::vector<Saved>> saved(B);
  for (int64_t b = 0; b < B; ++b) {
    GemmaState& st = *states[b];
    start[b] = st.pos;
    reserve(st, st.pos + T);  // growing keeps every position where it is
    for (size_t i = 0; i < layers_.size(); ++i) {
      if (!cfg_.sliding[i] || st.slots[i] < cfg_.window) continue;
      const int64_t W = cfg_.window, count = std::min(T, W);
      Saved sv{i, (st.pos + T - count) % W, count, std::vector<float>(count * row),
               std::vector<float>(count * row)};
      for (int64_t j = 0; j < count; ++j) {
        const int64_t slot = (sv.first + j) % W;
        std::copy_n(st.k[i].data() + slot * row, row, sv.k.data() + j * row);
        std::copy_n(st.v[i].data() + slot * row, row, sv.v.data() + j * row);
      }
      saved[b].push_back(std::move(sv));
    }
  }
  try {
    ops::InterruptibleScope interruptible(true);
    run(tokens, B, T, states, all_positions, logits);
  } catch (...) {
    for (int64_t b = 0; b < B; ++b) {
      GemmaState& st = *states[b];
      st.pos = start[b];
      for (const Saved& sv : saved[b]) {
        for (int64_t j = 0; j < sv.count; ++j) {
          const int64_t slot = (sv.first + j) % cfg_.window;
          std::copy_n(sv.k.data() + j * row, row, st.k[sv.layer].data() + slot * row);
          std::copy_n(sv.v.data() + j * row, row, st.v[sv.layer].data() + slot * row);
        }
      }
    }
    throw;
  }
}

void GemmaModel::run(const int32_t* tokens, int64_t B, int64_t T, GemmaState* const* states,
                     bool all_positions, float* logits) const {
  std::vector<int64_t> start(B);
  for (int64_t b = 0; b < B; ++b) start[b] = states[b]->pos;
  const std::vector<int32_t> pos = batch_positions(start, T);
  const int64_t N = B * T, D = cfg_.width, F = cfg_.mlp_width;
  const int64_t Hhd = cfg_.num_heads * cfg_.head_dim, KVhd = cfg_.kv_heads * cfg_.head_dim;
  std::vector<float> x(N * D), h(N * D), f(2 * N * F);
  std::vector<float> scratch(N * (2 * Hhd + 2 * KVhd + D));
  std::vector<float> normed((all_positions ? B * T : B) * cfg_.width);

  ops::embedding({embed_, tokens, N, cfg_.embed_scale, x.data()});
  for (size_t li = 0; li < layers_.size(); ++li) {
    ops::check_interrupt();
    const Layer& l = layers_[li];
    ops::rmsnorm({x.data(), l.attn_norm, N, D, cfg_.norm_eps, cfg_.norm_offset, h.data()});
    attention(li, h.data(), B, T, pos.data(), states, x.data(), scratch.data());
    ops::rmsnorm({x.data(), l.mlp_norm, N, D, cfg_.norm_eps, cfg_.norm_offset, h.data()});
    float* g = f.data();
    float* u = g + N * F;
    ops::linear({h.data(), N, l.gate, nullptr, false, g});
    ops::linear({h.data(), N, l.up, nullptr, false, u});
    ops::GegluArgs ga{g, u, N * F, g};
    ga.f16_table = cfg_.gelu_f16_table;
    ops::geglu(ga);
    if (cfg_.post_norms) {
      ops::linear({g, N, l.down, nullptr, false, h.data()});
      ops::rmsnorm({h.data(), l.post_mlp_norm, N, D, cfg_.norm_eps, cfg_.norm_offset, h.data()});
      ops::add(x.data(), h.data(), N * D);
    } else {
      ops::linear({g, N, l.down, nullptr, true, x.data()});
    }
  }
  lm_head(ops::cpu_backend(),
          {&embed_, final_norm_, cfg_.norm_eps, cfg_.norm_offset, cfg_.final_softcap}, x.data(),
          normed.data(), B, T, all_positions, logits);
  for (int64_t b = 0; b < B; ++b) states[b]->pos += T;
}

}  // namespace gemma_native::model
