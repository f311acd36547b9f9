#include "ops/cpu/core_peak.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

#include "ops/cpu/cpu_features.h"

namespace gemma_native::ops::cpu {
namespace {

#if defined(__x86_64__)
// Twelve independent accumulators per loop (more than latency x issue rate on current cores:
// Zen 5 and Sapphire Rapids issue 2 per cycle with 4-6 cycles of latency), written as one asm
// statement so that the compiler can neither spill, merge nor drop them.  Each step of every
// loop keeps its values finite and normal (fma: x = 0.999 x + 1e-7; the dot products add a
// small constant each step).
constexpr int64_t kChains = 12;
constexpr int64_t kIters = int64_t{1} << 20;

#define GN_STEP(op, r) op " %%" r "31, %%" r "30, %%" r
#define GN_STEPS12(op, r)                                                                   \
  GN_STEP(op, r) "0\n\t" GN_STEP(op, r) "1\n\t" GN_STEP(op, r) "2\n\t" GN_STEP(op, r) "3\n\t" \
  GN_STEP(op, r) "4\n\t" GN_STEP(op, r) "5\n\t" GN_STEP(op, r) "6\n\t" GN_STEP(op, r) "7\n\t" \
  GN_STEP(op, r) "8\n\t" GN_STEP(op, r) "9\n\t" GN_STEP(op, r) "10\n\t" GN_STEP(op, r) "11\n\t"
#define GN_ZERO12(r)                                                                          \
  "vpxord %%" r "0, %%" r "0, %%" r "0\n\t" "vmovdqa64 %%" r "0, %%" r "1\n\t"                  \
  "vmovdqa64 %%" r "0, %%" r "2\n\t" "vmovdqa64 %%" r "0, %%" r "3\n\t"                         \
  "vmovdqa64 %%" r "0, %%" r "4\n\t" "vmovdqa64 %%" r "0, %%" r "5\n\t"                         \
  "vmovdqa64 %%" r "0, %%" r "6\n\t" "vmovdqa64 %%" r "0, %%" r "7\n\t"                         \
  "vmovdqa64 %%" r "0, %%" r "8\n\t" "vmovdqa64 %%" r "0, %%" r "9\n\t"                         \
  "vmovdqa64 %%" r "0, %%" r "10\n\t" "vmovdqa64 %%" r "0, %%" r "11\n\t"
#define GN_ZMM_CLOBBERS                                                                       \
  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",    \
      "xmm11", "xmm30", "xmm31", "cc"

// 512-bit loops: src2 = zmm30 and src3 = zmm31 broadcast from two 32-bit words.
#define GN_ZMM_LOOP(op, w30, w31, iters)                                                    \
  do {                                                                                      \
    int64_t n = (iters);                                                                    \
    const uint32_t s30 = (w30), s31 = (w31);                                                \
    __asm__ volatile("vpbroadcastd %[a], %%zmm30\n\t"                                       \
                     "vpbroadcastd %[b], %%zmm31\n\t" GN_ZERO12("zmm") "1:\n\t"             \
                     GN_STEPS12(op, "zmm") "dec %[n]\n\t"                                     \
                     "jnz 1b\n\t"                                                           \
                     : [n] "+r"(n)                                                          \
                     : [a] "m"(s30), [b] "m"(s31)                                           \
                     : GN_ZMM_CLOBBERS);                                                    \
  } while (0)

constexpr uint32_t kF32_0999 = 0x3f7fbe77;  // 0.999f
constexpr uint32_t kF32_1e7 = 0x33d6bf95;   // 1e-7f

__attribute__((target("avx512f"))) void fma512(int64_t iters) {
  GN_ZMM_LOOP("vfmadd213ps", kF32_0999, kF32_1e7, iters);  // x = 0.999 x + 1e-7
}
__attribute__((target("avx512f,avx512bf16"))) void dpbf16(int64_t iters) {
  GN_ZMM_LOOP("vdpbf16ps", 0x3c003c00u, 0x3c003c00u, iters);  // += 2 * 2^-14 per step
}
__attribute__((target("avx512f,avx512vnni"))) void dpbusd(int64_t iters) {
  GN_ZMM_LOOP("vpdpbusd", 0x01010101u, 0x01010101u, iters);  // += 4 per step
}
__attribute__((target("avx2,fma"))) void fma256(int64_t iters) {
  int64_t n = iters;
  const uint32_t s14 = kF32_0999, s15 = kF32_1e7;
  // ymm0-11 accumulate, ymm14 / ymm15 hold the factors (no AVX-512 registers here).
  __asm__ volatile(
      "vbroadcastss %[a], %%ymm14\n\t"
      "vbroadcastss %[b], %%ymm15\n\t"
      "vxorps %%ymm0, %%ymm0, %%ymm0\n\t"
      "vmovaps %%ymm0, %%ymm1\n\t vmovaps %%ymm0, %%ymm2\n\t vmovaps %%ymm0, %%ymm3\n\t"
      "vmovaps %%ymm0, %%ymm4\n\t vmovaps %%ymm0, %%ymm5\n\t vmovaps %%ymm0, %%ymm6\n\t"
      "vmovaps %%ymm0, %%ymm7\n\t vmovaps %%ymm0, %%ymm8\n\t vmovaps %%ymm0, %%ymm9\n\t"
      "vmovaps %%ymm0, %%ymm10\n\t vmovaps %%ymm0, %%ymm11\n\t"
      "1:\n\t"
      "vfmadd213ps %%ymm15, %%ymm14, %%ymm0\n\t vfmadd213ps %%ymm15, %%ymm14, %%ymm1\n\t"
      "vfmadd213ps %%ymm15, %%ymm14, %%ymm2\n\t vfmadd213ps %%ymm15, %%ymm14, %%ymm3\n\t"
      "vfmadd213ps %%ymm15, %%ymm14, %%ymm4\n\t vfmadd213ps %%ymm15, %%ymm14, %%ymm5\n\t"
      "vfmadd213ps %%ymm15, %%ymm14, %%ymm6\n\t vfmadd213ps %%ymm15, %%ymm14, %%ymm7\n\t"
      "vfmadd213ps %%ymm15, %%ymm14, %%ymm8\n\t vfmadd213ps %%ymm15, %%ymm14, %%ymm9\n\t"
      "vfmadd213ps %%ymm15, %%ymm14, %%ymm10\n\t vfmadd213ps %%ymm15, %%ymm14, %%ymm11\n\t"
      "dec %[n]\n\t"
      "jnz 1b\n\t"
      "vzeroupper\n\t"
      : [n] "+r"(n)
      : [a] "m"(s14), [b] "m"(s15)
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
        "xmm11", "xmm14", "xmm15", "cc");
}

// FLOP/s of `loop` run on `threads` threads together: flop_per_instr * instructions / wall
// time, best of five runs (after one warm-up, which also lets the clocks settle).
double measure(void (*loop)(int64_t), double flop_per_instr, int threads) {
  double best = 0;
  for (int rep = 0; rep < 6; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(loop, kIters);
    loop(kIters);
    for (auto& th : pool) th.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (rep > 0 && s > 0) {
      best = std::max(best, flop_per_instr * kChains * static_cast<double>(kIters) * threads / s);
    }
  }
  return best;
}
#endif

}  // namespace

std::map<std::string, double> core_peaks(int threads) {
  if (threads < 1 || threads > 1024) throw std::invalid_argument("threads must be in 1..1024");
  std::map<std::string, double> out;
#if defined(__x86_64__)
  const bool avx512 = has_feature("avx512f");
  if (has_feature("avx2") && has_feature("fma")) out["fp32_fma_256"] = measure(fma256, 2.0 * 8, threads);
  if (avx512) out["fp32_fma_512"] = measure(fma512, 2.0 * 16, threads);
  if (avx512 && has_feature("avx512bf16")) out["bf16_dot_512"] = measure(dpbf16, 2.0 * 32, threads);
  if (avx512 && has_feature("avx512vnni")) out["int8_dot_512"] = measure(dpbusd, 2.0 * 64, threads);
#endif
  return out;
}

}  // namespace gemma_native::ops::cpu
