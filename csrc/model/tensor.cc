#include "model/tensor.h"

#include "gemma_native/quant.h"

namespace gemma_native::model {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

const TensorRef& need(const TensorMap& m, const std::string& name,
                      const std::vector<int64_t>& shape, bool f32_only) {
  auto it = m.find(name);
  GN_CHECK(it != m.end(), ErrorKind::kModelFormat, "missing weight tensor '" + name + "'");
  const TensorRef& t = it->second;
  GN_CHECK(t.shape == shape, ErrorKind::kModelFormat,
           "weight tensor '" + name + "' has shape " + shape_str(t.shape) + ", expected " +
               shape_str(shape));
  GN_CHECK(!f32_only || t.dtype == DType::kF32, ErrorKind::kModelFormat,
           "weight tensor '" + name + "' must be float32 here, got " + dtype_name(t.dtype));
  GN_CHECK(t.data != nullptr, ErrorKind::kModelFormat, "weight tensor '" + name + "' is null");
  return t;
}

ops::WeightMatrix matrix(const TensorRef& t, bool float_activations, bool bf16_activations) {
  ops::WeightMatrix w;
  w.float_activations = float_activations;
  w.bf16_activations = bf16_activations && !is_quantized(t.dtype);
  w.data = t.data;
  w.dtype = t.dtype;
  w.rows = t.shape.at(0);
  w.cols = t.shape.at(1);
  return w;
}

const float* f32(const TensorRef& t) { return static_cast<const float*>(t.data); }

}  // namespace gemma_native::model
