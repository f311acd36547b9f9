// The CPU kernel table.  Every kernel file in this folder is compiled once per ISA (scalar
// baseline, AVX2+FMA+F16C, AVX-512) with GN_ISA set to that ISA's namespace name; table.cc,
// compiled the same way, fills one KernelTable per ISA and dispatch.cc picks one at run time.
#pragma once

#include "ops/op_list.h"
#include "ops/ops.h"

namespace gemma_native::ops::cpu {

// One kernel per op of ops/op_list.h (`linear` the float-weight one), plus the quantized
// linear and the activation quantizer.
struct KernelTable {
  const char* isa;
#define GN_KERNEL_FIELD(name, Args) void (*name)(const Args&);
  GN_ALL_OPS(GN_KERNEL_FIELD)
#undef GN_KERNEL_FIELD
  void (*qlinear)(const LinearArgs&);
  void (*quantize_act)(const float* x, int64_t k, int block, void* out);
};

// One per ISA built into this binary (the x86 SIMD ones only on x86-64).
const KernelTable* kernel_table_scalar();
const KernelTable* kernel_table_avx2();
const KernelTable* kernel_table_avx512();
const KernelTable* kernel_table_avx512vnni();
const KernelTable* kernel_table_avx512emu();      // the AVX-512 code over SIMDe (any CPU; tests)
const KernelTable* kernel_table_avx512vnniemu();  // the same with VNNI

// The bf16 compute mode's GEMM (bf16_gemm.cc): on AMX tiles, and the same code over an emulation
// of the tiles (any CPU; for tests).
namespace amx {
void linear_bf16(const LinearArgs& a);
}
namespace amxemu {
void linear_bf16(const LinearArgs& a);
}

#ifdef GN_ISA
namespace GN_ISA {
#define GN_KERNEL_DECL(name, Args) void name(const Args& a);
GN_ALL_OPS(GN_KERNEL_DECL)
#undef GN_KERNEL_DECL
void qlinear(const LinearArgs& a);
void quantize_act(const float* x, int64_t k, int block, void* out);
}  // namespace GN_ISA
#endif

}  // namespace gemma_native::ops::cpu
