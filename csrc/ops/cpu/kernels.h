// The CPU kernel table.  Every kernel file in this folder is compiled once per ISA (scalar
// baseline, AVX2+FMA+F16C, AVX-512) with GN_ISA set to that ISA's namespace name; table.cc,
// compiled the same way, fills one KernelTable per ISA and dispatch.cc picks one at run time.
#pragma once

#include "ops/ops.h"

namespace gemma_native::ops::cpu {

struct KernelTable {
  const char* isa;
  void (*embedding)(const EmbeddingArgs&);
  void (*rmsnorm)(const RmsNormArgs&);
  void (*linear)(const LinearArgs&);
  void (*qlinear)(const LinearArgs&);
  void (*quantize_act)(const float* x, int64_t k, int block, void* out);
  void (*block_diag_linear)(const BlockDiagLinearArgs&);
  void (*conv1d)(const Conv1dArgs&);
  void (*rglru_scan)(const RgLruArgs&);
  void (*rope)(const RopeArgs&);
  void (*attention)(const AttentionArgs&);
  void (*geglu)(const GegluArgs&);
  void (*softcap)(float*, int64_t, float);
  void (*add)(float*, const float*, int64_t);
};

// One per ISA built into this binary (the x86 SIMD ones only on x86-64).
const KernelTable* kernel_table_scalar();
const KernelTable* kernel_table_avx2();
const KernelTable* kernel_table_avx512();

#ifdef GN_ISA
namespace GN_ISA {
void embedding(const EmbeddingArgs& a);
void rmsnorm(const RmsNormArgs& a);
void linear(const LinearArgs& a);
void qlinear(const LinearArgs& a);
void quantize_act(const float* x, int64_t k, int block, void* out);
void block_diag_linear(const BlockDiagLinearArgs& a);
void conv1d(const Conv1dArgs& a);
void rglru_scan(const RgLruArgs& a);
void rope(const RopeArgs& a);
void attention(const AttentionArgs& a);
void geglu(const GegluArgs& a);
void softcap(float* x, int64_t n, float cap);
void add(float* x, const float* y, int64_t n);
}  // namespace GN_ISA
#endif

}  // namespace gemma_native::ops::cpu
