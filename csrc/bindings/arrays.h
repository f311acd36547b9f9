// numpy array checks shared by the bindings.  Each returns a typed pointer or throws
// Error(kShape / kDType) with the argument's name.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "gemma_native/common.h"
#include "gemma_native/dtype.h"
#include "gemma_native/quant.h"

namespace gemma_native::bindings {

namespace py = pybind11;

inline std::vector<int64_t> shape_of(const py::array& a) {
  std::vector<int64_t> s(a.ndim());
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s[i] = a.shape(i);
  return s;
}

inline std::string shape_text(const std::vector<int64_t>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

inline void check_contiguous(const py::array& a, const char* name) {
  GN_CHECK(a.flags() & py::array::c_style, ErrorKind::kShape,
           std::string(name) + " must be C-contiguous");
}

inline void check_ndim(const py::array& a, py::ssize_t ndim, const char* name) {
  GN_CHECK(a.ndim() == ndim, ErrorKind::kShape,
           std::string(name) + " must have " + std::to_string(ndim) + " dimensions, got shape " +
               shape_text(shape_of(a)));
}

inline void check_dim(const py::array& a, int axis, int64_t expect, const char* name) {
  GN_CHECK(a.shape(axis) == expect, ErrorKind::kShape,
           std::string(name) + " has shape " + shape_text(shape_of(a)) + ", axis " +
               std::to_string(axis) + " should be " + std::to_string(expect));
}

template <class T>
inline T* typed(py::array& a, const char* name, bool writable = false) {
  GN_CHECK(a.dtype().is(py::dtype::of<T>()), ErrorKind::kDType,
           std::string(name) + " must have dtype " + std::string(py::str(py::dtype::of<T>())) +
               ", got " + std::string(py::str(a.dtype())));
  check_contiguous(a, name);
  if (writable) {
    GN_CHECK(a.writeable(), ErrorKind::kInvalidArgument, std::string(name) + " must be writable");
    return static_cast<T*>(a.mutable_data());
  }
  return const_cast<T*>(static_cast<const T*>(a.data()));
}

// A weight array in `dtype` (0 f32, 1 bf16 as uint16 bits, 2 f16 as float16 or uint16 bits,
// 3.. GGML blocks as uint8 [rows, row_bytes]).
inline const void* weight_ptr(const py::array& a, DType dtype, const char* name) {
  check_contiguous(a, name);
  if (is_quantized(dtype)) {
    GN_CHECK(a.dtype().is(py::dtype::of<uint8_t>()) && a.ndim() == 2, ErrorKind::kDType,
             std::string(name) + ": " + dtype_name(dtype) +
                 " weights must be a 2-D uint8 array of raw blocks [rows, row_bytes]");
    GN_CHECK(a.shape(1) % block_bytes(dtype) == 0, ErrorKind::kShape,
             std::string(name) + ": row bytes are not a whole number of " + dtype_name(dtype) +
                 " blocks");
    return a.data();
  }
  if (dtype == DType::kF32) {
    GN_CHECK(a.dtype().is(py::dtype::of<float>()), ErrorKind::kDType,
             std::string(name) + ": float32 weights must be a float32 array");
  } else {
    GN_CHECK(a.itemsize() == 2 && (a.dtype().kind() == 'u' || a.dtype().kind() == 'f'),
             ErrorKind::kDType,
             std::string(name) + ": " + dtype_name(dtype) +
                 " weights must be a 2-byte array (uint16 bits or float16)");
  }
  return a.data();
}

inline DType dtype_from_code(int code) {
  GN_CHECK(code >= 0 && code < kNumDTypes, ErrorKind::kDType,
           "unknown weight dtype code " + std::to_string(code));
  return static_cast<DType>(code);
}

// Logical [rows, cols] of a weight array (for GGML blocks the array is [rows, row_bytes]).
inline std::vector<int64_t> weight_shape(const py::array& a, DType dtype) {
  std::vector<int64_t> s = shape_of(a);
  if (is_quantized(dtype) && s.size() == 2) s[1] = s[1] / block_bytes(dtype) * block_values(dtype);
  return s;
}

}  // namespace gemma_native::bindings
