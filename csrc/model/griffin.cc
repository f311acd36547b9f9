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
    : Decoder(backend, {validated(cfg).vocab_size, cfg.width, cfg.mlp_width}),
      cfg_(std::move(cfg)) {
  const int64_t D = cfg_.width, L = cfg_.lru_width, F = cfg_.mlp_width, H = cfg_.num_heads;
  const int64_t hd = cfg_.head_dim, KV = cfg_.kv_heads, K = cfg_.conv_width, bs = L / H;
  embed_ = resident(matrix(need(w, "embed", {cfg_.vocab_size, D}, false), cfg_.float_activations, cfg_.bf16_activations));
  final_norm_ = resident(f32(need(w, "final_norm", {D}, true)), D);
  int64_t offset = 0;
  for (size_t i = 0; i < cfg_.blocks.size(); ++i) {
    Layer l{};
    l.type = cfg_.blocks[i];
    auto mat = [&](const char* n, std::vector<int64_t> shape) {
      return resident(
          matrix(need(w, layer_name(i, n), std::move(shape), false), cfg_.float_activations, cfg_.bf16_activations));
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
  layout_id_ = next_layout_id();
}

std::unique_ptr<State> GriffinState::clone() const {
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

std::vector<float> GriffinState::save() const {
  StateClaim claim({&in_use}, "save");
  ops::Backend& be = *data.backend();
  ops::SerialScope serial(be);
  std::vector<float> out(data.size());
  be.to_host(out.data(), data.data(), data.bytes());
  return out;
}

void GriffinState::restore(const float* host, int64_t at) {
  GN_CHECK(at >= 0 && at < INT32_MAX, ErrorKind::kInvalidArgument,
           "position must be in [0, 2^31 - 1)");
  StateClaim claim({&in_use}, "restore");
  ops::Backend& be = *data.backend();
  ops::SerialScope serial(be);
  be.to_device(data.data(), host, data.bytes());
  be.synchronize();
  pos = at;
}

std::unique_ptr<State> GriffinModel::new_state() const {
  auto s = std::make_unique<GriffinState>();
  s->data = ops::Buffer<float>(backend(), state_floats_);  // zero-filled
  s->layout_id = layout_id_;
  return s;
}

int64_t GriffinModel::scratch_floats(int64_t n) const {
  const int64_t Hhd = cfg_.num_heads * cfg_.head_dim, KVhd = cfg_.kv_heads * cfg_.head_dim;
  return std::max(5 * n * cfg_.lru_width, n * (2 * Hhd + 2 * KVhd));
}

namespace {
float* state_data(State* s) { return static_cast<GriffinState*>(s)->data.data(); }
}  // namespace

void GriffinModel::overwritten(const State& st, int64_t T, std::vector<Piece>* out) const {
  // Each recurrent layer's h and conv taps, and the ring slots of each attention layer that the
  // new tokens land in.
  float* base = static_cast<const GriffinState&>(st).data.data();
  const int64_t W = cfg_.window, row = cfg_.kv_heads * cfg_.head_dim;
  for (const Layer& l : layers_) {
    if (l.type == BlockType::kRecurrent) {
      out->push_back({base + l.state_offset, cfg_.conv_width * cfg_.lru_width});  // h, taps
      continue;
    }
    const int64_t count = std::min(T, W), first = (st.pos + T - count) % W;
    const int64_t run1 = std::min(count, W - first);  // slots first.. then wrapped to 0..
    for (int64_t kv = 0; kv < 2; ++kv) {
      float* ring = base + l.state_offset + kv * W * row;
      out->push_back({ring + first * row, run1 * row});
      if (count > run1) out->push_back({ring, (count - run1) * row});
    }
  }
}

void GriffinModel::graph_key(const State& s, std::vector<uintptr_t>* key) const {
  key->push_back(reinterpret_cast<uintptr_t>(static_cast<const GriffinState&>(s).data.data()));
}

void GriffinModel::recurrent_block(const Layer& l, Workspace& w, State* const* states) {
  ops::Backend& be = backend();
  const int64_t B = w.B, T = w.T;
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
    float* st = state_data(states[b]) + l.state_offset;
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
  const bool bf16 = cfg_.bf16_activations;  // the gates join the bf16 compute mode
  be.block_diag_linear({c, N, H, L / H, l.gx_w, l.gx_dtype, l.gx_b, gx, bf16});
  be.block_diag_linear({c, N, H, L / H, l.ga_w, l.ga_dtype, l.ga_b, ga, bf16});
  for (int64_t b = 0; b < B; ++b) {
    ops::RgLruArgs ra;
    ra.x = c + b * T * L;
    ra.gate_x = gx + b * T * L;
    ra.gate_a = ga + b * T * L;
    ra.a_param = l.a_param;
    ra.pos = pos + b * T;
    ra.h = state_data(states[b]) + l.state_offset;
    ra.batch = 1;
    ra.time = T;
    ra.channels = L;
    ra.y = u + b * T * L;
    be.rglru_scan(ra);
  }
  be.geglu({y, u, N * L, u});
  be.linear({u, N, l.lin_out, l.lin_out_b, true, w.x.data()});
}

void GriffinModel::attention_block(const Layer& l, Workspace& w, State* const* states) {
  ops::Backend& be = backend();
  const int64_t B = w.B, T = w.T;
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
    float* st = state_data(states[b]) + l.state_offset;
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

void GriffinModel::run_layers(Workspace& w, State* const* states) {
  ops::Backend& be = backend();
  const int64_t B = w.B, T = w.T, N = B * T, D = cfg_.width, F = cfg_.mlp_width;
  ops::EmbeddingArgs ea{embed_, w.tokens.data(), N, cfg_.embed_scale, w.x.data()};
  ea.host_ids = w.host_tokens;
  be.embedding(ea);
  for (const Layer& l : layers_) {
    ops::check_interrupt();
    be.rmsnorm({w.x.data(), l.pre_norm, N, D, cfg_.norm_eps, cfg_.norm_offset, w.h.data()});
    if (l.type == BlockType::kRecurrent) {
      recurrent_block(l, w, states);
    } else {
      attention_block(l, w, states);
    }
    be.rmsnorm({w.x.data(), l.mlp_norm, N, D, cfg_.norm_eps, cfg_.norm_offset, w.h.data()});
    float* g = w.f.data();
    float* u = g + N * F;
    be.linear({w.h.data(), N, l.gate, l.gate_b, false, g});
    be.linear({w.h.data(), N, l.up, l.up_b, false, u});
    be.geglu({g, u, N * F, g});
    be.linear({g, N, l.down, l.down_b, true, w.x.data()});
  }
  if (!w.head) return;
  lm_head(be, {&embed_, final_norm_, cfg_.norm_eps, cfg_.norm_offset, cfg_.logits_soft_cap},
          w.x.data(), w.h.data(), B, T, w.all_positions, w.logits_out);
}

}  // namespace gemma_native::model
