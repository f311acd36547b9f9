// Argument checks shared by every backend (see checks.h).  Cheap: O(1) or one pass over ids or
// counts; shape/dtype agreement with the arrays the user passed is checked by the bindings,
// which know the arrays.
#include "ops/checks.h"

#include <string>

#include "gemma_native/quant.h"

namespace gemma_native::ops {
namespace check {
namespace {

void matrix(const WeightMatrix& w, const char* what) {
  GN_CHECK(w.data != nullptr || w.rows * w.cols == 0, ErrorKind::kShape,
           std::string(what) + ": null weight");
  GN_CHECK(w.rows >= 0 && w.cols >= 0, ErrorKind::kShape, std::string(what) + ": bad shape");
}

}  // namespace

bool embedding(const EmbeddingArgs& a) {
  matrix(a.table, "embedding");
  GN_CHECK(a.table.dtype != DType::kQ8_0R16 || a.table.rows % kQ8R16Rows == 0,
           ErrorKind::kShape,
           "embedding: Q8_0R16 tables come in groups of 16 rows, got " +
               std::to_string(a.table.rows));
  GN_CHECK(a.table.dtype != DType::kBF16R32 ||
               (a.table.rows % kR32Rows == 0 && a.table.cols % kR32ColStep == 0),
           ErrorKind::kShape,
           "embedding: BF16R32 tables need rows % 32 == 0 and cols % 16 == 0, got [" +
               std::to_string(a.table.rows) + ", " + std::to_string(a.table.cols) + "]");
  const int32_t* ids = a.host_ids != nullptr ? a.host_ids : a.ids;
  for (int64_t i = 0; i < a.n; ++i) {
    GN_CHECK(ids[i] >= 0 && ids[i] < a.table.rows, ErrorKind::kInvalidArgument,
             "token id " + std::to_string(ids[i]) + " at index " + std::to_string(i) +
                 " is outside the vocabulary [0, " + std::to_string(a.table.rows) + ")");
  }
  return a.n > 0 && a.table.cols > 0;
}

bool rmsnorm(const RmsNormArgs& a) {
  GN_CHECK(a.d > 0, ErrorKind::kShape, "rmsnorm: width must be > 0");
  return a.n > 0;
}

bool linear(const LinearArgs& a) {
  matrix(a.w, "linear");
  if (is_quantized(a.w.dtype)) {
    GN_CHECK(a.w.cols % block_values(a.w.dtype) == 0, ErrorKind::kShape,
             std::string("linear: ") + dtype_name(a.w.dtype) + " rows must hold whole blocks");
    GN_CHECK(!a.w.bf16_activations, ErrorKind::kInvalidArgument,
             std::string("linear: bf16 activations are for float weights, not ") +
                 dtype_name(a.w.dtype) + " (quantized weights take 8-bit or float32 activations)");
  }
  if (a.w.dtype == DType::kQ8_0R16) {
    GN_CHECK(a.w.rows % kQ8R16Rows == 0, ErrorKind::kShape,
             "linear: Q8_0R16 weights come in groups of 16 rows, got " + std::to_string(a.w.rows));
    GN_CHECK(!a.w.float_activations, ErrorKind::kInvalidArgument,
             "linear: Q8_0R16 weights take 8-bit activations only (use Q8_0 for float32 "
             "activations)");
  }
  if (a.w.dtype == DType::kBF16R32) {
    GN_CHECK(a.w.rows % kR32Rows == 0 && a.w.cols % kR32ColStep == 0, ErrorKind::kShape,
             "linear: BF16R32 weights need rows % 32 == 0 and cols % 16 == 0, got [" +
                 std::to_string(a.w.rows) + ", " + std::to_string(a.w.cols) + "]");
  }
  return a.n > 0 && a.w.rows > 0;
}

bool block_diag_linear(const BlockDiagLinearArgs& a) {
  GN_CHECK(a.blocks > 0 && a.block_size > 0, ErrorKind::kShape,
           "block_diag_linear: blocks and block size must be > 0");
  GN_CHECK(!is_quantized(a.w_dtype) && !is_packed_float(a.w_dtype), ErrorKind::kDType,
           "block_diag_linear: weights must be float32, bfloat16 or float16");
  return a.n > 0;
}

bool conv1d(const Conv1dArgs& a) {
  GN_CHECK(a.width >= 1, ErrorKind::kShape, "conv1d: width must be >= 1");
  return a.batch > 0 && a.time > 0 && a.channels > 0;
}

bool rglru_scan(const RgLruArgs& a) { return a.batch > 0 && a.time > 0 && a.channels > 0; }

bool rope(const RopeArgs& a) {
  GN_CHECK(a.rot_dims >= 0 && a.rot_dims % 2 == 0 && a.rot_dims <= a.head_dim, ErrorKind::kShape,
           "rope: rot_dims must be even and <= head_dim");
  GN_CHECK(a.base > 0.0f, ErrorKind::kInvalidArgument, "rope: base must be > 0");
  GN_CHECK(a.linear_factor > 0.0f, ErrorKind::kInvalidArgument,
           "rope: the linear scaling factor must be > 0");
  return a.n > 0 && a.rot_dims > 0;
}

bool attention(const AttentionArgs& a) {
  GN_CHECK(a.heads > 0 && a.kv_heads > 0 && a.heads % a.kv_heads == 0, ErrorKind::kShape,
           "attention: heads must be a positive multiple of kv_heads");
  GN_CHECK(a.window >= 0, ErrorKind::kInvalidArgument, "attention: window must be >= 0");
  GN_CHECK((a.k_cache == nullptr) == (a.v_cache == nullptr), ErrorKind::kInvalidArgument,
           "attention: give both k_cache and v_cache or neither");
  if (a.k_cache) {
    GN_CHECK(a.slots > 0 && a.count != nullptr, ErrorKind::kInvalidArgument,
             "attention: a cache needs slots > 0 and counts");
    const int64_t* count = a.host_count != nullptr ? a.host_count : a.count;
    for (int64_t b = 0; b < a.batch; ++b) {
      GN_CHECK(count[b] >= 0, ErrorKind::kInvalidArgument, "attention: negative count");
      const int64_t needed = count[b] < a.window ? count[b] : a.window;
      GN_CHECK(needed <= a.slots, ErrorKind::kInvalidArgument,
               "attention: the cache has " + std::to_string(a.slots) + " slots but " +
                   std::to_string(needed) + " cached keys are visible (context too long)");
    }
  }
  return a.batch > 0 && a.time > 0;
}

bool geglu(const GegluArgs& a) { return a.n > 0; }

bool softcap(const SoftcapArgs& a) {
  GN_CHECK(a.cap > 0.0f, ErrorKind::kInvalidArgument, "softcap: cap must be > 0");
  GN_CHECK(a.n >= 0, ErrorKind::kShape, "softcap: negative length");
  return a.n > 0;
}

bool add(const AddArgs& a) {
  GN_CHECK(a.n >= 0, ErrorKind::kShape, "add: negative length");
  return a.n > 0;
}

}  // namespace check

}  // namespace gemma_native::ops
