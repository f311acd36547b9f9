// The part of a Backend that the two CUDA-kernel backends share (the emulator's in
// ops/backend.cc, the GPU's in ops/cuda/backend_cuda.cu): every op goes to the front
// (ops::emu or ops::cuda) of the op of the same name, and an op without a kernel is a
// DeviceError -- a device model must never fall back to the CPU kernels silently.
// Derived provides kernel_names() and `template <class Args> void launch(const Args&)`.
#pragma once

#include <string>
#include <vector>

#include "ops/backend.h"
#include "ops/cuda/ops_cuda.h"

namespace gemma_native::ops {

template <class Derived>
class KernelBackend : public Backend {
 public:
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
  std::mutex* serial() override { return &serial_; }

 private:
  std::mutex serial_;

  template <class Args>
  void op(const char* name, const Args& a) {
    bool have = false;
    for (const std::string& o : static_cast<const Derived*>(this)->kernel_names())
      have = have || o == name;
    GN_CHECK(have, ErrorKind::kDevice,
             std::string("the CUDA backend has no kernel for ") + name + " yet");
    static_cast<Derived*>(this)->launch(a);
  }
};

// call(front, args): the op of `front` (ops::emu or ops::cuda) that takes these args.  The
// template catches args of ops without a kernel (never reached: op() checks the name first).
#define GN_KERNEL_BACKEND_CALLS(front)                                     \
  template <class Args>                                                    \
  static void call(const Args&) {                                          \
    fail(ErrorKind::kDevice, "no CUDA kernel for this op");                \
  }                                                                        \
  GN_CUDA_OPS(GN_KERNEL_BACKEND_CALL_##front)

#define GN_KERNEL_BACKEND_CALL_emu(name, Args) \
  static void call(const Args& a) { emu::name(a); }
#define GN_KERNEL_BACKEND_CALL_cuda(name, Args) \
  static void call(const Args& a) { cuda::name(a); }

}  // namespace gemma_native::ops
