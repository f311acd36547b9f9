// Planted kernel bugs, to show that the SIMT emulator catches them
// (tests/cuda/test_cuda_emu_tools.py).
// Built with g++ against ops/cuda/emu; run as `planted <case>`:
//   sync_ok        block sum through shared memory, with the __syncthreads it needs
//   sync_missing   the same without it: ThreadSanitizer reports a data race
//   shared_oob     writes one element past a shared array: the emulator faults
//   global_oob     reads one float past the end of its input: AddressSanitizer reports it
//   partial_warp   a full-mask shuffle in a block that is not a whole warp: the emulator faults
//   divergent_sync lane 0 waits at __syncwarp while lanes 1-31 wait at __syncthreads: a
//                  deadlock, which the fibers mode reports at once
// Prints "result <value>" on success, "fault <message>" (exit 3) on an emulator fault.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "ops/cuda/simt.h"

namespace GN_KERNELS_NS {

template <bool kSync>
__global__ void block_sum_kernel(const float* x, float* out) {
  GN_SHARED(float, buf, 64);
  buf[threadIdx.x] = x[threadIdx.x];
  if (kSync) __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0.0f;
    for (unsigned i = 0; i < blockDim.x; ++i) s += buf[i];
    *out = s;
  }
}

__global__ void shared_oob_kernel(const float* x, float* out) {
  GN_SHARED(float, buf, 64);
  buf[threadIdx.x + 1] = x[threadIdx.x];  // thread 63 writes buf[64]
  __syncthreads();
  if (threadIdx.x == 0) *out = buf[1];
}

__global__ void global_oob_kernel(const float* x, float* out) {
  out[threadIdx.x] = x[threadIdx.x + 1];  // thread 63 reads x[64]
}

__global__ void partial_warp_kernel(const float* x, float* out) {
  const float v = __shfl_xor_sync(0xffffffffu, x[threadIdx.x], 1);
  out[threadIdx.x] = v;
}

__global__ void divergent_sync_kernel(const float* x, float* out) {
  if (threadIdx.x == 0) {
    __syncwarp();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = x[threadIdx.x];
}

}  // namespace GN_KERNELS_NS

int main(int argc, char** argv) {
  namespace k = ::GN_KERNELS_NS;
  const std::string which = argc > 1 ? argv[1] : "";
  std::vector<float>* x = new std::vector<float>(64);  // exactly 64 floats on the heap
  for (int i = 0; i < 64; ++i) (*x)[i] = static_cast<float>(i);
  std::vector<float> out(64, 0.0f);
  try {
    if (which == "sync_ok") {
      auto* kern = &k::block_sum_kernel<true>;
      GN_LAUNCH(kern, dim3(1), dim3(64), 0, nullptr)(x->data(), out.data());
    } else if (which == "sync_missing") {
      auto* kern = &k::block_sum_kernel<false>;
      GN_LAUNCH(kern, dim3(1), dim3(64), 0, nullptr)(x->data(), out.data());
    } else if (which == "shared_oob") {
      auto* kern = &k::shared_oob_kernel;
      GN_LAUNCH(kern, dim3(1), dim3(64), 0, nullptr)(x->data(), out.data());
    } else if (which == "global_oob") {
      auto* kern = &k::global_oob_kernel;
      GN_LAUNCH(kern, dim3(1), dim3(64), 0, nullptr)(x->data(), out.data());
    } else if (which == "partial_warp") {
      auto* kern = &k::partial_warp_kernel;
      GN_LAUNCH(kern, dim3(1), dim3(48), 0, nullptr)(x->data(), out.data());
    } else if (which == "divergent_sync") {
      auto* kern = &k::divergent_sync_kernel;
      GN_LAUNCH(kern, dim3(1), dim3(32), 0, nullptr)(x->data(), out.data());
    } else {
      std::fprintf(stderr, "unknown case '%s'\n", which.c_str());
      return 2;
    }
  } catch (const gn_emu::KernelFault& e) {
    std::printf("fault %s\n", e.what());
    delete x;
    return 3;
  }
  std::printf("result %g\n", static_cast<double>(out[0]));
  delete x;
  return 0;
}
