// Non-owning views of weight tensors handed to a model by the bindings (numpy arrays that the
// Python side keeps alive, usually memory-mapped from the checkpoint).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "gemma_native/common.h"
#include "gemma_native/dtype.h"
#include "ops/ops.h"

namespace gemma_native::model {

struct TensorRef {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
};

using TensorMap = std::map<std::string, TensorRef>;

std::string shape_str(const std::vector<int64_t>& s);

// Looks up `name`, checks its shape (and that it is fp32 when f32_only), or throws
// Error(kModelFormat) naming the tensor.
const TensorRef& need(const TensorMap& m, const std::string& name,
                      const std::vector<int64_t>& shape, bool f32_only);
ops::WeightMatrix matrix(const TensorRef& t, bool float_activations = false,
                         bool bf16_activations = false);
const float* f32(const TensorRef& t);

}  // namespace gemma_native::model
