// Run-time choice of the CPU kernel set.  At first use the best ISA this CPU and OS support is
// picked (avx512 > avx2 > scalar) unless GEMMA_NATIVE_CPU_ISA names one; set_isa() switches
// later (tests use it to run every path in one process).
#pragma once

#include <string>
#include <vector>

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

}  // namespace gemma_native::ops::cpu
