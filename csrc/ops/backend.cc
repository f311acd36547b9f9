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

#include "ops/cpu/dispatch.h"
#include "ops/cuda/kernel_backend.h"
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
  int64_t max_pass_tokens() const override { return cpu::max_pass_tokens(); }
#define GN_CPU_BACKEND_OP(name, Args) \
  void name(const Args& a) override { ops::name(a); }
  GN_ALL_OPS(GN_CPU_BACKEND_OP)
#undef GN_CPU_BACKEND_OP
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

// The CUDA kernels on the SIMT emulator, over host memory; graphs are recorded calls.
class EmuBackend final : public KernelBackend<EmuBackend> {
 public:
  const char* name() const override { return "cuda-emu"; }
  bool host_memory() const override { return true; }
  bool copies_weights() const override { return true; }
  void* alloc(size_t bytes) override { return host_.alloc(bytes); }
  void release(void* p) override { host_.release(p); }
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

  const std::vector<std::string>& kernel_names() const {
    static const std::vector<std::string> names = emu::ops_supported();
    return names;
  }
  template <class Args>
  void launch(const Args& a) {
    if (!capturing_) {
      call(a);
      return;
    }
    // Recorded by value, as a CUDA graph records a launch.  A replay runs the op's argument
    // checks again (a GPU replay does not); they must read the backend memory the replay
    // reads, never the host copies given at capture time, which may be gone by then.
    Args r = a;
    forget_host_copies(r);
    recorded_.emplace_back([r] { call(r); });
  }

 private:
  GN_KERNEL_BACKEND_CALLS(emu)

  template <class Args>
  static void forget_host_copies(Args&) {}
  static void forget_host_copies(EmbeddingArgs& a) { a.host_ids = nullptr; }
  static void forget_host_copies(AttentionArgs& a) { a.host_count = nullptr; }

  template <class F>
  void run(F&& f) {
    if (capturing_) {
      recorded_.emplace_back(std::forward<F>(f));
    } else {
      f();
    }
  }

  CpuBackend host_;  // for its host memory
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
