// gemma_native::ops::emu: the CUDA kernels compiled by g++ and run on the SIMT emulator, over
// host memory.  The tests check every kernel against the CPU ops through it without a GPU
// (tests/cuda/test_cuda_emu*.py, and tests/cuda/cuda_emu/ under ThreadSanitizer); Python reaches it as
// device="cuda-emu".
#include "ops/cuda/simt.h"
// (simt.h first: the kernels see the emulator's CUDA vocabulary)
#include <algorithm>
#include <string>
#include <vector>

#include "ops/cuda/kernels.h"
#include "ops/cuda/ops_cuda.h"
#include "gemma_native/quant.h"
#include "ops/checks.h"

namespace gemma_native::ops::emu {
namespace launch {
namespace {
inline simt::Stream stream() { return nullptr; }

// Host memory, kept per thread and grown on demand (graph replays run on the emulator too).
float* device_scratch(size_t floats) {
  thread_local std::vector<float> buf;
  if (buf.size() < floats) buf.resize(floats);
  return buf.data();
}
}  // namespace

#define GN_AFTER_LAUNCH(name) (void)0
#include "ops/cuda/ops_launch.inl"
#undef GN_AFTER_LAUNCH
}  // namespace launch

namespace {
// A fault found by the emulator is a kernel bug: report it as a device error, not a crash.
template <class F>
void guarded(F&& f) {
  try {
    f();
  } catch (const gn_emu::KernelFault& e) {
    fail(ErrorKind::kDevice, std::string("emulated CUDA kernel fault: ") + e.what());
  }
}
}  // namespace

#define GN_EMU_OP(name, Args) \
  void name(const Args& a) { guarded([&] { launch::name(a); }); }
GN_CUDA_OPS(GN_EMU_OP)
#undef GN_EMU_OP

std::vector<std::string> ops_supported() { return kernel_op_names(); }

}  // namespace gemma_native::ops::emu
