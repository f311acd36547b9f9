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
  // Sampling's passes over a row of logits (sample_kernels.cc).
  int64_t (*row_argmax)(const float* x, int64_t v, float* max_out);
  double (*exp_weights)(const float* x, int64_t v, float lmax, double inv_t, double* p);
};

// One per ISA built into this binary (the x86 SIMD ones only on x86-64).
const KernelTable* kernel_table_scalar();
const KernelTable* kernel_table_avx2();
const KernelTable* kernel_table_avx512();
const KernelTable* kernel_table_avx512vnni();
const KernelTable* kernel_table_neon();          // aarch64
const KernelTable* kernel_table_neondot();       // aarch64 with the dot-product extension
const KernelTable* kernel_table_avx512emu();      // the AVX-512 code over SIMDe (any CPU; tests)
const KernelTable* kernel_table_avx512vnniemu();  // the same with VNNI

// Throws Error(kDevice, what) from outside the per-ISA objects (which must not instantiate the
// exception's inline members themselves; cmake/check_isa_objects.cmake); for emulators' checks.
[[noreturn]] void kernel_fault(const char* what);

// The AMX kernels, on the tiles and over an emulation of them (any CPU; for tests): the bf16
// compute mode's GEMM (bf16_gemm.cc) and the int8 GEMM of Q8_0R16 weights (q8_0r16_amx.cc,
// bit-identical to the kernel sets' linear_q8_0r16).
namespace amx {
void linear_bf16(const LinearArgs& a);
void block_diag_bf16(const BlockDiagLinearArgs& a);  // block_size % 32 == 0
void linear_q8_0r16(const LinearArgs& a);
}
namespace amxemu {
void linear_bf16(const LinearArgs& a);
void block_diag_bf16(const BlockDiagLinearArgs& a);
void linear_q8_0r16(const LinearArgs& a);
}
// The same GEMM with AVX512-BF16 dot products (bf16_dot.cc), and over SIMDe (any CPU; tests).
namespace avx512bf16 {
void linear_bf16(const LinearArgs& a);
void block_diag_bf16(const BlockDiagLinearArgs& a);  // block_size % 32 == 0
}
namespace avx512bf16emu {
void linear_bf16(const LinearArgs& a);
void block_diag_bf16(const BlockDiagLinearArgs& a);
}

#ifdef GN_ISA
namespace GN_ISA {
// Output y[n, m] of a quantized linear (qlinear.cc, q8_0r16.cc): s + bias[m], or
// y[n, m] + (s + bias[m]) when a.accumulate.
static inline void store_linear(const LinearArgs& a, int64_t n, int64_t m, float s) {
  const float bias = a.bias ? a.bias[m] : 0.0f;
  float* y = a.y + n * a.w.rows + m;
  *y = a.accumulate ? *y + (s + bias) : s + bias;
}
#define GN_KERNEL_DECL(name, Args) void name(const Args& a);
GN_ALL_OPS(GN_KERNEL_DECL)
#undef GN_KERNEL_DECL
void qlinear(const LinearArgs& a);
// qlinear for Q8_0R16 weights (q8_0r16.cc); rows % 16 == 0, int8 activations.
void linear_q8_0r16(const LinearArgs& a);
void quantize_act(const float* x, int64_t k, int block, void* out);
// The largest non-NaN value of x[0, v) into *max_out (-inf if none) and the lowest index
// holding it (0 if none).
int64_t row_argmax(const float* x, int64_t v, float* max_out);
// Sum over i of w_i = exp_d((x_i - lmax) * inv_t), with w_i = 0 where that argument is NaN or
// below -708: per lane l the ids i = l mod 8 in order, then ((l0 + l1) + (l2 + l3)) +
// ((l4 + l5) + (l6 + l7)).  Stores each w_i into p[i] unless p is null.
double exp_weights(const float* x, int64_t v, float lmax, double inv_t, double* p);
}  // namespace GN_ISA
#endif

}  // namespace gemma_native::ops::cpu
