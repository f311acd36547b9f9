// The host-memory backends: the CPU kernels, and the CUDA kernels on the SIMT emulator (whose
// graphs are recorded lists of calls, replayed with the arguments they were captured with --
// what a CUDA Graph does, so that the device model's use of graphs is checked without a GPU).
#include "ops/backend.h"

#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <string>
#include <vector>

#include "ops/cuda/ops_cuda.h"

namespace gemma_native::ops {
namespace {

class HostBackend : public Backend {
 public:
  bool host_memory() const override { return true; }
  void* alloc(size_t bytes) override {
    void* p = std::calloc(bytes > 0 ? bytes : 1, 1);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  void release(void* p) override { std::free(p); }
  void to_device(void* dst, const void* src, size_t bytes) override {
    std::memcpy(dst, src, bytes);
  }
  void to_host(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void copy(void* dst, const void* src, size_t bytes) override { std::memmove(dst, src, bytes); }
};

class CpuBackend final : public HostBackend {
 public:
  const char* name() const override { return "cpu"; }
  void embedding(const EmbeddingArgs& a) override { ops::embedding(a); }
  void rmsnorm(const RmsNormArgs& a) override { ops::rmsnorm(a); }
  void linear(const LinearArgs& a) override { ops::linear(a); }
  void block_diag_linear(const BlockDiagLinearArgs& a) override { ops::block_diag_linear(a); }
  void conv1d(const Conv1dArgs& a) override { ops::conv1d(a); }
  void rglru_scan(const RgLruArgs& a) override { ops::rglru_scan(a); }
  void rope(const RopeArgs& a) override { ops::rope(a); }
  void attention(const AttentionArgs& a) override { ops::attention(a); }
  void geglu(const GegluArgs& a) override { ops::geglu(a); }
  void softcap(float* x, int64_t n, float cap) override { ops::softcap(x, n, cap); }
};

class RecordedGraph final : public Graph {
 public:
  explicit RecordedGraph(std::vector<std::function<void()>> calls) : calls_(std::move(calls)) {}
  void replay() override {
    for (auto& c : calls_) c();
  }

 private:
  std::vector<std::function<void()>> calls_;
};

// Ops go to ops::emu when it has a kernel for them; an op without one is a DeviceError (the
// device model must not silently fall back to the CPU kernels).
class EmuBackend final : public HostBackend {
 public:
  const char* name() const override { return "cuda-emu"; }
  bool copies_weights() const override { return true; }

  void copy(void* dst, const void* src, size_t bytes) override {
    run([=] { std::memmove(dst, src, bytes); });
  }
  void to_device(void* dst, const void* src, size_t bytes) override {
    GN_CHECK(!capturing_, ErrorKind::kDevice, "host-to-device copy inside a graph capture");
    std::memcpy(dst, src, bytes);
  }
  void to_host(void* dst, const void* src, size_t bytes) override {
    GN_CHECK(!capturing_, ErrorKind::kDevice, "device-to-host copy inside a graph capture");
    std::memcpy(dst, src, bytes);
  }

  void embedding(const EmbeddingArgs& a) override { op("embedding", a); }
  void rmsnorm(const RmsNormArgs& a) override { op("rmsnorm", a); }
  void linear(const LinearArgs& a) override { op("linear", a); }
  void block_diag_linear(const BlockDiagLinearArgs& a) override { op("block_diag_linear", a); }
  void conv1d(const Conv1dArgs& a) override { op("conv1d", a); }
  void rglru_scan(const RgLruArgs& a) override { op("rglru_scan", a); }
  void rope(const RopeArgs& a) override { op("rope", a); }
  void attention(const AttentionArgs& a) override { op("attention", a); }
  void geglu(const GegluArgs& a) override { op("geglu", a); }
  void softcap(float* x, int64_t n, float cap) override {
    SoftcapArgs a;
    a.x = x;
    a.n = n;
    a.cap = cap;
    op("softcap", a);
  }

  bool supports_graphs() const override { return true; }
  void begin_capture() override {
    GN_CHECK(!capturing_, ErrorKind::kDevice, "graph capture already under way");
    capturing_ = true;
    recorded_.clear();
  }
  std::unique_ptr<Graph> end_capture() override {
    GN_CHECK(capturing_, ErrorKind::kDevice, "end_capture without begin_capture");
    capturing_ = false;
    return std::make_unique<RecordedGraph>(std::move(recorded_));
  }

 private:
  template <class F>
  void run(F&& f) {
    if (capturing_) {
      recorded_.emplace_back(std::forward<F>(f));
    } else {
      f();
    }
  }

  template <class Args>
  void op(const char* name, const Args& a) {
    GN_CHECK(has_kernel(name), ErrorKind::kDevice,
             std::string("the CUDA backend has no kernel for ") + name + " yet");
    run([a] { dispatch(a); });
  }

  static bool has_kernel(const char* name) {
    static const std::vector<std::string> ops = emu::ops_supported();
    for (const auto& o : ops)
      if (o == name) return true;
    return false;
  }

  // dispatch(args) -> the emulated op taking those args; a template catches the ops that have
  // no kernel (never called: op() checks has_kernel first).
  template <class Args>
  static void dispatch(const Args&) {
    fail(ErrorKind::kDevice, "no CUDA kernel for this op");
  }
#define GN_EMU_DISPATCH(name, Args) \
  static void dispatch(const Args& a) { emu::name(a); }
  GN_CUDA_OPS(GN_EMU_DISPATCH)
#undef GN_EMU_DISPATCH

  bool capturing_ = false;
  std::vector<std::function<void()>> recorded_;
};

}  // namespace

Backend& cpu_backend() {
  static CpuBackend b;
  return b;
}

Backend& emu_backend() {
  static EmuBackend b;
  return b;
}

#if !defined(GN_WITH_CUDA)
// A build without CUDA: no GPU backend and no GPU kernels.
Backend* cuda_backend(int, std::string* why) {
  if (why != nullptr) *why = "this gemma_native build has no CUDA backend compiled in (CPU only)";
  return nullptr;
}

std::vector<std::string> cuda::ops_supported() { return {}; }

CudaInfo cuda_info() {
  CudaInfo info;
  info.reason = "this gemma_native build has no CUDA backend compiled in (CPU only)";
  return info;
}
#endif

}  // namespace gemma_native::ops
