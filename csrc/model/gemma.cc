#include "model/gemma.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "model/common.h"
#include "ops/interrupt.h"

namespace gemma_native::model {
namespace {

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

int64_t GemmaCacheShape::slots_at(size_t layer, int64_t at) const {
  return sliding[layer] ? std::min(at, window) : at;
}

int64_t GemmaState::nbytes() const {
  int64_t n = 0;
  for (size_t i = 0; i < k.size(); ++i) n += static_cast<int64_t>(k[i].bytes() + v[i].bytes());
  return n;
}

std::unique_ptr<State> GemmaState::clone() const {
  StateClaim claim({&in_use}, "clone");
  ops::SerialScope serial(*backend);
  auto s = std::make_unique<GemmaState>();
  s->pos = pos;
  s->layout_id = layout_id;
  s->shape = shape;
  s->backend = backend;
  s->slots = slots;
  for (size_t i = 0; i < k.size(); ++i) {
    s->k.emplace_back(*backend, k[i].size());
    s->v.emplace_back(*backend, v[i].size());
    backend->copy(s->k[i].data(), k[i].data(), k[i].bytes());
    backend->copy(s->v[i].data(), v[i].data(), v[i].bytes());
  }
  backend->synchronize();
  return s;
}

int64_t GemmaState::saved_floats(int64_t at) const {
  int64_t n = 0;
  for (size_t i = 0; i < shape->sliding.size(); ++i) n += 2 * shape->row * shape->slots_at(i, at);
  return n;
}

std::vector<float> GemmaState::save() const {
  StateClaim claim({&in_use}, "save");
  ops::SerialScope serial(*backend);
  std::vector<float> all(saved_floats(pos));
  float* out = all.data();
  for (size_t i = 0; i < k.size(); ++i) {
    const int64_t n = shape->row * shape->slots_at(i, pos);
    backend->to_host(out, k[i].data(), n * sizeof(float));
    backend->to_host(out + n, v[i].data(), n * sizeof(float));
    out += 2 * n;
  }
  return all;
}

void GemmaState::restore(const float* data, int64_t at) {
  GN_CHECK(at >= 0 && at <= shape->max_context, ErrorKind::kInvalidArgument,
           "position must be in [0, " + std::to_string(shape->max_context) + "]");
  StateClaim claim({&in_use}, "restore");
  ops::SerialScope serial(*backend);
  for (size_t i = 0; i < k.size(); ++i) {
    const int64_t n = shape->row * shape->slots_at(i, at);
    ops::Buffer<float> nk(*backend, n), nv(*backend, n);
    backend->to_device(nk.data(), data, n * sizeof(float));
    backend->to_device(nv.data(), data + n, n * sizeof(float));
    k[i] = std::move(nk);
    v[i] = std::move(nv);
    slots[i] = shape->slots_at(i, at);
    data += 2 * n;
  }
  backend->synchronize();
  pos = at;
}

void GemmaState::reserve(int64_t end) {
  const int64_t row = shape->row;
  for (size_t i = 0; i < k.size(); ++i) {
    const int64_t limit = shape->sliding[i] ? shape->window : shape->max_context;
    const int64_t need = std::min(limit, end);
    if (slots[i] >= need) continue;
    const int64_t cap = std::min(limit, std::max({need, 2 * slots[i], kMinSlots}));
    ops::Buffer<float> nk(*backend, cap * row), nv(*backend, cap * row);  // zero-filled
    backend->copy(nk.data(), k[i].data(), k[i].bytes());
    backend->copy(nv.data(), v[i].data(), v[i].bytes());
    k[i] = std::move(nk);
    v[i] = std::move(nv);
    slots[i] = cap;
  }
}

GemmaModel::GemmaModel(GemmaConfig cfg, const TensorMap& w, ops::Backend& backend)
    : Decoder(backend, {validated(cfg).vocab_size, cfg.width, cfg.mlp_width}),
      cfg_(std::move(cfg)) {
  const int64_t D = cfg_.width, F = cfg_.mlp_width, H = cfg_.num_heads, KV = cfg_.kv_heads;
  const int64_t hd = cfg_.head_dim;
  auto shape = std::make_shared<GemmaCacheShape>();
  shape->row = KV * hd;
  shape->window = cfg_.window;
  shape->max_context = cfg_.max_context;
  shape->sliding = cfg_.sliding;
  shape_ = std::move(shape);
  embed_ = resident(matrix(need(w, "embed", {cfg_.vocab_size, D}, false), cfg_.float_activations, cfg_.bf16_activations));
  final_norm_ = resident(f32(need(w, "final_norm", {D}, true)), D);
  for (size_t i = 0; i < cfg_.sliding.size(); ++i) {
    Layer l{};
    auto mat = [&](const char* n, int64_t rows, int64_t cols) {
      return resident(matrix(need(w, lname(i, n), {rows, cols}, false), cfg_.float_activations, cfg_.bf16_activations));
    };
    auto vec = [&](const char* n, int64_t len) {
      return resident(f32(need(w, lname(i, n), {len}, true)), len);
    };
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
  if (backend.copies_weights()) {
    GN_CHECK(!cfg_.gelu_f16_table, ErrorKind::kDevice,
             std::string("the ") + backend.name() +
                 " backend has no kernel for llama.cpp's float16-table GELU (GGUF files with "
                 "8-bit activations); load with activations='float32', or on the CPU");
  }
  layout_id_ = next_layout_id();
}

std::unique_ptr<State> GemmaModel::new_state() const {
  auto s = std::make_unique<GemmaState>();
  const size_t n = layers_.size();
  s->shape = shape_;
  s->backend = &backend();
  s->k.resize(n);
  s->v.resize(n);
  s->slots.assign(n, 0);  // nothing allocated until the first call (reserve)
  s->layout_id = layout_id_;
  return s;
}

int64_t GemmaModel::scratch_floats(int64_t n) const {
  const int64_t Hhd = cfg_.num_heads * cfg_.head_dim, KVhd = cfg_.kv_heads * cfg_.head_dim;
  return n * (2 * Hhd + 2 * KVhd + cfg_.width);
}

void GemmaModel::prepare(State& s, int64_t end) const {
  static_cast<GemmaState&>(s).reserve(end);  // forward holds the backend's serial lock
}

void GemmaModel::overwritten(const State& st, int64_t T, std::vector<Piece>* out) const {
  // The ring slots of each sliding layer that has reached W slots; below that, and in a global
  // layer, a call only writes past pos.
  const auto& s = static_cast<const GemmaState&>(st);
  const int64_t row = shape_->row, W = cfg_.window;
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (!cfg_.sliding[i] || s.slots[i] < W) continue;
    const int64_t count = std::min(T, W), first = (s.pos + T - count) % W;
    const int64_t run1 = std::min(count, W - first);
    for (float* ring : {s.k[i].data(), s.v[i].data()}) {
      out->push_back({ring + first * row, run1 * row});
      if (count > run1) out->push_back({ring, (count - run1) * row});
    }
  }
}

void GemmaModel::graph_key(const State& st, std::vector<uintptr_t>* key) const {
  const auto& s = static_cast<const GemmaState&>(st);
  for (size_t i = 0; i < layers_.size(); ++i) {
    key->push_back(reinterpret_cast<uintptr_t>(s.k[i].data()));
    key->push_back(reinterpret_cast<uintptr_t>(s.v[i].data()));
    key->push_back(static_cast<uintptr_t>(s.slots[i]));
  }
}

void GemmaModel::attention(size_t li, Workspace& w, State* const* states) {
  ops::Backend& be = backend();
  const Layer& l = layers_[li];
  const int64_t B = w.B, T = w.T, N = B * T, H = cfg_.num_heads, KV = cfg_.kv_heads;
  const int64_t hd = cfg_.head_dim, D = cfg_.width;
  const bool sliding = cfg_.sliding[li];
  const float* h = w.h.data();
  const int32_t* pos = w.pos.data();
  float* x = w.x.data();
  float* q = w.scratch.data();  // [N, H*hd]
  float* k = q + N * H * hd;    // [N, KV*hd]
  float* v = k + N * KV * hd;   // [N, KV*hd]
  float* o = v + N * KV * hd;   // [N, H*hd]
  float* p = o + N * H * hd;    // [N, D]
  be.linear({h, N, l.q, nullptr, false, q});
  be.linear({h, N, l.k, nullptr, false, k});
  be.linear({h, N, l.v, nullptr, false, v});
  if (cfg_.qk_norm) {  // per-head RMSNorm before RoPE (Gemma 3), in place
    be.rmsnorm({q, l.q_norm, N * H, hd, cfg_.norm_eps, cfg_.norm_offset, q});
    be.rmsnorm({k, l.k_norm, N * KV, hd, cfg_.norm_eps, cfg_.norm_offset, k});
  }
  const float base = sliding ? cfg_.rope_base_local : cfg_.rope_base_global;
  const float factor = sliding ? 1.0f : cfg_.rope_factor_global;
  be.rope({q, pos, N, H, hd, hd, base, factor});
  be.rope({k, pos, N, KV, hd, hd, base, factor});
  const int64_t row = KV * hd;
  for (int64_t b = 0; b < B; ++b) {
    auto& st = static_cast<GemmaState&>(*states[b]);
    ops::AttentionArgs a;
    a.q = q + b * T * H * hd;
    a.k = k + b * T * row;
    a.v = v + b * T * row;
    a.pos = pos + b * T;
    a.k_cache = st.k[li].data();
    a.v_cache = st.v[li].data();
    a.count = w.counts.data() + b;
    a.host_count = &st.pos;
    a.batch = 1;
    a.time = T;
    a.heads = H;
    a.kv_heads = KV;
    a.head_dim = hd;
    a.slots = st.slots[li];
    // Sliding: keys i - W < j <= i, the op's n - p <= W - 1.  Global: every earlier key (no
    // position is max_context before another).
    a.window = sliding ? cfg_.window - 1 : cfg_.max_context;
    a.scale = cfg_.query_scale;
    a.softcap = cfg_.attn_softcap;
    a.out = o + b * T * H * hd;
    be.attention(a);
  }
  if (cfg_.post_norms) {
    be.linear({o, N, l.o, nullptr, false, p});
    be.rmsnorm({p, l.post_attn_norm, N, D, cfg_.norm_eps, cfg_.norm_offset, p});
    be.add({x, p, N * D});
  } else {
    be.linear({o, N, l.o, nullptr, true, x});
  }
}

void GemmaModel::run_layers(Workspace& w, State* const* states) {
  ops::Backend& be = backend();
  const int64_t B = w.B, T = w.T, N = B * T, D = cfg_.width, F = cfg_.mlp_width;
  float* x = w.x.data();
  float* h = w.h.data();
  ops::EmbeddingArgs ea{embed_, w.tokens.data(), N, cfg_.embed_scale, x};
  ea.host_ids = w.host_tokens;
  be.embedding(ea);
  for (size_t li = 0; li < layers_.size(); ++li) {
    ops::check_interrupt();
    const Layer& l = layers_[li];
    be.rmsnorm({x, l.attn_norm, N, D, cfg_.norm_eps, cfg_.norm_offset, h});
    attention(li, w, states);
    be.rmsnorm({x, l.mlp_norm, N, D, cfg_.norm_eps, cfg_.norm_offset, h});
    float* g = w.f.data();
    float* u = g + N * F;
    be.linear({h, N, l.gate, nullptr, false, g});
    be.linear({h, N, l.up, nullptr, false, u});
    ops::GegluArgs ga{g, u, N * F, g};
    ga.f16_table = cfg_.gelu_f16_table;
    be.geglu(ga);
    if (cfg_.post_norms) {
      be.linear({g, N, l.down, nullptr, false, h});
      be.rmsnorm({h, l.post_mlp_norm, N, D, cfg_.norm_eps, cfg_.norm_offset, h});
      be.add({x, h, N * D});
    } else {
      be.linear({g, N, l.down, nullptr, true, x});
    }
  }
  if (!w.head) return;
  lm_head(be, {&embed_, final_norm_, cfg_.norm_eps, cfg_.norm_offset, cfg_.final_softcap}, x, h,
          B, T, w.all_positions, w.logits_out);
}

}  // namespace gemma_native::model
