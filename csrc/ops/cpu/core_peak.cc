#include "ops/cpu/core_peak.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <vector>

#include "ops/cpu/cpu_features.h"
#include "ops/cpu/dispatch.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

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

// Sums [p, p + bytes) (bytes a multiple of 128) as 64-bit words in independent accumulators:
// loads as wide as the kernels', no work between them, so the loop waits on memory only.  With
// PF each 128 bytes also prefetch the two lines kPrefetch ahead into L2, as the decode kernels
// do: on the EPYC Zen 5 VM, while its memory read at ~40 GB/s, that loop read 13-16% faster than
// the plain one (2 threads, 544 MB, 9 alternating rounds), and a decode kernel with prefetch read
// faster than the plain loop -- a ceiling has to be the faster of the two.  The sum is
// returned so that nothing is optimized out.
constexpr int64_t kPrefetch = 4096;
template <bool PF>
static inline void prefetch_ahead(const uint8_t* p) {
  if (PF) {  // the address as an integer: it may lie past the buffer (a harmless prefetch)
    const uintptr_t a = reinterpret_cast<uintptr_t>(p) + kPrefetch;
    __builtin_prefetch(reinterpret_cast<const void*>(a), 0, 2);
    __builtin_prefetch(reinterpret_cast<const void*>(a + 64), 0, 2);
  }
}
#if defined(__x86_64__)
template <bool PF>
__attribute__((target("avx2"))) uint64_t read_avx2(const uint8_t* p, int64_t bytes) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i < bytes; i += 128) {
    prefetch_ahead<PF>(p + i);
    a0 = _mm256_add_epi64(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  uint64_t o[4];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), a0);
  return o[0] + o[1] + o[2] + o[3];
}
#endif
template <bool PF>
uint64_t read_plain(const uint8_t* p, int64_t bytes) {
  uint64_t a[16] = {};
  for (int64_t i = 0; i < bytes; i += 128) {
    prefetch_ahead<PF>(p + i);
    for (int j = 0; j < 16; ++j) {
      uint64_t v;
      std::memcpy(&v, p + i + 8 * j, 8);
      a[j] += v;
    }
  }
  uint64_t s = 0;
  for (uint64_t v : a) s += v;
  return s;
}

}  // namespace

double read_bandwidth(const void* data, int64_t bytes, int threads, int reps) {
  if (threads < 1 || threads > 1024) throw std::invalid_argument("threads must be in 1..1024");
  if (reps < 1 || reps > 1000) throw std::invalid_argument("reps must be in 1..1000");
  const int64_t slice = bytes / threads / 128 * 128;  // bytes per thread, whole 128-byte steps
  if (data == nullptr || slice <= 0) {
    throw std::invalid_argument("the buffer must hold at least 128 bytes per thread");
  }
  using Loop = uint64_t (*)(const uint8_t*, int64_t);
#if defined(__x86_64__)
  // the wide loads where the kernel set in use has them (the scalar set, forced, reads as a
  // CPU without AVX2 would)
  const bool avx2 = has_feature("avx2") && active_isa() != "scalar";
  const Loop loops[2] = {avx2 ? read_avx2<false> : read_plain<false>,
                         avx2 ? read_avx2<true> : read_plain<true>};
#else
  const Loop loops[2] = {read_plain<false>, read_plain<true>};
#endif
  const auto* base = static_cast<const uint8_t*>(data);
  std::vector<uint64_t> sums(static_cast<size_t>(threads));
  double best = 0;
  for (int run = 0; run < 2 * reps; ++run) {  // the plain and the prefetching loop in turn
    const Loop read = loops[run % 2];
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) {
      pool.emplace_back([&, t] { sums[static_cast<size_t>(t)] += read(base + t * slice, slice); });
    }
    sums[0] += read(base, slice);
    for (auto& th : pool) th.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > 0) best = std::max(best, static_cast<double>(slice) * threads / s);
  }
  volatile uint64_t sink = 0;
  for (uint64_t v : sums) sink = sink + v;
  return best;
}

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
