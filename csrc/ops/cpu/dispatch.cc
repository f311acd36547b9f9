#include "ops/cpu/dispatch.h"

#include "ops/cpu/cpu_features.h"

#include <atomic>
#include <cctype>
#include <cstdlib>
#include <mutex>

#if defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace gemma_native::ops::cpu {
namespace {

struct Entry {
  const char* name;
  const KernelTable* (*table)();
  bool (*supported)();
  bool emulated = false;  // runs anywhere, slowly: only when asked for by name
};

[[maybe_unused]] bool avx2_ok() { return has_feature("avx2") && has_feature("fma") && has_feature("f16c"); }
[[maybe_unused]] bool avx512_ok() {
  return avx2_ok() && has_feature("avx512f") && has_feature("avx512bw") && has_feature("avx512vl") && has_feature("avx512dq");
}

std::vector<Entry> entries() {
  std::vector<Entry> e = {{"scalar", kernel_table_scalar, [] { return true; }}};
#ifdef GN_HAVE_AVX2
  e.push_back({"avx2", kernel_table_avx2, avx2_ok});
#endif
#ifdef GN_HAVE_AVX512
  e.push_back({"avx512", kernel_table_avx512, avx512_ok});
#endif
#ifdef GN_HAVE_AVX512VNNI
  e.push_back({"avx512vnni", kernel_table_avx512vnni, [] { return avx512_ok() && has_feature("avx512vnni"); }});
#endif
#ifdef GN_HAVE_NEON
  e.push_back({"neon", kernel_table_neon, [] { return has_feature("neon"); }});
#endif
#ifdef GN_HAVE_NEONDOT
  e.push_back({"neondot", kernel_table_neondot, [] { return has_feature("neon") && has_feature("dotprod"); }});
#endif
#ifdef GN_HAVE_AVX512EMU
  e.push_back({"avx512emu", kernel_table_avx512emu, [] { return true; }, true});
  e.push_back({"avx512vnniemu", kernel_table_avx512vnniemu, [] { return true; }, true});
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
      if (e.supported() && !e.emulated) best = e.table();
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

void kernel_fault(const char* what) { fail(ErrorKind::kDevice, what); }

namespace {

// Linux hands out the AMX tile data state only on request, once per process (arch_prctl
// ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA); a tile instruction without it is SIGILL.
[[maybe_unused]] bool tiles_granted() {
#if defined(__x86_64__) && defined(__linux__) && defined(GN_HAVE_AMX)
  static const bool ok = [] {
    if (!(has_feature("amx_tile") && has_feature("avx512f"))) return false;
    constexpr long kArchReqXcompPerm = 0x1023;
    constexpr long kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return ok;
#else
  return false;
#endif
}
[[maybe_unused]] bool amx_granted() { return has_feature("amx_bf16") && tiles_granted(); }
[[maybe_unused]] bool amx_int8_granted() { return has_feature("amx_int8") && tiles_granted(); }

struct Bf16Entry {
  const char* name;
  Bf16Gemm fn;
  bool (*usable)();
  Bf16BlockDiag block_diag = nullptr;
};

const std::vector<Bf16Entry>& bf16_entries() {
  static const std::vector<Bf16Entry> e = {
      {"none", nullptr, [] { return true; }},
      {"amx-emulated", amxemu::linear_bf16, [] { return true; }, amxemu::block_diag_bf16},
#ifdef GN_HAVE_AVX512BF16EMU
      {"avx512bf16-emulated", avx512bf16emu::linear_bf16, [] { return true; },
       avx512bf16emu::block_diag_bf16},
#endif
#ifdef GN_HAVE_AVX512BF16
      {"avx512bf16", avx512bf16::linear_bf16, [] { return avx512_ok() && has_feature("avx512bf16"); },
       avx512bf16::block_diag_bf16},
#endif
#ifdef GN_HAVE_AMX
      {"amx", amx::linear_bf16, amx_granted, amx::block_diag_bf16},
#endif
  };
  return e;
}

// A run-time choice among named entries (the bf16 and int8 GEMMs; entry 0 is "none"): at first
// use the environment variable `env`, else "auto"; "auto" takes the first usable name of
// `preferred`, else "none"; a name asked for must be built and usable here.
template <class E>
struct Choice {
  const std::vector<E>& (*entries)();
  std::vector<std::string> preferred;
  const char* what;   // e.g. "bf16 GEMM"
  const char* needs;  // what usable() requires, in words
  const char* env;
  std::atomic<int> index{-1};

  int pick(const std::string& requested) const {
    std::string name = requested;
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const auto& all = entries();
    if (name.empty() || name == "auto") {
      for (const std::string& best : preferred) {
        for (size_t i = 0; i < all.size(); ++i) {
          if (all[i].name == best && all[i].usable()) return static_cast<int>(i);
        }
      }
      return 0;
    }
    std::string known;
    for (size_t i = 0; i < all.size(); ++i) {
      if (name == all[i].name) {
        if (!all[i].usable()) {
          fail(ErrorKind::kDevice, std::string(what) + " '" + name + "' was built but this CPU or "
                                   "OS does not allow it (" + needs + ")");
        }
        return static_cast<int>(i);
      }
      known += std::string(known.empty() ? "" : ", ") + all[i].name;
    }
    fail(ErrorKind::kDevice, "unknown or not built " + std::string(what) + " '" + name +
                                 "' (built: " + known + "; or 'auto')");
  }
  const E& get() {
    int i = index.load(std::memory_order_acquire);
    if (i < 0) {
      std::lock_guard<std::mutex> lk(g_mutex);
      i = index.load();
      if (i < 0) {
        const char* e = std::getenv(env);
        i = pick(e ? e : "auto");
        index.store(i, std::memory_order_release);
      }
    }
    return entries()[static_cast<size_t>(i)];
  }
  void set(const std::string& name) {
    const int i = pick(name);
    std::lock_guard<std::mutex> lk(g_mutex);
    index.store(i, std::memory_order_release);
  }
  std::vector<std::string> available() const {
    std::vector<std::string> out;
    for (const auto& e : entries()) {
      if (e.usable()) out.push_back(e.name);
    }
    return out;
  }
};

Choice<Bf16Entry>& bf16_choice() {
  static Choice<Bf16Entry> c{bf16_entries, {"amx", "avx512bf16"}, "bf16 GEMM",
                             "amx: AMX-BF16 and the kernel's tile permission; avx512bf16: "
                             "AVX512-BF16", "GEMMA_NATIVE_BF16_GEMM"};
  return c;
}

struct Int8Entry {
  const char* name;
  Int8Gemm fn;
  bool (*usable)();
};

const std::vector<Int8Entry>& int8_entries() {
  static const std::vector<Int8Entry> e = {
      {"none", nullptr, [] { return true; }},
      {"amx-emulated", amxemu::linear_q8_0r16, [] { return true; }},
#ifdef GN_HAVE_AMX
      {"amx", amx::linear_q8_0r16, amx_int8_granted},
#endif
  };
  return e;
}

Choice<Int8Entry>& int8_choice() {
  static Choice<Int8Entry> c{int8_entries, {"amx"}, "int8 GEMM",
                             "amx: AMX-INT8 and the kernel's tile permission",
                             "GEMMA_NATIVE_INT8_GEMM"};
  return c;
}

}  // namespace

Int8Gemm int8_gemm() { return int8_choice().get().fn; }
std::string int8_gemm_name() { return int8_choice().get().name; }
std::vector<std::string> available_int8_gemms() { return int8_choice().available(); }
void set_int8_gemm(const std::string& name) { int8_choice().set(name); }

Bf16Gemm bf16_gemm() { return bf16_choice().get().fn; }
std::string bf16_gemm_name() { return bf16_choice().get().name; }
Bf16BlockDiag bf16_block_diag() { return bf16_choice().get().block_diag; }
std::vector<std::string> available_bf16_gemms() { return bf16_choice().available(); }
void set_bf16_gemm(const std::string& name) { bf16_choice().set(name); }

namespace {
constexpr const char* kPassEnv = "GEMMA_NATIVE_MAX_PASS_TOKENS";

// The decimal integer in [0, max] an environment variable names: `unset` where it is unset or
// empty, -1 where it is anything else (each caller reports that at first use).
int64_t count_from_env(const char* name, int64_t max, int64_t unset) {
  const char* e = std::getenv(name);
  if (e == nullptr || *e == '\0') return unset;
  int64_t v = 0;
  for (const char* c = e; *c != '\0'; ++c) {
    if (*c < '0' || *c > '9' || v > max) return -1;
    v = v * 10 + (*c - '0');
  }
  return v <= max ? v : -1;
}

// The limit GEMMA_NATIVE_MAX_PASS_TOKENS names, the default where it is unset.
int64_t pass_tokens_from_env() {
  return count_from_env(kPassEnv, kMaxPassTokensLimit, kDefaultMaxPassTokens);
}

std::atomic<int64_t>& max_pass_setting() {
  static std::atomic<int64_t> v{pass_tokens_from_env()};
  return v;
}
}  // namespace

int64_t max_pass_tokens() {
  const int64_t v = max_pass_setting().load(std::memory_order_relaxed);
  if (v < 0) {
    const char* e = std::getenv(kPassEnv);
    fail(ErrorKind::kInvalidArgument,
         std::string(kPassEnv) + "='" + (e != nullptr ? e : "") +
             "' is not a token count: use an integer >= 0 (0: no limit), or "
             "gemma_native.set_max_pass_tokens()");
  }
  return v;
}
void set_max_pass_tokens(int64_t n) {
  GN_CHECK(n >= 0 && n <= kMaxPassTokensLimit, ErrorKind::kInvalidArgument,
           "max_pass_tokens must be in [0, 2^40] (0: no limit), got " + std::to_string(n));
  max_pass_setting().store(n, std::memory_order_relaxed);
}

int64_t int8_prefetch_bytes_for(const X86Model& cpu, int64_t rows) {
  // AMD family 19h, the Zen 4 models (Genoa / Raphael / Phoenix / Bergamo and Siena); the
  // family's Zen 3 models have not been measured and keep the default.
  const bool zen4 = cpu.vendor == "AuthenticAMD" && cpu.family == 0x19 &&
                    ((cpu.model >= 0x10 && cpu.model <= 0x1f) ||
                     (cpu.model >= 0x60 && cpu.model <= 0x7f) ||
                     (cpu.model >= 0xa0 && cpu.model <= 0xaf));
  if (zen4) return rows <= 1 ? 0 : 16384;
  return kDefaultInt8PrefetchBytes;
}

int64_t int8_prefetch_bytes(int64_t rows) {
  static constexpr const char* kEnv = "GEMMA_NATIVE_INT8_PREFETCH";
  // The distance the variable names, -2 where it is unset (the CPU's default), -1 where it is
  // set to something else than a byte count.
  static const int64_t v = count_from_env(kEnv, kMaxInt8PrefetchBytes, -2);
  if (v == -2) return int8_prefetch_bytes_for(detected_x86_model(), rows);
  if (v < 0) {
    const char* e = std::getenv(kEnv);
    fail(ErrorKind::kInvalidArgument,
         std::string(kEnv) + "='" + (e != nullptr ? e : "") +
             "' is not a prefetch distance: use a byte count in [0, 1048576] (0: none)");
  }
  return v;
}

}  // namespace gemma_native::ops::cpu
