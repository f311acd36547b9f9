#include "bindings/devices.h"

namespace gemma_native::bindings {

ops::Backend& backend_for(const std::string& device) {
  if (device == "cpu") return ops::cpu_backend();
  if (device == "cuda-emu") return ops::emu_backend();
  if (device == "cuda" || device.rfind("cuda:", 0) == 0) {
    int index = 0;
    if (device.size() > 5) {
      const std::string n = device.substr(5);
      GN_CHECK(!n.empty() && n.size() < 4 && n.find_first_not_of("0123456789") == std::string::npos,
               ErrorKind::kDevice, "bad CUDA device '" + device + "'");
      index = std::stoi(n);
    }
    std::string why;
    ops::Backend* b = ops::cuda_backend(index, &why);
    GN_CHECK(b != nullptr, ErrorKind::kDevice, "device '" + device + "' is not available: " + why);
    return *b;
  }
  fail(ErrorKind::kDevice, "unknown device '" + device + "'; expected 'cpu', 'cuda' or 'cuda-emu'");
}

}  // namespace gemma_native::bindings
