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

// One loop over register file R ("ymm" or "zmm"): registers R0-R11 start at zero (a VEX
// xmm zeroing clears the whole register) and each step is `op RB, RA, Ri` (AT&T order:
// Ri = op(RA, RB, Ri)), RA and RB broadcast from the 32-bit words wa and wb.  It ends with
// vzeroupper: the compiler cannot see that the asm left the upper halves dirty.
#define GN_REG(R, i) "%%" R i
#define GN_COPY0(R, i) "vmovaps " GN_REG(R, "0") ", " GN_REG(R, i) "\n\t"
#define GN_STEP(op, R, A, B, i) op " " GN_REG(R, B) ", " GN_REG(R, A) ", " GN_REG(R, i) "\n\t"
#define GN_PEAK_LOOP(op, R, A, B, wa, wb, iters)                                              \
  do {                                                                                        \
    int64_t n = (iters);                                                                      \
    const uint32_t sa = (wa), sb = (wb);                                                      \
    __asm__ volatile(                                                                         \
        "vbroadcastss %[a], " GN_REG(R, A) "\n\t"                                             \
        "vbroadcastss %[b], " GN_REG(R, B) "\n\t"                                             \
        "vxorps %%xmm0, %%xmm0, %%xmm0\n\t" GN_COPY0(R, "1") GN_COPY0(R, "2") GN_COPY0(R, "3")  \
        GN_COPY0(R, "4") GN_COPY0(R, "5") GN_COPY0(R, "6") GN_COPY0(R, "7") GN_COPY0(R, "8")     \
        GN_COPY0(R, "9") GN_COPY0(R, "10") GN_COPY0(R, "11")                                  \
        "1:\n\t" GN_STEP(op, R, A, B, "0") GN_STEP(op, R, A, B, "1") GN_STEP(op, R, A, B, "2")  \
        GN_STEP(op, R, A, B, "3") GN_STEP(op, R, A, B, "4") GN_STEP(op, R, A, B, "5")           \
        GN_STEP(op, R, A, B, "6") GN_STEP(op, R, A, B, "7") GN_STEP(op, R, A, B, "8")           \
        GN_STEP(op, R, A, B, "9") GN_STEP(op, R, A, B, "10") GN_STEP(op, R, A, B, "11")         \
        "dec %[n]\n\t"                                                                        \
        "jnz 1b\n\t"                                                                          \
        "vzeroupper\n\t"                                                                      \
        : [n] "+r"(n)                                                                         \
        : [a] "m"(sa), [b] "m"(sb)                                                            \
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",     \
          "xmm10", "xmm11", "xmm" A, "xmm" B, "cc");                                          \
  } while (0)

constexpr uint32_t kF32_0999 = 0x3f7fbe77;  // 0.999f
constexpr uint32_t kF32_1e7 = 0x33d6bf95;   // 1e-7f

// AVX2 has 16 vector registers: the factors live in ymm14 / ymm15; AVX-512 uses zmm30 / zmm31.
__attribute__((target("avx2,fma"))) void fma256(int64_t iters) {
  GN_PEAK_LOOP("vfmadd213ps", "ymm", "14", "15", kF32_0999, kF32_1e7, iters);
}
__attribute__((target("avx512f"))) void fma512(int64_t iters) {
  GN_PEAK_LOOP("vfmadd213ps", "zmm", "30", "31", kF32_0999, kF32_1e7, iters);
}
__attribute__((target("avx512f,avx512bf16"))) void dpbf16(int64_t iters) {
  GN_PEAK_LOOP("vdpbf16ps", "zmm", "30", "31", 0x3c003c00u, 0x3c003c00u, iters);  // bf16 2^-7
}
__attribute__((target("avx512f,avx512vnni"))) void dpbusd(int64_t iters) {
  GN_PEAK_LOOP("vpdpbusd", "zmm", "30", "31", 0x01010101u, 0x01010101u, iters);  // bytes 1
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
