// The machine's ceilings, measured rather than looked up: the cores' arithmetic (register-only
// loops of independent multiply-add instructions, run on `threads` threads at once) and the
// memory's streaming read rate.  `gemma-native bench` reports prefill against the first beside
// numpy's GEMM (a library's speed, which on some CPUs is well below what the instructions can
// do), and decode against the second.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace gemma_native::ops::cpu {

// FLOP/s (a multiply-add counts 2) per instruction family the CPU has, best of five short
// runs: "fp32_fma_256" (AVX2 FMA), "fp32_fma_512" (AVX-512 FMA), "bf16_dot_512" (VDPBF16PS,
// AVX512-BF16) and "int8_dot_512" (VPDPBUSD, AVX512-VNNI; operations rather than FLOP).
// Families the CPU lacks (all of them off x86-64) are absent.  threads: 1..1024.
std::map<std::string, double> core_peaks(int threads);

// The memory's streaming read rate: bytes/s of `threads` threads each summing its own slice of
// [data, data + bytes) with wide loads (AVX2 where the CPU has it) and no other work, best of
// `reps` runs of each of two loops: plain, and with a software prefetch 4 KiB ahead as the
// decode kernels have (the faster one depends on the machine and the moment).  A read-only ceiling for decode, which streams its weights; a buffer much larger
// than the caches measures DRAM.  Throws std::invalid_argument for threads outside 1..1024,
// reps outside 1..1000, or fewer than 128 bytes per thread.
double read_bandwidth(const void* data, int64_t bytes, int threads, int reps);

}  // namespace gemma_native::ops::cpu
