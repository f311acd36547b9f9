// Runs every CUDA kernel (every op in cuda/op_list.h) on the SIMT emulator over small inputs,
// for a ThreadSanitizer build: tests/test_cuda_emu_tools.py compiles this with
// -fsanitize=thread together with cuda/emu/*.cc and ops/checks.cc and requires a clean run.
// (What the kernels compute is checked against the CPU ops by tests/test_cuda_emu*.py; here
// the point is how they synchronise, so the shapes cover the cases that change that: lengths
// that are not whole warps, several blocks, batch > 1, ring-buffer wrap-around.)
// Prints "ran <op>" per op; exits 4 if an op of the list has no case here.
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "cuda/ops_cuda.h"

namespace {

using namespace gemma_native;

struct Rng {
  uint64_t s = 0x9E3779B97F4A7C15ull;
  float uniform() {  // splitmix64 -> [-1, 1)
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return static_cast<float>(z >> 40) / static_cast<float>(1 << 23) - 1.0f;
  }
  std::vector<float> vec(int64_t n, float scale = 1.0f) {
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = uniform() * scale;
    return v;
  }
};

void case_rmsnorm(Rng& r) {
  for (auto [n, d] : {std::pair<int64_t, int64_t>{3, 37}, {2, 300}, {1, 1}}) {
    auto x = r.vec(n * d), w = r.vec(d);
    std::vector<float> out(x.size());
    ops::RmsNormArgs a;
    a.x = x.data();
    a.w = w.data();
    a.n = n;
    a.d = d;
    a.out = out.data();
    ops::emu::rmsnorm(a);
  }
}

const std::map<std::string, std::function<void(Rng&)>>& cases() {
  static const std::map<std::string, std::function<void(Rng&)>> m = {
      {"rmsnorm", case_rmsnorm},
  };
  return m;
}

}  // namespace

int main() {
  Rng rng;
  int missing = 0;
  for (const std::string& op : ops::emu::ops_supported()) {
    auto it = cases().find(op);
    if (it == cases().end()) {
      std::printf("missing case %s\n", op.c_str());
      ++missing;
      continue;
    }
    try {
      it->second(rng);
    } catch (const std::exception& e) {
      std::printf("error %s: %s\n", op.c_str(), e.what());
      return 5;
    }
    std::printf("ran %s\n", op.c_str());
  }
  return missing ? 4 : 0;
}
