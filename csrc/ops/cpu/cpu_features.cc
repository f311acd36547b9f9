#include "ops/cpu/cpu_features.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace gemma_native::ops::cpu {
namespace {

bool bit(uint64_t v, int b) { return (v >> b) & 1u; }

#if defined(__x86_64__)
X86Cpuid read_x86() {
  X86Cpuid r;
  unsigned a = 0, b = 0, c = 0, d = 0;
  const unsigned max_leaf = __get_cpuid_max(0, nullptr);
  if (max_leaf >= 1 && __get_cpuid(1, &a, &b, &c, &d)) r.leaf1_ecx = c;
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    r.leaf7_ebx = b;
    r.leaf7_ecx = c;
    r.leaf7_edx = d;
    const unsigned max_sub = a;
    if (max_sub >= 1) {
      __cpuid_count(7, 1, a, b, c, d);
      r.leaf7_1_eax = a;
    }
  }
  if (bit(r.leaf1_ecx, 27)) {  // OSXSAVE: XGETBV is allowed
    uint32_t lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    r.xcr0 = (static_cast<uint64_t>(hi) << 32) | lo;
  }
  return r;
}
#endif

}  // namespace

std::vector<std::pair<std::string, bool>> decode_x86(const X86Cpuid& r) {
  const bool os_avx = bit(r.leaf1_ecx, 27) && (r.xcr0 & 0x6u) == 0x6u;
  const bool os_avx512 = os_avx && (r.xcr0 & 0xE0u) == 0xE0u;
  const bool os_amx = os_avx && (r.xcr0 & 0x60000u) == 0x60000u;
  const bool avx = os_avx && bit(r.leaf1_ecx, 28);
  const bool avx512f = os_avx512 && bit(r.leaf7_ebx, 16);
  const bool amx_tile = os_amx && bit(r.leaf7_edx, 24);
  return {
      {"avx2", avx && bit(r.leaf7_ebx, 5)},
      {"fma", avx && bit(r.leaf1_ecx, 12)},
      {"f16c", avx && bit(r.leaf1_ecx, 29)},
      {"avx512f", avx512f},
      {"avx512bw", avx512f && bit(r.leaf7_ebx, 30)},
      {"avx512vl", avx512f && bit(r.leaf7_ebx, 31)},
      {"avx512dq", avx512f && bit(r.leaf7_ebx, 17)},
      {"avx512bf16", avx512f && bit(r.leaf7_1_eax, 5)},
      {"avx512vnni", avx512f && bit(r.leaf7_ecx, 11)},
      {"amx_tile", amx_tile},
      {"amx_bf16", amx_tile && bit(r.leaf7_edx, 22)},
      {"amx_int8", amx_tile && bit(r.leaf7_edx, 25)},
  };
}

X86Model decode_x86_model(uint32_t leaf0_ebx, uint32_t leaf0_edx, uint32_t leaf0_ecx,
                          uint32_t leaf1_eax) {
  X86Model m;
  for (const uint32_t w : {leaf0_ebx, leaf0_edx, leaf0_ecx}) {
    for (int i = 0; i < 4; ++i) {
      const char c = static_cast<char>((w >> (8 * i)) & 0xffu);
      if (c != 0) m.vendor += c;
    }
  }
  const int base_family = static_cast<int>((leaf1_eax >> 8) & 0xfu);
  const int base_model = static_cast<int>((leaf1_eax >> 4) & 0xfu);
  m.family = base_family == 15 ? base_family + static_cast<int>((leaf1_eax >> 20) & 0xffu)
                               : base_family;
  m.model = (base_family == 6 || base_family == 15)
                ? (static_cast<int>((leaf1_eax >> 16) & 0xfu) << 4) + base_model
                : base_model;
  return m;
}

const X86Model& detected_x86_model() {
  static const X86Model m = [] {
#if defined(__x86_64__)
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return X86Model{};
    const uint32_t vb = b, vc = c, vd = d;
    unsigned eax1 = 0;
    if (a >= 1 && __get_cpuid(1, &a, &b, &c, &d)) eax1 = a;
    return decode_x86_model(vb, vd, vc, eax1);
#else
    return X86Model{};
#endif
  }();
  return m;
}

std::vector<std::pair<std::string, bool>> decode_arm(uint64_t hwcap, uint64_t hwcap2) {
  const bool neon = bit(hwcap, 1);
  return {
      {"neon", neon},
      {"dotprod", neon && bit(hwcap, 20)},
      {"i8mm", neon && bit(hwcap2, 13)},
      {"bf16", neon && bit(hwcap2, 14)},
  };
}

const std::vector<std::pair<std::string, bool>>& detected_features() {
  static const std::vector<std::pair<std::string, bool>> f = [] {
#if defined(__x86_64__)
    return decode_x86(read_x86());
#elif defined(__aarch64__) && defined(__linux__)
    return decode_arm(getauxval(AT_HWCAP), getauxval(AT_HWCAP2));
#else
    return std::vector<std::pair<std::string, bool>>{};
#endif
  }();
  return f;
}

bool has_feature(const std::string& name) {
  for (const auto& f : detected_features()) {
    if (f.first == name) return f.second;
  }
  return false;
}

}  // namespace gemma_native::ops::cpu
