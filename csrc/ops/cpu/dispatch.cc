#include "ops/cpu/dispatch.h"

#include <atomic>
#include <cctype>
#include <cstdlib>
#include <mutex>

namespace gemma_native::ops::cpu {
namespace {

bool has(const char* feature) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  // __builtin_cpu_supports needs literal strings, hence the chain.
  const std::string f(feature);
  if (f == "avx2") return __builtin_cpu_supports("avx2");
  if (f == "fma") return __builtin_cpu_supports("fma");
  if (f == "f16c") return __builtin_cpu_supports("f16c");
  if (f == "avx512f") return __builtin_cpu_supports("avx512f");
  if (f == "avx512bw") return __builtin_cpu_supports("avx512bw");
  if (f == "avx512vl") return __builtin_cpu_supports("avx512vl");
  if (f == "avx512dq") return __builtin_cpu_supports("avx512dq");
  if (f == "avx512bf16") return __builtin_cpu_supports("avx512bf16");
  if (f == "avx512vnni") return __builtin_cpu_supports("avx512vnni");
#endif
  (void)feature;
  return false;
}

struct Entry {
  const char* name;
  const KernelTable* (*table)();
  bool (*supported)();
};

bool avx2_ok() { return has("avx2") && has("fma") && has("f16c"); }
bool avx512_ok() {
  return avx2_ok() && has("avx512f") && has("avx512bw") && has("avx512vl") && has("avx512dq");
}

std::vector<Entry> entries() {
  std::vector<Entry> e = {{"scalar", kernel_table_scalar, [] { return true; }}};
#ifdef GN_HAVE_AVX2
  e.push_back({"avx2", kernel_table_avx2, avx2_ok});
#endif
#ifdef GN_HAVE_AVX512
  e.push_back({"avx512", kernel_table_avx512, avx512_ok});
#endif
  return e;
}

std::mutex g_mutex;
std::atomic<const KernelTable*> g_active{nullptr};

const KernelTable* pick(const std::string& requested) {
  std::string name = requested;
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const auto all = entries();
  if (name.empty() || name == "auto") {
    const KernelTable* best = nullptr;
    for (const auto& e : all) {
      if (e.supported()) best = e.table();
    }
    return best;
  }
  for (const auto& e : all) {
    if (name == e.name) {
      if (!e.supported()) {
        fail(ErrorKind::kDevice, "CPU ISA '" + name + "' was built but this CPU does not support it");
      }
      return e.table();
    }
  }
  std::string known;
  for (const auto& e : all) known += std::string(known.empty() ? "" : ", ") + e.name;
  fail(ErrorKind::kDevice, "unknown or not built CPU ISA '" + name + "' (built: " + known +
                               "; or 'auto')");
}

}  // namespace

const KernelTable& active() {
  const KernelTable* t = g_active.load(std::memory_order_acquire);
  if (t) return *t;
  std::lock_guard<std::mutex> lk(g_mutex);
  t = g_active.load();
  if (!t) {
    const char* env = std::getenv("GEMMA_NATIVE_CPU_ISA");
    t = pick(env ? env : "auto");
    g_active.store(t, std::memory_order_release);
  }
  return *t;
}

std::string active_isa() { return active().isa; }

std::vector<std::string> available_isas() {
  std::vector<std::string> out;
  for (const auto& e : entries()) {
    if (e.supported()) out.push_back(e.name);
  }
  return out;
}

std::vector<std::string> compiled_isas() {
  std::vector<std::string> out;
  for (const auto& e : entries()) out.push_back(e.name);
  return out;
}

void set_isa(const std::string& name) {
  const KernelTable* t = pick(name);
  std::lock_guard<std::mutex> lk(g_mutex);
  g_active.store(t, std::memory_order_release);
}

std::vector<std::pair<std::string, bool>> cpu_features() {
  std::vector<std::pair<std::string, bool>> out;
  for (const char* f : {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq",
                        "avx512bf16", "avx512vnni"}) {
    out.emplace_back(f, has(f));
  }
  return out;
}

}  // namespace gemma_native::ops::cpu
