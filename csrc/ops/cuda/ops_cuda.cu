// gemma_native::ops::cuda: the CUDA kernels on a GPU (nvcc).  Every pointer in the args is
// device memory; launches go on the calling thread's current stream (set_stream) and are
// asynchronous.  The same launchers run on the SIMT emulator in emu/ops_emu.cc.
#include "ops/cuda/simt.h"
// (simt.h first: the kernels see the CUDA vocabulary)
#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "ops/cuda/kernels.h"
#include "ops/cuda/ops_cuda.h"
#include "gemma_native/quant.h"
#include "ops/checks.h"

namespace gemma_native::ops::cuda {
namespace {
thread_local cudaStream_t tl_stream = nullptr;
}  // namespace

void set_stream(void* s) { tl_stream = static_cast<cudaStream_t>(s); }

namespace launch {
namespace {
inline simt::Stream stream() { return tl_stream; }

// Device scratch for the kernels that need it (attention splits, chunked scan): one buffer per
// stream, grown outside graph captures only (a capture must not allocate; null then, and the
// launcher takes its no-scratch path).  A buffer that is outgrown is never freed: a captured
// graph may still hold its address.  Growth doubles, so that costs at most the largest size.
float* device_scratch(size_t floats) {
  struct Scratch {
    float* ptr = nullptr;
    size_t size = 0;
    std::vector<float*> retired;
  };
  static std::mutex mu;
  static std::map<cudaStream_t, Scratch> buffers;
  std::lock_guard<std::mutex> lk(mu);
  Scratch& sc = buffers[tl_stream];
  if (sc.size >= floats) return sc.ptr;
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(tl_stream, &status) != cudaSuccess ||
      status != cudaStreamCaptureStatusNone) {
    return nullptr;
  }
  size_t want = sc.size > 0 ? 2 * sc.size : (size_t{1} << 20);
  while (want < floats) want *= 2;
  float* p = nullptr;
  if (cudaMalloc(&p, want * sizeof(float)) != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  if (sc.ptr != nullptr) sc.retired.push_back(sc.ptr);
  sc.ptr = p;
  sc.size = want;
  return sc.ptr;
}

inline void after_launch(const char* name) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    fail(ErrorKind::kDevice, std::string("CUDA launch of ") + name + ": " + cudaGetErrorString(e));
}
}  // namespace

#define GN_AFTER_LAUNCH(name) after_launch(name)
#include "ops/cuda/ops_launch.inl"
#undef GN_AFTER_LAUNCH
}  // namespace launch

#define GN_CUDA_OP(name, Args) \
  void name(const Args& a) { launch::name(a); }
GN_CUDA_OPS(GN_CUDA_OP)
#undef GN_CUDA_OP

std::vector<std::string> ops_supported() { return kernel_op_names(); }

}  // namespace gemma_native::ops::cuda
