// SIMT emulator: runs CUDA kernel bodies compiled by g++ on the CPU, to check what they compute
// (against the CPU ops) and how they synchronise (under ThreadSanitizer) on machines without a
// GPU.  Included only through cuda/simt.h and only in translation units that hold kernels.
//
// Model (one launch):
// - The blocks of the grid run one after another (x fastest), so shared memory belongs to one
//   block at a time.  The blockDim.x*y*z CUDA threads of a block are either std::threads
//   ("threads" mode: sanitizer builds and GEMMA_NATIVE_EMU_MODE=threads) or fibers switched at
//   barriers on the calling thread ("fibers" mode, the default: fast and deterministic).
// - __syncthreads() is a mutex+condvar barrier in threads mode (visible to TSan, unlike
//   std::barrier); a thread that returns from the kernel leaves the barrier, as on the hardware.
// - Warp shuffles go through a per-warp exchange buffer between two warp barriers.  The mask
//   must name exactly the warp's live lanes (a partial warp is a kernel bug here), and reading
//   a lane that does not exist is a fault.
// - Shared memory is filled with 0xFF bytes (NaN for floats, -1 for integers) before each block,
//   so a read before the write that should precede it shows; every index is bounds-checked.
// - A fault (bad index, bad shuffle, bad launch shape, a barrier wait of over a minute) stops
//   every thread of the launch and the launch throws gn_emu::KernelFault with the first message.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cstddef>
#include <functional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

// ---- CUDA's vocabulary, for g++ ----
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#ifndef __align__
#define __align__(n) alignas(n)
#endif

struct uint3 {
  unsigned x, y, z;
};
// CUDA's vector types that the kernels load 8 or 16 bytes at a time with.
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(8) float2 {
  float x, y;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim{1, 1, 1};
inline thread_local dim3 gridDim{1, 1, 1};
constexpr int warpSize = 32;

namespace gn_emu {

class KernelFault : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Records the first fault of the launch, wakes every waiting thread and unwinds this one.
[[noreturn]] void fault(const std::string& what);

// Per-thread services implemented in simt_emu.cc.
void sync_block();
void sync_warp(unsigned mask);
uint64_t exchange(unsigned mask, uint64_t bits, int src_lane, bool src_valid);
int lane_id();
unsigned char* shared_static(size_t bytes, size_t align, const char* name);
unsigned char* shared_dynamic(size_t* bytes);

template <class T, size_t N>
struct SharedArray {
  T data_[N];
  T& operator[](int64_t i) {
    if (i < 0 || static_cast<uint64_t>(i) >= N)
      fault("shared array index " + std::to_string(i) + " outside [0, " + std::to_string(N) +
            ")");
    return data_[i];
  }
};

template <class T, size_t N>
SharedArray<T, N>& shared_array(const char* name) {
  static_assert(std::is_trivially_copyable<T>::value, "shared memory holds plain data");
  return *reinterpret_cast<SharedArray<T, N>*>(
      shared_static(sizeof(SharedArray<T, N>), alignof(SharedArray<T, N>), name));
}

template <class T>
struct SharedSpan {
  T* p;
  size_t n;
  T& operator[](int64_t i) const {
    if (i < 0 || static_cast<uint64_t>(i) >= n)
      fault("dynamic shared memory index " + std::to_string(i) + " outside [0, " +
            std::to_string(n) + ")");
    return p[i];
  }
};

template <class T>
SharedSpan<T> dynamic_shared() {
  size_t bytes = 0;
  unsigned char* p = shared_dynamic(&bytes);
  return SharedSpan<T>{reinterpret_cast<T*>(p), bytes / sizeof(T)};
}

// "fibers" or "threads": how the next launch runs its CUDA threads (simt_emu.cc).
const char* mode();

// Runs body() once per CUDA thread per block of the grid; throws KernelFault.
void run(const char* name, dim3 grid, dim3 block, size_t dyn_smem,
         const std::function<void()>& body);

template <class... P>
struct Launcher {
  void (*kernel)(P...);
  const char* name;
  dim3 grid, block;
  size_t smem;
  template <class... A>
  void operator()(A&&... args) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel argument count");
    // Arguments are converted to the parameter types once, as a launch does; each thread then
    // receives its own copy, as kernel parameters are per-thread values.
    const std::tuple<std::decay_t<P>...> packed(static_cast<P>(std::forward<A>(args))...);
    void (*k)(P...) = kernel;
    run(name, grid, block, smem, [&packed, k] { std::apply(k, packed); });
  }
};

template <class... P>
Launcher<P...> launcher(void (*kernel)(P...), const char* name, dim3 grid, dim3 block,
                        size_t smem) {
  return Launcher<P...>{kernel, name, grid, block, smem};
}

template <class T>
uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle a scalar");
  uint64_t b = 0;
  memcpy(&b, &v, sizeof(T));
  return b;
}
template <class T>
T from_bits(uint64_t b) {
  T v;
  memcpy(&v, &b, sizeof(T));
  return v;
}

}  // namespace gn_emu

inline void __syncthreads() { gn_emu::sync_block(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { gn_emu::sync_warp(mask); }

template <class T>
T __shfl_sync(unsigned mask, T v, int src, int width = warpSize) {
  const int lane = gn_emu::lane_id();
  const int s = (lane / width) * width + (src % width + width) % width;
  return gn_emu::from_bits<T>(gn_emu::exchange(mask, gn_emu::to_bits(v), s, true));
}
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = warpSize) {
  const int lane = gn_emu::lane_id();
  const int s = lane ^ lane_mask;
  // Lanes outside the caller's width segment keep their value, as on the hardware.
  const bool valid = s / width == lane / width;
  const uint64_t r = gn_emu::exchange(mask, gn_emu::to_bits(v), valid ? s : lane, true);
  return gn_emu::from_bits<T>(r);
}
template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
  const int lane = gn_emu::lane_id();
  const int s = lane + static_cast<int>(delta);
  const bool valid = s / width == lane / width;
  return gn_emu::from_bits<T>(gn_emu::exchange(mask, gn_emu::to_bits(v), valid ? s : lane, true));
}
template <class T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
  const int lane = gn_emu::lane_id();
  const int s = lane - static_cast<int>(delta);
  const bool valid = s >= 0 && s / width == lane / width;
  return gn_emu::from_bits<T>(gn_emu::exchange(mask, gn_emu::to_bits(v), valid ? s : lane, true));
}

// Atomics: the GCC builtins, which ThreadSanitizer understands.
inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicAdd(unsigned* p, unsigned v) {
  return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
inline float atomicAdd(float* p, float v) {
  float old;
  uint32_t cur = __atomic_load_n(reinterpret_cast<uint32_t*>(p), __ATOMIC_RELAXED);
  for (;;) {
    memcpy(&old, &cur, 4);
    const float nv = old + v;
    uint32_t nb;
    memcpy(&nb, &nv, 4);
    if (__atomic_compare_exchange_n(reinterpret_cast<uint32_t*>(p), &cur, nb, false,
                                    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
      return old;
  }
}
inline int atomicMax(int* p, int v) {
  int cur = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (cur < v &&
         !__atomic_compare_exchange_n(p, &cur, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return cur;
}
inline int atomicMin(int* p, int v) {
  int cur = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (cur > v &&
         !__atomic_compare_exchange_n(p, &cur, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return cur;
}

// Device intrinsics the kernels use, with the host meaning (the fast-math variants are given
// their exact counterparts: kernels that need bit-equality with the CPU must not use them).
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline void sincospif(float x, float* s, float* c) {
  const double a = 3.14159265358979323846 * static_cast<double>(x);
  *s = static_cast<float>(sin(a));
  *c = static_cast<float>(cos(a));
}
template <class T>
inline T __ldg(const T* p) {
  return *p;
}
inline unsigned __float_as_uint(float f) {
  unsigned u;
  memcpy(&u, &f, 4);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
