// gemma_native._core.device_bench: times one op on a backend with every buffer already in the
// backend's memory (so a GPU run measures the kernel, not PCIe copies), for
// benchmarks/cuda_ops.py.  Runs on any backend ("cpu", "cuda-emu", "cuda"); the emulator's times
// mean nothing, but running there keeps this code tested on machines without a GPU.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "bindings/devices.h"
#include "gemma_native/dtype.h"
#include "ops/backend.h"

namespace gemma_native::bindings {

namespace py = pybind11;

namespace {

// A size parameter: an integer in [1, 2^31), `fallback` when absent.
int64_t get(const py::dict& p, const char* key, int64_t fallback) {
  const int64_t v = p.contains(key) ? p[key].cast<int64_t>() : fallback;
  GN_CHECK(v >= 1 && v < (int64_t{1} << 31), ErrorKind::kInvalidArgument,
           std::string("device_bench: '") + key + "' must be in [1, 2^31), got " +
               std::to_string(v));
  return v;
}

// A buffer of n random values in the backend's memory.
template <class T>
ops::Buffer<T> random_buffer(ops::Backend& be, int64_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<T> host(static_cast<size_t>(n));
  for (auto& v : host) {
    if constexpr (std::is_same<T, uint16_t>::value) {
      v = f32_to_bf16(d(rng));
    } else {
      v = static_cast<T>(d(rng));
    }
  }
  ops::Buffer<T> b(be, n);
  be.to_device(b.data(), host.data(), b.bytes());
  return b;
}

py::dict device_bench(const std::string& device, const std::string& op, const py::dict& p,
                      int iters) {
  GN_CHECK(iters >= 1 && iters <= 1000000, ErrorKind::kInvalidArgument, "iters must be >= 1");
  ops::Backend& be = backend_for(device);
  std::mt19937 rng(1234);
  double bytes = 0.0, flops = 0.0;
  std::function<void()> run;
  // Keeps the buffers alive for the timed loop.
  std::vector<ops::Buffer<float>> f32s;
  std::vector<ops::Buffer<uint16_t>> b16s;
  std::vector<ops::Buffer<int32_t>> i32s;
  std::vector<ops::Buffer<int64_t>> i64s;
  auto f32 = [&](int64_t n) { f32s.push_back(random_buffer<float>(be, n, rng)); return f32s.back().data(); };

  if (op == "linear") {  // y[N, M] = x[N, K] W[M, K]^T, W bf16
    const int64_t M = get(p, "rows", 2560), K = get(p, "cols", 2560), N = get(p, "n", 1);
    b16s.push_back(random_buffer<uint16_t>(be, M * K, rng, 0.02f));
    ops::LinearArgs a;
    a.w = {b16s.back().data(), DType::kBF16, M, K};
    a.x = f32(N * K);
    a.n = N;
    a.y = f32(N * M);
    run = [&be, a] { be.linear(a); };
    bytes = 2.0 * M * K + 4.0 * N * (K + M);
    flops = 2.0 * M * K * N;
  } else if (op == "attention_decode") {  // one new token against a full ring of S slots
    const int64_t H = get(p, "heads", 10), KV = get(p, "kv_heads", 1), hd = get(p, "head_dim", 256);
    const int64_t S = get(p, "slots", 2048), B = get(p, "batch", 1);
    ops::AttentionArgs a;
    a.batch = B;
    a.time = 1;
    a.heads = H;
    a.kv_heads = KV;
    a.head_dim = hd;
    a.slots = S;
    a.window = S;
    a.scale = 1.0f / std::sqrt(static_cast<float>(hd));
    a.q = f32(B * H * hd);
    a.k = f32(B * KV * hd);
    a.v = f32(B * KV * hd);
    a.k_cache = f32(B * S * KV * hd);
    a.v_cache = f32(B * S * KV * hd);
    a.out = f32(B * H * hd);
    std::vector<int32_t> pos(B, static_cast<int32_t>(4 * S));
    std::vector<int64_t> count(B, 4 * S);
    i32s.emplace_back(be, B);
    be.to_device(i32s.back().data(), pos.data(), i32s.back().bytes());
    a.pos = i32s.back().data();
    i64s.emplace_back(be, B);
    be.to_device(i64s.back().data(), count.data(), i64s.back().bytes());
    a.count = i64s.back().data();
    auto host_count = std::make_shared<std::vector<int64_t>>(count);
    a.host_count = host_count->data();
    run = [&be, a, host_count] { be.attention(a); };
    bytes = 2.0 * 4.0 * B * S * KV * hd;
    flops = 4.0 * B * S * H * hd;
  } else if (op == "rglru_scan") {
    const int64_t B = get(p, "batch", 1), T = get(p, "time", 1), L = get(p, "channels", 2560);
    ops::RgLruArgs a;
    a.batch = B;
    a.time = T;
    a.channels = L;
    a.x = f32(B * T * L);
    a.gate_x = f32(B * T * L);
    a.gate_a = f32(B * T * L);
    a.a_param = f32(L);
    a.h = f32(B * L);
    a.y = f32(B * T * L);
    std::vector<int32_t> pos(B * T, 7);
    i32s.emplace_back(be, B * T);
    be.to_device(i32s.back().data(), pos.data(), i32s.back().bytes());
    a.pos = i32s.back().data();
    run = [&be, a] { be.rglru_scan(a); };
    bytes = 4.0 * (4.0 * B * T * L + 2.0 * B * L + L);
    flops = 20.0 * B * T * L;
  } else if (op == "rmsnorm") {
    const int64_t N = get(p, "n", 1), D = get(p, "d", 2560);
    ops::RmsNormArgs a;
    a.x = f32(N * D);
    a.w = f32(D);
    a.n = N;
    a.d = D;
    a.out = f32(N * D);
    run = [&be, a] { be.rmsnorm(a); };
    bytes = 4.0 * (2.0 * N * D + D);
    flops = 4.0 * N * D;
  } else {
    fail(ErrorKind::kInvalidArgument,
         "device_bench: unknown op '" + op + "' (linear, attention_decode, rglru_scan, rmsnorm)");
  }

  double seconds = 0.0;
  {
    py::gil_scoped_release nogil;
    run();  // warm-up (and first-touch)
    be.synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) run();
    be.synchronize();
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
  }
  py::dict r;
  r["device"] = be.name();
  r["op"] = op;
  r["seconds"] = seconds;
  r["bytes"] = bytes;
  r["flops"] = flops;
  r["gb_per_s"] = bytes / seconds / 1e9;
  r["gflop_per_s"] = flops / seconds / 1e9;
  return r;
}

}  // namespace

void bind_device_bench(py::module_& m) {
  m.def("device_bench", &device_bench, py::arg("device"), py::arg("op"), py::arg("params"),
        py::arg("iters") = 20,
        "Seconds per call of one op with its buffers resident on the device (see "
        "benchmarks/cuda_ops.py).");
}

}  // namespace gemma_native::bindings
