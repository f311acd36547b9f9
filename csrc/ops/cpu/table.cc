// Collects this ISA's kernels into its KernelTable (compiled once per ISA, see kernels.h).
#include "ops/cpu/kernels.h"

#define GN_STR2(x) #x
#define GN_STR(x) GN_STR2(x)
#define GN_CAT2(a, b) a##b
#define GN_CAT(a, b) GN_CAT2(a, b)

namespace gemma_native::ops::cpu {

const KernelTable* GN_CAT(kernel_table_, GN_ISA)() {
  static const KernelTable table = {
      GN_STR(GN_ISA),       GN_ISA::embedding, GN_ISA::rmsnorm,   GN_ISA::linear, GN_ISA::qlinear,
      GN_ISA::quantize_act,      GN_ISA::block_diag_linear, GN_ISA::conv1d, GN_ISA::rglru_scan, GN_ISA::rope,
      GN_ISA::attention,    GN_ISA::geglu,     GN_ISA::softcap,   GN_ISA::add,
  };
  return &table;
}

}  // namespace gemma_native::ops::cpu
