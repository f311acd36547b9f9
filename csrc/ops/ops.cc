// The ops:: front: the argument checks shared by every backend (ops/checks.cc), then the
// active CPU kernel.
#include "ops/ops.h"

#include "gemma_native/quant.h"
#include "ops/checks.h"
#include "ops/cpu/dispatch.h"

namespace gemma_native::ops {

void embedding(const EmbeddingArgs& a) {
  if (check::embedding(a)) cpu::active().embedding(a);
}

void rmsnorm(const RmsNormArgs& a) {
  if (check::rmsnorm(a)) cpu::active().rmsnorm(a);
}

void linear(const LinearArgs& a) {
  if (!check::linear(a)) return;
  if (is_quantized(a.w.dtype)) {
    if (a.w.dtype == DType::kQ8_0R16 && a.n >= kInt8TileMinRows && cpu::int8_gemm() != nullptr) {
      cpu::int8_gemm()(a);
    } else {
      cpu::active().qlinear(a);
    }
  } else if (a.w.bf16_activations && a.n >= kBf16MinRows && cpu::bf16_gemm() != nullptr) {
    cpu::bf16_gemm()(a);
  } else {
    cpu::active().linear(a);
  }
}

void quantize_activations(const float* x, int64_t k, int block, void* out) {
  GN_CHECK(block == 32 || block == 256, ErrorKind::kInvalidArgument,
           "quantize_activations: block must be 32 or 256, got " + std::to_string(block));
  GN_CHECK(k >= 0 && k % block == 0, ErrorKind::kShape,
           "quantize_activations: the row length must be a multiple of " + std::to_string(block));
  cpu::active().quantize_act(x, k, block, out);
}

void block_diag_linear(const BlockDiagLinearArgs& a) {
  if (!check::block_diag_linear(a)) return;
  if (a.bf16_activations && a.n >= kBf16MinRows && a.block_size % 32 == 0 &&
      cpu::bf16_block_diag() != nullptr) {
    cpu::bf16_block_diag()(a);
  } else {
    cpu::active().block_diag_linear(a);
  }
}

void conv1d(const Conv1dArgs& a) {
  if (check::conv1d(a)) cpu::active().conv1d(a);
}

void rglru_scan(const RgLruArgs& a) {
  if (check::rglru_scan(a)) cpu::active().rglru_scan(a);
}

void rope(const RopeArgs& a) {
  if (check::rope(a)) cpu::active().rope(a);
}

void attention(const AttentionArgs& a) {
  if (check::attention(a)) cpu::active().attention(a);
}

void geglu(const GegluArgs& a) {
  if (check::geglu(a)) cpu::active().geglu(a);
}

void softcap(const SoftcapArgs& a) {
  if (check::softcap(a)) cpu::active().softcap(a);
}

void add(const AddArgs& a) {
  if (check::add(a)) cpu::active().add(a);
}

}  // namespace gemma_native::ops
