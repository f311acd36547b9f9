// gemma_native._core: the thin pybind11 layer.  numpy arrays in, raw pointers to the ops and
// the models out; every shape/dtype is checked here, the GIL is released around compute, and
// gemma_native::Error is raised as the Python exception of its kind (gemma_native.errors).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>
#if defined(__GLIBC__)  // defined by the standard headers above
#include <malloc.h>
#endif

#include "bindings/arrays.h"
#include "ops/backend.h"
#include "ops/cpu/cpu_features.h"
#include "ops/cpu/core_peak.h"
#include "ops/cpu/cpu_limits.h"
#include "ops/cpu/dispatch.h"
#include "ops/cpu/threadpool.h"
#include "ops/interrupt.h"

namespace py = pybind11;

namespace gemma_native::bindings {

void bind_ops(py::module_& m);
void bind_models(py::module_& m);
void bind_device_bench(py::module_& m);

namespace {

const char* exception_name(ErrorKind k) {
  switch (k) {
#define GN_ERROR_KIND_CASE(kind, exception) \
  case ErrorKind::kind:                     \
    return #exception;
    GN_ERROR_KINDS(GN_ERROR_KIND_CASE)
#undef GN_ERROR_KIND_CASE
  }
  return "GemmaNativeError";
}

// {feature name: usable} of cpu_features.h's decodings.
py::dict features_dict(const std::vector<std::pair<std::string, bool>>& features) {
  py::dict d;
  for (const auto& f : features) d[py::str(f.first)] = f.second;
  return d;
}

py::dict backend_info() {
  py::dict d;
  d["cpu_isa"] = ops::cpu::active_isa();
  d["available_isas"] = ops::cpu::available_isas();
  d["compiled_isas"] = ops::cpu::compiled_isas();
  d["bf16_gemm"] = ops::cpu::bf16_gemm_name();
  d["available_bf16_gemms"] = ops::cpu::available_bf16_gemms();
  d["int8_gemm"] = ops::cpu::int8_gemm_name();
  d["available_int8_gemms"] = ops::cpu::available_int8_gemms();
  d["cpu_features"] = features_dict(ops::cpu::detected_features());
  d["num_threads"] = ops::cpu::num_threads();
  d["max_pass_tokens"] = ops::cpu::max_pass_tokens();
  py::dict pf;  // the int8 decode's prefetch distance: one activation row, and more
  pf["one_row"] = ops::cpu::int8_prefetch_bytes(1);
  pf["more_rows"] = ops::cpu::int8_prefetch_bytes(4);
  d["int8_prefetch_bytes"] = pf;
  const ops::cpu::X86Model& cpu = ops::cpu::detected_x86_model();
  py::dict model;
  model["vendor"] = cpu.vendor;
  model["family"] = cpu.family;
  model["model"] = cpu.model;
  d["cpu_model"] = model;
  const ops::cpu::CpuLimits lim = ops::cpu::cpu_limits();
  d["default_num_threads"] = lim.usable();
  py::dict cpus;
  cpus["affinity"] = lim.affinity;
  cpus["physical_cores"] = lim.physical_cores;
  cpus["cgroup_quota"] = lim.cgroup_cpus > 0 ? py::object(py::float_(lim.cgroup_cpus))
                                             : py::object(py::none());
  cpus["usable"] = lim.usable();
  d["cpus"] = cpus;
  const ops::CudaInfo ci = ops::cuda_info();
  py::dict cuda;
  cuda["compiled"] = ci.compiled;
  cuda["available"] = !ci.devices.empty();
  cuda["device_count"] = static_cast<int>(ci.devices.size());
  cuda["architectures"] = ci.architectures;
  py::list devices;
  for (const auto& dv : ci.devices) {
    py::dict x;
    x["name"] = dv.name;
    x["compute_capability"] = std::to_string(dv.major) + "." + std::to_string(dv.minor);
    x["multiprocessors"] = dv.multiprocessors;
    x["memory_bytes"] = dv.memory_bytes;
    x["bandwidth_gb_per_s"] = dv.bandwidth_gb_per_s;
    devices.append(x);
  }
  cuda["devices"] = devices;
  cuda["reason"] = ci.reason;
  d["cuda"] = cuda;
  return d;
}

}  // namespace
}  // namespace gemma_native::bindings

PYBIND11_MODULE(_core, m) {
  using namespace gemma_native;
  m.doc() = "gemma_native compiled core (use the gemma_native package, not this module)";

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      py::object errors = py::module_::import("gemma_native.errors");
      py::object cls = errors.attr(bindings::exception_name(e.kind()));
      PyErr_SetString(cls.ptr(), e.what());
    } catch (const std::bad_alloc&) {
      PyErr_SetString(PyExc_MemoryError, "gemma_native: out of memory");
    } catch (const ops::Interrupted&) {  // normally raised by the forward binding itself
      if (!PyErr_Occurred()) PyErr_SetNone(PyExc_KeyboardInterrupt);
    }
  });

  m.def("backend_info", &bindings::backend_info, "Which CPU kernels run and what the CPU has.");
  // The lists the Python side reads instead of keeping copies: weight dtype codes (with the
  // GGML block geometry of the quantized ones) and the exception class of each error kind.
  py::dict codes, blocks;
  for (int c = 0; c < kNumDTypes; ++c) {
    const DType t = static_cast<DType>(c);
    codes[dtype_name(t)] = c;
    if (is_quantized(t)) blocks[dtype_name(t)] = py::make_tuple(block_values(t), block_bytes(t));
  }
  m.attr("DTYPE_CODES") = codes;
  m.attr("QUANT_BLOCKS") = blocks;
  py::dict kinds;
#define GN_ERROR_KIND_ITEM(kind, exception) kinds[#kind] = #exception;
  GN_ERROR_KINDS(GN_ERROR_KIND_ITEM)
#undef GN_ERROR_KIND_ITEM
  m.attr("ERROR_KINDS") = kinds;
  m.def("set_cpu_isa", &ops::cpu::set_isa, py::arg("name"),
        "Force a CPU kernel set: 'auto', 'scalar', 'avx2' or 'avx512'.");
  m.def("cpu_isa", &ops::cpu::active_isa);
  // The feature decoding of csrc/ops/cpu/cpu_features.h on given register values (tests feed
  // it made-up CPUs; backend_info()["cpu_features"] is the same decoding of this machine's).
  m.def(
      "decode_x86_cpuid",
      [](uint32_t leaf1_ecx, uint32_t leaf7_ebx, uint32_t leaf7_ecx, uint32_t leaf7_edx,
         uint32_t leaf7_1_eax, uint64_t xcr0) {
        return bindings::features_dict(ops::cpu::decode_x86(
            {leaf1_ecx, leaf7_ebx, leaf7_ecx, leaf7_edx, leaf7_1_eax, xcr0}));
      },
      py::arg("leaf1_ecx"), py::arg("leaf7_ebx"), py::arg("leaf7_ecx"), py::arg("leaf7_edx"),
      py::arg("leaf7_1_eax"), py::arg("xcr0"));
  // The processor identity decoding (vendor, display family and model) and the int8 decode
  // prefetch distance chosen from it (ops/cpu/dispatch.h), for made-up CPUs in the tests.
  m.def(
      "decode_x86_model",
      [](uint32_t leaf0_ebx, uint32_t leaf0_edx, uint32_t leaf0_ecx, uint32_t leaf1_eax) {
        const ops::cpu::X86Model c =
            ops::cpu::decode_x86_model(leaf0_ebx, leaf0_edx, leaf0_ecx, leaf1_eax);
        return py::make_tuple(c.vendor, c.family, c.model);
      },
      py::arg("leaf0_ebx"), py::arg("leaf0_edx"), py::arg("leaf0_ecx"), py::arg("leaf1_eax"));
  m.def(
      "int8_prefetch_bytes_for",
      [](const std::string& vendor, int family, int model, int64_t rows) {
        return ops::cpu::int8_prefetch_bytes_for({vendor, family, model}, rows);
      },
      py::arg("vendor"), py::arg("family"), py::arg("model"), py::arg("rows"));
  m.def(
      "decode_arm_hwcaps",
      [](uint64_t hwcap, uint64_t hwcap2) {
        return bindings::features_dict(ops::cpu::decode_arm(hwcap, hwcap2));
      },
      py::arg("hwcap"), py::arg("hwcap2"));
  m.def("set_bf16_gemm", &ops::cpu::set_bf16_gemm, py::arg("name"),
        "Force the bf16 compute mode's GEMM: 'auto', 'amx', 'amx-emulated' or 'none' (exact).");
  m.def("bf16_gemm", &ops::cpu::bf16_gemm_name);
  m.def("set_int8_gemm", &ops::cpu::set_int8_gemm, py::arg("name"),
        "Force the int8 GEMM of Q8_0R16 weights (prefill): 'auto', 'amx', 'amx-emulated' or "
        "'none' (the kernel set's own); every choice gives the same results.");
  m.def("int8_gemm", &ops::cpu::int8_gemm_name);
  m.def("set_num_threads", [](int n) {
          py::gil_scoped_release nogil;  // waits for running computations
          ops::cpu::set_num_threads(n);
        }, py::arg("n"),
        "Threads used by the kernels (1..1024); 0 restores the default (the usable CPUs: "
        "physical cores in the affinity mask, capped by the cgroup CPU quota).");
  m.def("_cgroup_cpu_limit", &ops::cpu::cgroup_cpu_limit, py::arg("proc_cgroup"),
        py::arg("mountinfo"), py::arg("root"),
        "The cgroup CPU quota (CPUs, 0 = none) from /proc/self/cgroup and mountinfo texts, "
        "reading files under root (tests).");
  m.def("num_threads", &ops::cpu::num_threads);
  m.def("set_max_pass_tokens", [](int64_t n) {
          py::gil_scoped_release nogil;
          ops::cpu::set_max_pass_tokens(n);
        }, py::arg("n"),
        "The most token rows (sequences x tokens) one pass through a model's layers takes on the "
        "CPU (0: no limit); longer forwards run in passes, with the same results.");
  m.def("max_pass_tokens", &ops::cpu::max_pass_tokens);
  m.attr("DEFAULT_MAX_PASS_TOKENS") = ops::cpu::kDefaultMaxPassTokens;
  m.attr("MAX_PASS_TOKENS_LIMIT") = ops::cpu::kMaxPassTokensLimit;
  m.def("core_peaks", [](int threads) {
          py::gil_scoped_release nogil;
          return ops::cpu::core_peaks(threads);
        }, py::arg("threads"),
        "The cores' arithmetic ceiling, measured by register-only loops of independent "
        "multiply-adds on `threads` threads: FLOP/s per instruction family the CPU has "
        "('fp32_fma_256', 'fp32_fma_512', 'bf16_dot_512', 'int8_dot_512'; none off x86-64).");
  m.def("read_bandwidth", [](py::buffer buf, int threads, int reps) {
          const py::buffer_info info = buf.request();
          bool contiguous = true;  // C-contiguous bytes: strides of the packed layout
          py::ssize_t expect = info.itemsize;
          for (py::ssize_t d = info.ndim - 1; d >= 0; --d) {
            if (info.shape[d] > 1 && info.strides[d] != expect) contiguous = false;
            expect *= info.shape[d];
          }
          if (!contiguous) throw py::value_error("read_bandwidth needs a C-contiguous buffer");
          const int64_t bytes = static_cast<int64_t>(info.size * info.itemsize);
          py::gil_scoped_release nogil;
          return ops::cpu::read_bandwidth(info.ptr, bytes, threads, reps);
        }, py::arg("buffer"), py::arg("threads"), py::arg("reps") = 5,
        "The memory's streaming read rate in bytes/s: `threads` threads each summing its own "
        "slice of `buffer` (C-contiguous) with wide loads, best of `reps` runs.");

  m.def("trim_heap", [] {
#if defined(__GLIBC__)
          return malloc_trim(0) != 0;
#else
          return false;
#endif
        },
        "Returns the C heap's free pages to the system (glibc's malloc_trim; elsewhere a no-op "
        "returning False); True if any were returned.");

  bindings::bind_ops(m);
  bindings::bind_models(m);
  bindings::bind_device_bench(m);
}
