// Where a model runs: a Backend owns the memory the ops read and write (activations, state,
// and for device backends the weights) and runs the ops on it.  The models (csrc/model/) are
// written once against this interface:
//   cpu_backend()   host memory, the CPU kernels (ops/ops.h)
//   emu_backend()   host memory, the CUDA kernels on the SIMT emulator (ops/cuda/ops_cuda.h):
//                   slow, for checking the device model path on machines without a GPU
//   cuda_backend()  device memory, the CUDA kernels on a GPU (builds with GEMMA_NATIVE_CUDA)
// Pointers in the args structs are the backend's memory; on a device backend the argument
// checks read host copies of token ids and attention counts (EmbeddingArgs::host_ids,
// AttentionArgs::host_count).
//
// Graphs: between begin_capture() and end_capture(), op calls and device copies are recorded
// instead of run (a CUDA Graph on the GPU, a list of calls on the emulator); replay() runs the
// recording again with the same arguments -- pointers and scalar values as they were at capture,
// so everything that changes between replays must be in memory the recording reads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ops/op_list.h"
#include "ops/ops.h"

namespace gemma_native::ops {

class Graph {
 public:
  virtual ~Graph() = default;
  virtual void replay() = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  // True when the backend's memory is ordinary host memory.
  virtual bool host_memory() const = 0;
  // True when a model must copy its weights into the backend's memory (every device backend;
  // the emulator too, so that it runs the GPU path's code).
  virtual bool copies_weights() const { return !host_memory(); }

  virtual void* alloc(size_t bytes) = 0;  // zero-filled
  virtual void release(void* p) = 0;
  virtual void to_device(void* dst, const void* src, size_t bytes) = 0;
  virtual void to_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;  // within the backend
  virtual void synchronize() {}

  // One virtual per op of ops/op_list.h: `void name(const Args&)`.
#define GN_BACKEND_OP(name, Args) virtual void name(const Args& a) = 0;
  GN_ALL_OPS(GN_BACKEND_OP)
#undef GN_BACKEND_OP

  // The most token rows (sequences x tokens) one pass through a model's layers should take; a
  // longer forward runs in several passes (same results).  0: no limit (the device backends:
  // a GPU wants the widest products it can get).
  virtual int64_t max_pass_tokens() const { return 0; }

  virtual bool supports_graphs() const { return false; }
  virtual void begin_capture() {}
  virtual std::unique_ptr<Graph> end_capture() { return nullptr; }

  // A device backend's stream, graph capture and recorded calls are shared by every model on
  // it, so the models run one call at a time there: they hold this lock around forwards and
  // state copies.  nullptr (the CPU): calls may run concurrently.
  virtual std::mutex* serial() { return nullptr; }
};

// Holds a backend's serial() lock, if it has one, for the scope.
class SerialScope {
 public:
  explicit SerialScope(Backend& b) : m_(b.serial()) {
    if (m_ != nullptr) m_->lock();
  }
  ~SerialScope() {
    if (m_ != nullptr) m_->unlock();
  }
  SerialScope(const SerialScope&) = delete;
  SerialScope& operator=(const SerialScope&) = delete;

 private:
  std::mutex* m_;
};

// What this build and machine offer for CUDA (never throws; no driver is not an error).
struct CudaDeviceInfo {
  std::string name;
  int major = 0, minor = 0;      // compute capability
  int multiprocessors = 0;
  size_t memory_bytes = 0;
  double bandwidth_gb_per_s = 0;  // theoretical: 2 x memory clock x bus width
};
struct CudaInfo {
  bool compiled = false;
  std::string architectures;  // the CMake CUDA_ARCHITECTURES of the build
  std::vector<CudaDeviceInfo> devices;
  std::string reason;  // why no device can be used, when none can
};
CudaInfo cuda_info();

Backend& cpu_backend();
Backend& emu_backend();
// The GPU backend for device `index`, or nullptr with the reason in *why when this build has no
// CUDA or the machine no such device.
Backend* cuda_backend(int index, std::string* why);

// A typed buffer in a backend's memory (RAII).
template <class T>
class Buffer {
 public:
  Buffer() = default;
  Buffer(Backend& b, int64_t n) : backend_(&b), n_(n) {
    p_ = n > 0 ? static_cast<T*>(b.alloc(static_cast<size_t>(n) * sizeof(T))) : nullptr;
  }
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      reset();
      backend_ = o.backend_;
      p_ = o.p_;
      n_ = o.n_;
      o.p_ = nullptr;
      o.n_ = 0;
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { reset(); }

  void reset() {
    if (p_ != nullptr) backend_->release(p_);
    p_ = nullptr;
    n_ = 0;
  }
  T* data() const { return p_; }
  int64_t size() const { return n_; }
  size_t bytes() const { return static_cast<size_t>(n_) * sizeof(T); }
  Backend* backend() const { return backend_; }

 private:
  Backend* backend_ = nullptr;
  T* p_ = nullptr;
  int64_t n_ = 0;
};

}  // namespace gemma_native::ops
