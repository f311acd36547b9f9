// The ops:: front: argument checks shared by every backend, then the active CPU kernel.
// Checks here are cheap (O(1) or one pass over ids); shape/dtype agreement with the arrays the
// user passed is checked by the bindings, which know the arrays.
#include "ops/ops.h"

#include <string>

#include "gemma_native/quant.h"
#include "ops/cpu/dispatch.h"

namespace gemma_native::ops {
namespace {

void check_matrix(const WeightMatrix& w, const char* what) {
  GN_CHECK(w.data != nullptr || w.rows * w.cols == 0, ErrorKind::kShape,
           std::string(what) + ": null weight");
  GN_CHECK(w.rows >= 0 && w.cols >= 0, ErrorKind::kShape, std::string(what) + ": bad shape");
}

}  // namespace

void embedding(const EmbeddingArgs& a) {
  check_matrix(a.table, "embedding");
  for (int64_t i = 0; i < a.n; ++i) {
    GN_CHECK(a.ids[i] >= 0 && a.ids[i] < a.table.rows, ErrorKind::kInvalidArgument,
             "token id " + std::to_string(a.ids[i]) + " at index " + std::to_string(i) +
                 " is outside the vocabulary [0, " + std::to_string(a.table.rows) + ")");
  }
  if (a.n > 0 && a.table.cols > 0) cpu::active().embedding(a);
}

void rmsnorm(const RmsNormArgs& a) {
  GN_CHECK(a.d > 0, ErrorKind::kShape, "rmsnorm: width must be > 0");
  if (a.n > 0) cpu::active().rmsnorm(a);
}

void linear(const LinearArgs& a) {
  check_matrix(a.w, "linear");
  if (a.n == 0 || a.w.rows == 0) return;
  if (is_quantized(a.w.dtype)) {
    GN_CHECK(a.w.cols % block_values(a.w.dtype) == 0, ErrorKind::kShape,
             std::string("linear: ") + dtype_name(a.w.dtype) + " rows must hold whole blocks");
    cpu::active().qlinear(a);
    return;
  }
  cpu::active().linear(a);
}

void block_diag_linear(const BlockDiagLinearArgs& a) {
  GN_CHECK(a.blocks > 0 && a.block_size > 0, ErrorKind::kShape,
           "block_diag_linear: blocks and block size must be > 0");
  if (a.n > 0) cpu::active().block_diag_linear(a);
}

void conv1d(const Conv1dArgs& a) {
  GN_CHECK(a.width >= 1, ErrorKind::kShape, "conv1d: width must be >= 1");
  if (a.batch > 0 && a.time > 0 && a.channels > 0) cpu::active().conv1d(a);
}

void rglru_scan(const RgLruArgs& a) {
  if (a.batch > 0 && a.time > 0 && a.channels > 0) cpu::active().rglru_scan(a);
}

void rope(const RopeArgs& a) {
  GN_CHECK(a.rot_dims >= 0 && a.rot_dims % 2 == 0 && a.rot_dims <= a.head_dim, ErrorKind::kShape,
           "rope: rot_dims must be even and <= head_dim");
  GN_CHECK(a.base > 0.0f, ErrorKind::kInvalidArgument, "rope: base must be > 0");
  GN_CHECK(a.linear_factor > 0.0f, ErrorKind::kInvalidArgument,
           "rope: the linear scaling factor must be > 0");
  if (a.n > 0 && a.rot_dims > 0) cpu::active().rope(a);
}

void attention(const AttentionArgs& a) {
  GN_CHECK(a.heads > 0 && a.kv_heads > 0 && a.heads % a.kv_heads == 0, ErrorKind::kShape,
           "attention: heads must be a positive multiple of kv_heads");
  GN_CHECK(a.window >= 0, ErrorKind::kInvalidArgument, "attention: window must be >= 0");
  GN_CHECK((a.k_cache == nullptr) == (a.v_cache == nullptr), ErrorKind::kInvalidArgument,
           "attention: give both k_cache and v_cache or neither");
  if (a.k_cache) {
    GN_CHECK(a.slots > 0 && a.count != nullptr, ErrorKind::kInvalidArgument,
             "attention: a cache needs slots > 0 and counts");
    for (int64_t b = 0; b < a.batch; ++b) {
      GN_CHECK(a.count[b] >= 0, ErrorKind::kInvalidArgument, "attention: negative count");
      const int64_t needed = a.count[b] < a.window ? a.count[b] : a.window;
      GN_CHECK(needed <= a.slots, ErrorKind::kInvalidArgument,
               "attention: the cache has " + std::to_string(a.slots) + " slots but " +
                   std::to_string(needed) + " cached keys are visible (context too long)");
    }
  }
  if (a.batch > 0 && a.time > 0) cpu::active().attention(a);
}

void geglu(const GegluArgs& a) {
  if (a.n > 0) cpu::active().geglu(a);
}

void softcap(float* x, int64_t n, float cap) {
  GN_CHECK(cap > 0.0f, ErrorKind::kInvalidArgument, "softcap: cap must be > 0");
  if (n > 0) cpu::active().softcap(x, n, cap);
}

void add(float* x, const float* y, int64_t n) {
  if (n > 0) cpu::active().add(x, y, n);
}

}  // namespace gemma_native::ops
