// Run-time choice of the CPU kernel set.  At first use the best ISA this CPU and OS support is
// picked (avx512 > avx2 > scalar) unless GEMMA_NATIVE_CPU_ISA names one; set_isa() switches
// later (tests use it to run every path in one process).
#pragma once

#include <string>
#include <vector>

#include "ops/cpu/cpu_features.h"
#include "ops/cpu/kernels.h"

namespace gemma_native::ops::cpu {

const KernelTable& active();
std::string active_isa();
// ISAs compiled into this binary and usable on this CPU, best last.
std::vector<std::string> available_isas();
// ISAs compiled into this binary (whether or not this CPU can run them).
std::vector<std::string> compiled_isas();
// "auto" or one of available_isas(); anything else throws Error(kDevice).
void set_isa(const std::string& name);
// The bf16 compute mode's GEMM (ops::WeightMatrix::bf16_activations): "amx" where the CPU has
// AMX-BF16 and the OS grants the tile state, else "avx512bf16" (VDPBF16PS) where it has
// AVX512-BF16, else "none" (linear then runs exactly), unless GEMMA_NATIVE_BF16_GEMM or
// set_bf16_gemm() names one: "auto", "amx", "avx512bf16", "none", or "amx-emulated" /
// "avx512bf16-emulated" (the same kernels over emulated instructions: any CPU, slow; tests).
using Bf16Gemm = void (*)(const LinearArgs&);
Bf16Gemm bf16_gemm();
std::string bf16_gemm_name();
// Those usable here ("none" and "amx-emulated" always).
std::vector<std::string> available_bf16_gemms();
void set_bf16_gemm(const std::string& name);
// The same unit's block-diagonal product (ops::BlockDiagLinearArgs::bf16_activations), or null
// where the chosen bf16 GEMM has none (then block_diag_linear runs exactly).
using Bf16BlockDiag = void (*)(const BlockDiagLinearArgs&);
Bf16BlockDiag bf16_block_diag();
// The int8 GEMM of Q8_0R16 weights from kInt8TileMinRows rows of x on (prefill): "amx" (AMX-INT8
// tiles) where the CPU has them and the OS grants the tile state, else "none" (the kernel set's
// linear_q8_0r16), unless GEMMA_NATIVE_INT8_GEMM or set_int8_gemm() names one: "auto", "amx",
// "none" or "amx-emulated" (the same kernel over emulated tiles: any CPU, slow; tests).  Every
// choice gives the same bits.
using Int8Gemm = void (*)(const LinearArgs&);
Int8Gemm int8_gemm();
std::string int8_gemm_name();
std::vector<std::string> available_int8_gemms();
void set_int8_gemm(const std::string& name);

// The most token rows (sequences x tokens) one pass through a model's layers takes on the CPU:
// a longer forward runs in passes of at most this many rows (model/runtime.cc), which keeps
// each layer's activations in the caches and its workspace small, and gives the same bits as
// one pass.  0: no limit.  Default kDefaultMaxPassTokens, or GEMMA_NATIVE_MAX_PASS_TOKENS read
// at first use (anything but an integer in [0, 2^40] there: max_pass_tokens() throws
// Error(kInvalidArgument) until set_max_pass_tokens() replaces it).
constexpr int64_t kDefaultMaxPassTokens = 512;
constexpr int64_t kMaxPassTokensLimit = int64_t{1} << 40;  // the largest setting accepted
int64_t max_pass_tokens();
void set_max_pass_tokens(int64_t n);  // n in [0, kMaxPassTokensLimit], else Error(kInvalidArgument)

// How far ahead, in bytes, the int8 decode tiles (Q8_0R16 weights against one tile of 1-12
// activation rows, which streams W from memory once) prefetch the weights into L2; 0: no
// software prefetch.  Speed only: the results are the same bits whatever the distance.  The
// hardware prefetchers differ by microarchitecture, so the default does too
// (int8_prefetch_bytes_for); GEMMA_NATIVE_INT8_PREFETCH, a byte count in [0,
// kMaxInt8PrefetchBytes], replaces it for every row count (anything else:
// Error(kInvalidArgument) at first use).
constexpr int64_t kDefaultInt8PrefetchBytes = 4096;
constexpr int64_t kMaxInt8PrefetchBytes = int64_t{1} << 20;
int64_t int8_prefetch_bytes(int64_t rows);
// The default for a CPU and a number of activation rows: on AMD Zen 4 none for one row and
// 16 KiB for more, elsewhere kDefaultInt8PrefetchBytes.  Measured on the 2B int8 decode, 2
// threads: on a Zen 4 EPYC 4 -> 16 KiB took batch 4 from 34.6-36.1 to 35.0-38.6 tok/s
// (alternating processes; +10% in-process) and batch 1 down 1-3%, while no prefetch ran batch 1
// 4.6% faster than 4 KiB (8 alternating rounds, faster in each); on a Zen 5 EPYC 4 KiB had
// beaten none and 8 KiB at 1 and 4 rows.
int64_t int8_prefetch_bytes_for(const X86Model& cpu, int64_t rows);

}  // namespace gemma_native::ops::cpu
