// Collects this ISA's kernels into its KernelTable (compiled once per ISA, see kernels.h).
#include "ops/cpu/kernels.h"

#define GN_STR2(x) #x
#define GN_STR(x) GN_STR2(x)
#define GN_CAT2(a, b) a##b
#define GN_CAT(a, b) GN_CAT2(a, b)

namespace gemma_native::ops::cpu {

const KernelTable* GN_CAT(kernel_table_, GN_ISA)() {
#define GN_KERNEL_ENTRY(name, Args) GN_ISA::name,
  static const KernelTable table = {
      GN_STR(GN_ISA), GN_ALL_OPS(GN_KERNEL_ENTRY) GN_ISA::qlinear, GN_ISA::quantize_act,
      GN_ISA::row_argmax, GN_ISA::exp_weights,
  };
#undef GN_KERNEL_ENTRY
  return &table;
}

}  // namespace gemma_native::ops::cpu
