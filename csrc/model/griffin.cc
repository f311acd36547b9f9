#include "model/griffin.h"

#include "model/common.h"

#include <atomic>
#include <climits>
#include <cmath>

namespace gemma_native::model {
namespace {

std::atomic<uint64_t> g_next_layout{1};

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
}

GriffinModel::GriffinModel(GriffinConfig cfg, const TensorMap& w) : cfg_(std::move(cfg)) {
  cfg_.validate();
  const int64_t D = cfg_.width, L = cfg_.lru_width, F = cfg_.mlp_width, H = cfg_.num_heads;
  const int64_t hd = cfg_.head_dim, KV = cfg_.kv_heads, K = cfg_.conv_width, bs = L / H;
  embed_ = matrix(need(w, "embed", {cfg_.vocab_size, D}, false), cfg_.float_activations);
  final_norm_ = f32(need(w, "final_norm", {D}, true));
  int64_t offset = 0;
  for (size_t i = 0; i < cfg_.blocks.size(); ++i) {
    Layer l{};
    l.type = cfg_.blocks[i];
    auto mat = [&](const char* n, std::vector<int64_t> shape) {
      return matrix(need(w, layer_name(i, n), std::move(shape), false), cfg_.float_activations);
    };
    auto vec = [&](const char* n, std::vector<int64_t> shape) {
      return f32(need(w, layer_name(i, n), std::move(shape), true));
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
      l.gx_w = gx.data;
      l.gx_dtype = gx.dtype;
      l.ga_w = ga.data;
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

std::unique_ptr<GriffinState> GriffinModel::new_state() const {
  auto s = std::make_unique<GriffinState>();
  s->data.assign(static_cast<size_t>(state_floats_), 0.0f);
  s->layout_id = layout_id_;
  return s;
}

void GriffinModel::recurrent_block(const Layer& l, const float* h, int64_t B, int64_t T,
                                   const int32_t* pos, GriffinState* const* states, float* x,
                                   float* scratch) const {
  const int64_t N = B * T, L = cfg_.lru_width, K = cfg_.conv_width;
  float* y = scratch;          // [N, L]  gelu branch
  float* u = y + N * L;        // [N, L]  linear_x, then RG-LRU output
  float* c = u + N * L;        // [N, L]  conv output
  float* gx = c + N * L;       // [N, L]
  float* ga = gx + N * L;      // [N, L]
  ops::linear({h, N, l.lin_y, l.lin_y_b, false, y});
  ops::linear({h, N, l.lin_x, l.lin_x_b, false, u});
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
    ops::conv1d(ca);
  }
  const int64_t H = cfg_.num_heads;
  ops::block_diag_linear({c, N, H, L / H, l.gx_w, l.gx_dtype, l.gx_b, gx});
  ops::block_diag_linear({c, N, H, L / H, l.ga_w, l.ga_dtype, l.ga_b, ga});
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
    ops::rglru_scan(ra);
  }
  ops::geglu({y, u, N * L, u});
  ops::linear({u, N, l.lin_out, l.lin_out_b, true, x});
}

void GriffinModel::attention_block(const Layer& l, const float* h, int64_t B, int64_t T,
                                   const int32_t* pos, GriffinState* const* states, float* x,
                                   float* scratch) const {
  const int64_t N = B * T, H = cfg_.num_heads, KV = cfg_.kv_heads, hd = cfg_.head_dim;
  const int64_t W = cfg_.window;
  float* q = scratch;             // [N, H*hd]
  float* k = q + N * H * hd;      // [N, KV*hd]
  float* v = k + N * KV * hd;     // [N, KV*hd]
  float* o = v + N * KV * hd;     // [N, H*hd]
  ops::linear({h, N, l.q, nullptr, false, q});
  ops::linear({h, N, l.k, nullptr, false, k});
  ops::linear({h, N, l.v, nullptr, false, v});
  ops::rope({q, pos, N, H, hd, cfg_.rot_dims, cfg_.rope_base});
  ops::rope({k, pos, N, KV, hd, cfg_.rot_dims, cfg_.rope_base});
  for (int64_t b = 0; b < B; ++b) {
    float* st = states[b]->data.data() + l.state_offset;
    ops::AttentionArgs aa;
    aa.q = q + b * T * H * hd;
    aa.k = k + b * T * KV * hd;
    aa.v = v + b * T * KV * hd;
    aa.pos = pos + b * T;
    aa.k_cache = st;
    aa.v_cache = st + W * KV * hd;
    aa.count = &states[b]->pos;
    aa.batch = 1;
    aa.time = T;
    aa.heads = H;
    aa.kv_heads = KV;
    aa.head_dim = hd;
    aa.slots = W;
    aa.window = W;
    aa.scale = 1.0f / std::sqrt(static_cast<float>(hd));
    aa.out = o + b * T * H * hd;
    ops::attention(aa);
  }
  ops::linear({o, N, l.o, l.o_b, true, x});
}

void GriffinModel::forward(const int32_t* tokens, int64_t B, int64_t T,
                           GriffinState* const* states, bool all_positions, float* logits) const {
  GN_CHECK(B > 0 && T > 0, ErrorKind::kShape, "forward: need at least one token per sequence");
  for (int64_t b = 0; b < B; ++b) {
    GN_CHECK(states[b] != nullptr && states[b]->layout_id == layout_id_, ErrorKind::kInvalidArgument,
             "forward: state " + std::to_string(b) + " was not made by this model");
    for (int64_t c = 0; c < b; ++c) {
      GN_CHECK(states[c] != states[b], ErrorKind::kInvalidArgument,
               "forward: the same state appears twice in one batch");
    }
  }
  const int64_t N = B * T, D = cfg_.width, L = cfg_.lru_width, F = cfg_.mlp_width;
  const int64_t Hhd = cfg_.num_heads * cfg_.head_dim, KVhd = cfg_.kv_heads * cfg_.head_dim;
  std::vector<int64_t> start(B);
  for (int64_t b = 0; b < B; ++b) start[b] = states[b]->pos;
  const std::vector<int32_t> pos = batch_positions(start, T);
  std::vector<float> x(N * D), h(N * D), f(2 * N * F);
  const int64_t scratch_floats = std::max(5 * N * L, N * (2 * Hhd + 2 * KVhd));
  std::vector<float> scratch(scratch_floats);

  ops::embedding({embed_, tokens, N, cfg_.embed_scale, x.data()});
  for (const Layer& l : layers_) {
    ops::rmsnorm({x.data(), l.pre_norm, N, D, cfg_.norm_eps, cfg_.norm_offset, h.data()});
    if (l.type == BlockType::kRecurrent) {
      recurrent_block(l, h.data(), B, T, pos.data(), states, x.data(), scratch.data());
    } else {
      attention_block(l, h.data(), B, T, pos.data(), states, x.data(), scratch.data());
    }
    ops::rmsnorm({x.data(), l.mlp_norm, N, D, cfg_.norm_eps, cfg_.norm_offset, h.data()});
    float* g = f.data();
    float* u = g + N * F;
    ops::linear({h.data(), N, l.gate, l.gate_b, false, g});
    ops::linear({h.data(), N, l.up, l.up_b, false, u});
    ops::geglu({g, u, N * F, g});
    ops::linear({g, N, l.down, l.down_b, true, x.data()});
  }
  for (int64_t b = 0; b < B; ++b) states[b]->pos += T;

  lm_head({&embed_, final_norm_, cfg_.norm_eps, cfg_.norm_offset, cfg_.logits_soft_cap}, x.data(),
          B, T, all_positions, logits);
}

}  // namespace gemma_native::model
