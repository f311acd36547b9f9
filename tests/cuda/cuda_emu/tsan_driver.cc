// Runs every CUDA kernel (every op of ops/op_list.h with a CUDA kernel) on the SIMT emulator
// over small inputs, for sanitizer builds: tests/cuda/test_cuda_emu_tools.py compiles this with
// -fsanitize=thread (races, missing barriers) and with -fsanitize=address (out-of-bounds global
// reads/writes),
// together with ops/cuda/emu/*.cc and ops/checks.cc, and requires clean runs.  Every buffer is its
// own heap allocation of exactly its size, so ASan sees a read one past any of them.
// (What the kernels compute is checked against the CPU ops by tests/cuda/test_cuda_emu*.py; here
// the point is how they synchronise, so the shapes cover the cases that change that: lengths
// that are not whole warps, several blocks, batch > 1, ring-buffer wrap-around.)
// Prints "ran <op>" per op; exits 4 if an op of the list has no case here.
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "ops/cuda/ops_cuda.h"
#include "gemma_native/dtype.h"

namespace {

using namespace gemma_native;

struct Rng {
  uint64_t s = 0x9E3779B97F4A7C15ull;
  float uniform() {  // splitmix64 -> [-1, 1)
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return static_cast<float>(z >> 40) / static_cast<float>(1 << 23) - 1.0f;
  }
  std::vector<float> vec(int64_t n, float scale = 1.0f) {
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = uniform() * scale;
    return v;
  }
};

void case_rmsnorm(Rng& r) {
  for (auto [n, d] : {std::pair<int64_t, int64_t>{3, 37}, {2, 300}, {1, 1}}) {
    auto x = r.vec(n * d), w = r.vec(d);
    std::vector<float> out(x.size());
    ops::RmsNormArgs a;
    a.x = x.data();
    a.w = w.data();
    a.n = n;
    a.d = d;
    a.out = out.data();
    ops::emu::rmsnorm(a);
  }
}

void case_conv1d(Rng& r) {
  // widths 1 and 4; T shorter and longer than the carried state; a document start mid-chunk;
  // channels not a multiple of the block (128) and over it.
  for (auto [K, B, T, L] : {std::tuple<int64_t, int64_t, int64_t, int64_t>{4, 2, 1, 37},
                            {4, 1, 6, 130}, {1, 2, 3, 5}}) {
    auto x = r.vec(B * T * L), w = r.vec(K * L), bias = r.vec(L), state = r.vec(B * (K - 1) * L);
    std::vector<int32_t> pos(B * T);
    for (int64_t i = 0; i < B * T; ++i) pos[i] = static_cast<int32_t>(i % T == 2 ? 0 : 5 + i);
    std::vector<float> y(x.size());
    ops::Conv1dArgs a;
    a.x = x.data();
    a.pos = pos.data();
    a.w = w.data();
    a.bias = bias.data();
    a.state = K > 1 ? state.data() : nullptr;
    a.batch = B;
    a.time = T;
    a.channels = L;
    a.width = K;
    a.y = y.data();
    ops::emu::conv1d(a);
  }
}

void case_block_diag_linear(Rng& r) {
  for (auto [N, H, bs] : {std::tuple<int64_t, int64_t, int64_t>{1, 2, 40}, {5, 3, 33}}) {
    auto x = r.vec(N * H * bs), w = r.vec(H * bs * bs), b = r.vec(H * bs);
    std::vector<float> y(x.size());
    ops::emu::block_diag_linear({x.data(), N, H, bs, w.data(), DType::kF32, b.data(), y.data()});
  }
}

void case_rglru_scan(Rng& r) {
  for (auto [B, T, L] : {std::tuple<int64_t, int64_t, int64_t>{2, 1, 37}, {1, 5, 150},
                        {2, 130, 40}}) {  // the last: the chunked path (3 chunks)
    auto x = r.vec(B * T * L), gx = r.vec(B * T * L), ga = r.vec(B * T * L), ap = r.vec(L);
    auto h = r.vec(B * L);
    std::vector<int32_t> pos(B * T);
    for (int64_t i = 0; i < B * T; ++i) pos[i] = static_cast<int32_t>(i == 3 ? 0 : i + 1);
    std::vector<float> y(x.size());
    ops::RgLruArgs a;
    a.x = x.data();
    a.gate_x = gx.data();
    a.gate_a = ga.data();
    a.a_param = ap.data();
    a.pos = pos.data();
    a.h = h.data();
    a.batch = B;
    a.time = T;
    a.channels = L;
    a.y = y.data();
    ops::emu::rglru_scan(a);
  }
}

void case_embedding(Rng& r) {
  const int64_t V = 11, D = 37;
  auto table = r.vec(V * D);
  std::vector<int32_t> ids = {0, 10, 3, 3, 7};
  std::vector<float> out(ids.size() * D);
  ops::emu::embedding({{table.data(), DType::kF32, V, D}, ids.data(),
                       static_cast<int64_t>(ids.size()), 1.5f, out.data()});
}

void case_rope(Rng& r) {
  for (auto [N, H, hd, rot] : {std::tuple<int64_t, int64_t, int64_t, int64_t>{3, 2, 16, 8},
                               {2, 1, 256, 256}}) {
    auto x = r.vec(N * H * hd);
    std::vector<int32_t> pos(N);
    for (int64_t i = 0; i < N; ++i) pos[i] = static_cast<int32_t>(1000 * i + 1);
    ops::emu::rope({x.data(), pos.data(), N, H, hd, rot, 10000.0f});
  }
}

void case_geglu(Rng& r) {
  auto g = r.vec(300), u = r.vec(300);
  ops::emu::geglu({g.data(), u.data(), 300, g.data()});  // out aliases gate, as the model does
}

void case_softcap(Rng& r) {
  auto x = r.vec(555, 50.0f);
  ops::SoftcapArgs a;
  a.x = x.data();
  a.n = 555;
  a.cap = 30.0f;
  ops::emu::softcap(a);
}

void case_add(Rng& r) {
  auto x = r.vec(1000), y = r.vec(1000);
  ops::emu::add({x.data(), y.data(), 1000});
  ops::emu::add({x.data(), x.data(), 77});  // y aliasing x
}

void case_linear(Rng& r) {
  // GEMV (N <= 8) with the 16-byte path (K % 8 == 0) and the scalar one; tiled GEMM (N > 8)
  // with partial tiles; accumulate and bias.
  for (auto [N, M, K] : {std::tuple<int64_t, int64_t, int64_t>{1, 19, 64}, {3, 9, 37},
                         {20, 70, 33}}) {
    auto x = r.vec(N * K), b = r.vec(M);
    std::vector<uint16_t> w(M * K);
    for (auto& v : w) v = f32_to_bf16(r.uniform());
    std::vector<float> y(N * M, 1.0f);
    ops::LinearArgs a;
    a.x = x.data();
    a.n = N;
    a.w = {w.data(), DType::kBF16, M, K};
    a.bias = b.data();
    a.accumulate = true;
    a.y = y.data();
    ops::emu::linear(a);
  }
  // Q8_0 blocks (34 bytes per 32 values) widened per element, GEMV and GEMM: ASan sees a read
  // past the last block.
  for (int64_t N : {2, 12}) {
    const int64_t M = 5, K = 64;
    auto x = r.vec(N * K);
    std::vector<uint8_t> w(M * (K / 32) * 34);
    for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<uint8_t>(i * 37 + 11);
    for (size_t b = 0; b < w.size(); b += 34) {  // small finite float16 scales
      w[b] = 0x00;
      w[b + 1] = 0x20;
    }
    std::vector<float> y(N * M);
    ops::LinearArgs a;
    a.x = x.data();
    a.n = N;
    a.w = {w.data(), DType::kQ8_0, M, K};
    a.w.float_activations = true;
    a.y = y.data();
    ops::emu::linear(a);
  }
}

void case_attention(Rng& r) {
  // (a) a fresh prefill chunk with a document start inside, GQA 4 -> 2, soft-cap;
  // (b) decode steps against a ring that has wrapped, with enough slots for 2 key splits
  //     (and their combine), MQA 3 -> 1, head_dim 40 (not a multiple of 32), batch 2.
  {
    const int64_t B = 1, T = 7, H = 4, KV = 2, hd = 32;
    auto q = r.vec(B * T * H * hd), k = r.vec(B * T * KV * hd), v = r.vec(B * T * KV * hd);
    std::vector<int32_t> pos = {0, 1, 2, 0, 1, 2, 3};
    std::vector<float> out(q.size());
    ops::AttentionArgs a;
    a.q = q.data();
    a.k = k.data();
    a.v = v.data();
    a.pos = pos.data();
    a.batch = B;
    a.time = T;
    a.heads = H;
    a.kv_heads = KV;
    a.head_dim = hd;
    a.window = 4;
    a.scale = 0.2f;
    a.softcap = 5.0f;
    a.out = out.data();
    ops::emu::attention(a);
  }
  {
    const int64_t B = 2, T = 1, H = 3, KV = 1, hd = 40, S = 300;
    auto q = r.vec(B * T * H * hd), k = r.vec(B * T * KV * hd), v = r.vec(B * T * KV * hd);
    auto kc = r.vec(B * S * KV * hd), vc = r.vec(B * S * KV * hd);
    std::vector<int32_t> pos = {700, 12};
    std::vector<int64_t> count = {700, 12};
    std::vector<float> out(q.size());
    ops::AttentionArgs a;
    a.q = q.data();
    a.k = k.data();
    a.v = v.data();
    a.pos = pos.data();
    a.k_cache = kc.data();
    a.v_cache = vc.data();
    a.count = count.data();
    a.batch = B;
    a.time = T;
    a.heads = H;
    a.kv_heads = KV;
    a.head_dim = hd;
    a.slots = S;
    a.window = S;
    a.scale = 0.15f;
    a.out = out.data();
    ops::emu::attention(a);
  }
  {
    // (c) a Gemma global layer: a cache that has not filled (count + T <= slots, no wrap), a
    //     window as long as the context, head_dim 256 (the kernel's limit), 4 query heads per
    //     kv head, soft-cap, two decode splits.
    const int64_t B = 1, T = 1, H = 4, KV = 1, hd = 256, S = 512;
    auto q = r.vec(B * T * H * hd), k = r.vec(B * T * KV * hd), v = r.vec(B * T * KV * hd);
    auto kc = r.vec(B * S * KV * hd), vc = r.vec(B * S * KV * hd);
    std::vector<int32_t> pos = {300};
    std::vector<int64_t> count = {300};
    std::vector<float> out(q.size());
    ops::AttentionArgs a;
    a.q = q.data();
    a.k = k.data();
    a.v = v.data();
    a.pos = pos.data();
    a.k_cache = kc.data();
    a.v_cache = vc.data();
    a.count = count.data();
    a.batch = B;
    a.time = T;
    a.heads = H;
    a.kv_heads = KV;
    a.head_dim = hd;
    a.slots = S;
    a.window = int64_t{1} << 24;
    a.scale = 0.0625f;
    a.softcap = 50.0f;
    a.out = out.data();
    ops::emu::attention(a);
  }
}

const std::map<std::string, std::function<void(Rng&)>>& cases() {
  static const std::map<std::string, std::function<void(Rng&)>> m = {
      {"rmsnorm", case_rmsnorm},
      {"attention", case_attention},
      {"linear", case_linear},
      {"embedding", case_embedding},
      {"rope", case_rope},
      {"geglu", case_geglu},
      {"softcap", case_softcap},
      {"add", case_add},
      {"conv1d", case_conv1d},
      {"block_diag_linear", case_block_diag_linear},
      {"rglru_scan", case_rglru_scan},
  };
  return m;
}

}  // namespace

int main() {
  Rng rng;
  int missing = 0;
  for (const std::string& op : ops::emu::ops_supported()) {
    auto it = cases().find(op);
    if (it == cases().end()) {
      std::printf("missing case %s\n", op.c_str());
      ++missing;
      continue;
    }
    try {
      it->second(rng);
    } catch (const std::exception& e) {
      std::printf("error %s: %s\n", op.c_str(), e.what());
      return 5;
    }
    std::printf("ran %s\n", op.c_str());
  }
  return missing ? 4 : 0;
}
