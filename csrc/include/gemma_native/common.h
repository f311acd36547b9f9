// Shared basics for every layer: host/device markers, the error type thrown by C++ code.
// The bindings translate gemma_native::Error into the Python exception named by its kind.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

// GN_HD marks small per-element helpers usable from host and device code.  They have internal
// linkage (static) on purpose: the CPU kernels are compiled once per ISA with different -m flags,
// and an inline function with external linkage could be emitted by the AVX-512 translation unit
// and then picked by the linker for the baseline path (an illegal instruction on older CPUs).
#if defined(__CUDACC__)
#define GN_HD static __host__ __device__ __forceinline__
#else
#define GN_HD static inline
#endif

namespace gemma_native {

// The kinds of error, each with the Python exception class it is raised as
// (python/gemma_native/errors.py; _core.ERROR_KINDS exports this list):
//   kInvalidArgument  bad value from the caller (token id out of range, bad sampling value)
//   kShape            array shape mismatch
//   kDType            unsupported / mismatched dtype
//   kModelFormat      corrupt or inconsistent model file
//   kUnsupported      architecture or feature not supported
//   kDevice           requested device / ISA not available
#define GN_ERROR_KINDS(X)                     \
  X(kInvalidArgument, InvalidArgumentError)   \
  X(kShape, ShapeError)                       \
  X(kDType, DTypeError)                       \
  X(kModelFormat, ModelFormatError)           \
  X(kUnsupported, UnsupportedModelError)      \
  X(kDevice, DeviceError)

enum class ErrorKind : int {
#define GN_ERROR_KIND_ENUM(kind, exception) kind,
  GN_ERROR_KINDS(GN_ERROR_KIND_ENUM)
#undef GN_ERROR_KIND_ENUM
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

[[noreturn]] inline void fail(ErrorKind kind, const std::string& what) { throw Error(kind, what); }

#define GN_CHECK(cond, kind, msg)                          \
  do {                                                     \
    if (!(cond)) ::gemma_native::fail((kind), (msg));      \
  } while (0)

}  // namespace gemma_native
