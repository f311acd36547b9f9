// Device names of the Python API -> the ops::Backend that runs them.
#pragma once

#include <string>

#include "ops/backend.h"

namespace gemma_native::bindings {

// "cpu", "cuda-emu" (the CUDA kernels on the SIMT emulator), "cuda" or "cuda:N" (a GPU); throws
// Error(kDevice) with the reason for a device that is unknown or not available.
ops::Backend& backend_for(const std::string& device);

}  // namespace gemma_native::bindings
