// Host-side launchers of the CUDA kernels, compiled twice: by nvcc into
// gemma_native::ops::cuda (ops_cuda.cu) and by g++ into gemma_native::ops::emu (emu/ops_emu.cc).
// The including file first includes cuda/simt.h and cuda/kernels.h, and defines
//   stream()               the stream to launch on
//   GN_AFTER_LAUNCH(name)  the launch error check (cudaGetLastError on the GPU; nothing on the
//                          emulator, whose launches throw)
//   device_scratch(n)      n floats of scratch (attention splits, chunked scan), or null;
//                          one buffer per stream, reused by every launcher in turn
// Each launcher: the shared argument check (ops/checks.h), then grid/block shapes (always whole
// warps), then GN_LAUNCH.  Not a header: no include guard, no namespace of its own.

namespace {

namespace k = ::GN_KERNELS_NS;


// Threads for a block that walks a row of `width` elements: whole warps, at most `max`.
inline unsigned row_threads(int64_t width, unsigned max = 256) {
  int64_t t = (width + 31) / 32 * 32;
  if (t > static_cast<int64_t>(max)) t = max;
  if (t < 32) t = 32;
  return static_cast<unsigned>(t);
}

inline unsigned grid_dim(int64_t n, const char* op) {
  GN_CHECK(n >= 1 && n <= 0x7fffffff, ErrorKind::kShape,
           std::string(op) + ": too many blocks for one launch");
  return static_cast<unsigned>(n);
}

}  // namespace

#include "ops/cuda/launch/attention.inl"
#include "ops/cuda/launch/elementwise.inl"
#include "ops/cuda/launch/linear.inl"
#include "ops/cuda/launch/norm.inl"
#include "ops/cuda/launch/recurrent.inl"
