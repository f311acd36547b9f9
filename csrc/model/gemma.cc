#include "model/gemma.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <string>

#include "model/common.h"

namespace gemma_native::model {
namespace {

std::atomic<uint64_t> g_next_layout{1u << 30};  // distinct from Griffin's ids
constexpr int64_t kGlobalWindow = int64_t{1} << 40;  // "no window" for global layers

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
  // Bounds that keep every cache size computation far from overflow (positions are int32).
  GN_CHECK(max_context <= (int64_t{1} << 31) && window <= max_context, ErrorKind::kModelFormat,
           "config: the sliding window must not exceed the context length (<= 2^31)");
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
  s->slots.assign(n, 0);
  const int64_t row = cfg_.kv_heads * cfg_.head_dim;
  for (size_t i = 0; i < n; ++i) {
    if (cfg_.sliding[i]) {  // fixed ring of W slots
      s->slots[i] = cfg_.window;
      s->k[i].assign(cfg_.window * row, 0.0f);
      s->v[i].assign(cfg_.window * row, 0.0f);
    }
  }
  s->layout_id = layout_id_;
  return s;
}

int64_t GemmaModel::state_floats(int64_t pos) const {
  const int64_t row = cfg_.kv_heads * cfg_.head_dim;
  int64_t n = 0;
  for (size_t i = 0; i < layers_.size(); ++i) n += 2 * row * (cfg_.sliding[i] ? cfg_.window : pos);
  return n;
}

void GemmaModel::export_state(const GemmaState& s, float* out) const {
  GN_CHECK(s.layout_id == layout_id_, ErrorKind::kInvalidArgument,
           "state was not made by this model");
  const int64_t row = cfg_.kv_heads * cfg_.head_dim;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const int64_t n = row * (cfg_.sliding[i] ? cfg_.window : s.pos);
    std::copy(s.k[i].begin(), s.k[i].begin() + n, out);
    std::copy(s.v[i].begin(), s.v[i].begin() + n, out + n);
    out += 2 * n;
  }
}

void GemmaModel::import_state(GemmaState* s, const float* data, int64_t pos) const {
  GN_CHECK(s->layout_id == layout_id_, ErrorKind::kInvalidArgument,
           "state was not made by this model");
  GN_CHECK(pos >= 0 && pos <= cfg_.max_context, ErrorKind::kInvalidArgument,
           "position must be in [0, " + std::to_string(cfg_.max_context) + "]");
  const int64_t row = cfg_.kv_heads * cfg_.head_dim;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const int64_t slots = cfg_.sliding[i] ? cfg_.window : pos;
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
    if (!sliding && st.pos + T > st.slots[li]) {  // grow the global cache (positions kept)
      const int64_t need = st.pos + T;
      GN_CHECK(need <= cfg_.max_context, ErrorKind::kInvalidArgument,
               "context length exceeded: " + std::to_string(need) + " tokens > " +
                   std::to_string(cfg_.max_context) + " (the model's max_position_embeddings)");
      const int64_t cap = std::min(cfg_.max_context, std::max(need, 2 * st.slots[li] + 64));
      st.k[li].resize(cap * row, 0.0f);
      st.v[li].resize(cap * row, 0.0f);
      st.slots[li] = cap;
    }
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
  std::vector<int64_t> start(B);
  for (int64_t b = 0; b < B; ++b) {
    GN_CHECK(states[b] != nullptr && states[b]->layout_id == layout_id_,
             ErrorKind::kInvalidArgument,
             "forward: state " + std::to_string(b) + " was not made by this model");
    for (int64_t c = 0; c < b; ++c) {
      GN_CHECK(states[c] != states[b], ErrorKind::kInvalidArgument,
               "forward: the same state appears twice in one batch");
    }
    GN_CHECK(states[b]->pos + T <= cfg_.max_context, ErrorKind::kInvalidArgument,
             "context length exceeded: " + std::to_string(states[b]->pos + T) + " tokens > " +
                 std::to_string(cfg_.max_context) + " (the model's max_position_embeddings)");
    start[b] = states[b]->pos;
  }
  const std::vector<int32_t> pos = batch_positions(start, T);
  const int64_t N = B * T, D = cfg_.width, F = cfg_.mlp_width;
  const int64_t Hhd = cfg_.num_heads * cfg_.head_dim, KVhd = cfg_.kv_heads * cfg_.head_dim;
  std::vector<float> x(N * D), h(N * D), f(2 * N * F);
  std::vector<float> scratch(N * (2 * Hhd + 2 * KVhd + D));

  ops::embedding({embed_, tokens, N, cfg_.embed_scale, x.data()});
  for (size_t li = 0; li < layers_.size(); ++li) {
    const Layer& l = layers_[li];
    ops::rmsnorm({x.data(), l.attn_norm, N, D, cfg_.norm_eps, cfg_.norm_offset, h.data()});
    attention(li, h.data(), B, T, pos.data(), states, x.data(), scratch.data());
    ops::rmsnorm({x.data(), l.mlp_norm, N, D, cfg_.norm_eps, cfg_.norm_offset, h.data()});
    float* g = f.data();
    float* u = g + N * F;
    ops::linear({h.data(), N, l.gate, nullptr, false, g});
    ops::linear({h.data(), N, l.up, nullptr, false, u});
    ops::geglu({g, u, N * F, g});
    if (cfg_.post_norms) {
      ops::linear({g, N, l.down, nullptr, false, h.data()});
      ops::rmsnorm({h.data(), l.post_mlp_norm, N, D, cfg_.norm_eps, cfg_.norm_offset, h.data()});
      ops::add(x.data(), h.data(), N * D);
    } else {
      ops::linear({g, N, l.down, nullptr, true, x.data()});
    }
  }
  for (int64_t b = 0; b < B; ++b) states[b]->pos += T;
  std::vector<float> normed((all_positions ? B * T : B) * cfg_.width);
  lm_head(ops::cpu_backend(),
          {&embed_, final_norm_, cfg_.norm_eps, cfg_.norm_offset, cfg_.final_softcap}, x.data(),
          normed.data(), B, T, all_positions, logits);
}

}  // namespace gemma_native::model
