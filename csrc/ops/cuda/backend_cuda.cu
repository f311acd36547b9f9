// The GPU backend (ops/backend.h): device memory from cudaMalloc, the CUDA kernels
// (ops_cuda.cu) on one stream per device, and graphs from stream capture (cudaStreamBeginCapture
// ... cudaGraphInstantiate), which is how the model replays its decode step.
// Built only with GEMMA_NATIVE_CUDA; without a driver or a device cuda_backend() returns null
// with the runtime's reason, and nothing here is touched.
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ops/cuda/ops_cuda.h"
#include "ops/backend.h"
#include "ops/cuda/kernel_backend.h"

namespace gemma_native::ops {
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail(ErrorKind::kDevice, std::string(what) + ": " + cudaGetErrorString(e));
}

// Why the runtime found no usable device, in words a user can act on.  The statically linked
// runtime reports a machine with no NVIDIA driver at all as "CUDA driver version is
// insufficient for CUDA runtime version", the same as a driver that is too old; the driver
// library (libcuda.so.1) tells the two apart.
std::string no_device_reason(cudaError_t e, int count) {
  if (e == cudaSuccess && count == 0) return "no CUDA device is present";
  void* lib = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (lib == nullptr) {
    return "no NVIDIA driver found (libcuda.so.1 cannot be loaded): CUDA needs a GPU and its "
           "driver";
  }
  int driver = 0;
  using GetVersion = int (*)(int*);
  if (auto get = reinterpret_cast<GetVersion>(dlsym(lib, "cuDriverGetVersion"))) get(&driver);
  dlclose(lib);
  if (e == cudaErrorInsufficientDriver && driver > 0) {
    return "the NVIDIA driver supports CUDA up to " + std::to_string(driver / 1000) + "." +
           std::to_string(driver % 1000 / 10) + ", older than the CUDA " +
           std::to_string(CUDART_VERSION / 1000) + "." +
           std::to_string(CUDART_VERSION % 1000 / 10) +
           " runtime this package was built with: update the driver";
  }
  return cudaGetErrorString(e);
}

class CudaGraph final : public Graph {
 public:
  CudaGraph(cudaGraphExec_t exec, cudaStream_t s) : exec_(exec), stream_(s) {}
  ~CudaGraph() override { cudaGraphExecDestroy(exec_); }
  void replay() override { check(cudaGraphLaunch(exec_, stream_), "cudaGraphLaunch"); }

 private:
  cudaGraphExec_t exec_;
  cudaStream_t stream_;
};

class CudaBackend final : public KernelBackend<CudaBackend> {
 public:
  explicit CudaBackend(int device) : device_(device) {
    check(cudaSetDevice(device_), "cudaSetDevice");
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    name_ = "cuda:" + std::to_string(device_);
  }
  ~CudaBackend() override { cudaStreamDestroy(stream_); }

  const char* name() const override { return name_.c_str(); }
  bool host_memory() const override { return false; }

  void* alloc(size_t bytes) override {
    use();
    void* p = nullptr;
    check(cudaMalloc(&p, bytes > 0 ? bytes : 1), "cudaMalloc");
    check(cudaMemsetAsync(p, 0, bytes, stream_), "cudaMemset");
    return p;
  }
  void release(void* p) override {
    use();
    cudaStreamSynchronize(stream_);  // no kernel may still use it
    cudaFree(p);
  }
  void to_device(void* dst, const void* src, size_t bytes) override {
    GN_CHECK(!capturing_, ErrorKind::kDevice, "host-to-device copy inside a graph capture");
    use();
    // From pageable memory the call returns once the source has been staged.
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "copy to device");
  }
  void to_host(void* dst, const void* src, size_t bytes) override {
    GN_CHECK(!capturing_, ErrorKind::kDevice, "device-to-host copy inside a graph capture");
    use();
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "copy to host");
    check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    use();
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_), "device copy");
  }
  void synchronize() override {
    use();
    check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }

  bool supports_graphs() const override { return true; }
  void begin_capture() override {
    GN_CHECK(!capturing_, ErrorKind::kDevice, "graph capture already under way");
    use();
    check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal),
          "cudaStreamBeginCapture");
    capturing_ = true;
  }
  const std::vector<std::string>& kernel_names() const {
    static const std::vector<std::string> names = cuda::ops_supported();
    return names;
  }
  template <class Args>
  void launch(const Args& a) {
    use();
    cuda::set_stream(stream_);
    call(a);
  }

  std::unique_ptr<Graph> end_capture() override {
    GN_CHECK(capturing_, ErrorKind::kDevice, "end_capture without begin_capture");
    capturing_ = false;
    cudaGraph_t graph = nullptr;
    check(cudaStreamEndCapture(stream_, &graph), "cudaStreamEndCapture");
    cudaGraphExec_t exec = nullptr;
    const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    check(e, "cudaGraphInstantiate");
    return std::make_unique<CudaGraph>(exec, stream_);
  }

 private:
  void use() { check(cudaSetDevice(device_), "cudaSetDevice"); }

  GN_KERNEL_BACKEND_CALLS(cuda)

  int device_;
  std::string name_;
  cudaStream_t stream_ = nullptr;
  bool capturing_ = false;
};

}  // namespace

CudaInfo cuda_info() {
  CudaInfo info;
  info.compiled = true;
#ifdef GN_CUDA_ARCHS
  info.architectures = GN_CUDA_ARCHS;
#endif
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    cudaGetLastError();
    info.reason = no_device_reason(e, count);
    return info;
  }
  for (int d = 0; d < count; ++d) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, d) != cudaSuccess) {
      cudaGetLastError();
      continue;
    }
    CudaDeviceInfo di;
    di.name = p.name;
    di.major = p.major;
    di.minor = p.minor;
    di.multiprocessors = p.multiProcessorCount;
    di.memory_bytes = p.totalGlobalMem;
    int clock_khz = 0, bus_bits = 0;
    if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, d) == cudaSuccess &&
        cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, d) == cudaSuccess) {
      di.bandwidth_gb_per_s = 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;
    }
    cudaGetLastError();
    info.devices.push_back(di);
  }
  if (info.devices.empty()) info.reason = "no CUDA device could be queried";
  return info;
}

Backend* cuda_backend(int index, std::string* why) {
  static std::mutex mu;
  static std::vector<std::unique_ptr<CudaBackend>> backends;
  std::lock_guard<std::mutex> lk(mu);
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    cudaGetLastError();  // clear the sticky error of a failed driver query
    if (why != nullptr) *why = no_device_reason(e, count);
    return nullptr;
  }
  if (index < 0 || index >= count) {
    if (why != nullptr)
      *why = "device index " + std::to_string(index) + " but " + std::to_string(count) +
             " device(s) present";
    return nullptr;
  }
  if (backends.size() < static_cast<size_t>(count)) backends.resize(count);
  if (!backends[index]) backends[index] = std::make_unique<CudaBackend>(index);
  return backends[index].get();
}

}  // namespace gemma_native::ops
