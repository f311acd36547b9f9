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
#define GN_KERNEL_BACKEND_OP(name, Args) \
  void name(const Args& a) override { op(#name, a); }
  GN_ALL_OPS(GN_KERNEL_BACKEND_OP)
#undef GN_KERNEL_BACKEND_OP
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
