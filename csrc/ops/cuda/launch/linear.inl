// Launchers: linear (GEMV for up to 8 rows of x, tiled GEMM beyond).
// (Included by cuda/ops_launch.inl.)

namespace {
template <int NR>
void launch_gemv(const LinearArgs& a, bool vec16) {
  auto* kernel = &k::linear_gemv_kernel<NR>;
  const int64_t blocks = (a.w.rows + k::kGemvRowsPerBlock - 1) / k::kGemvRowsPerBlock;
  GN_LAUNCH(kernel, dim3(grid_dim(blocks, "linear")), dim3(32 * k::kGemvRowsPerBlock), 0,
            stream())
  (a.x, a.w.cols, a.w.data, a.w.dtype, a.w.rows, a.bias, a.accumulate, vec16, a.y);
  GN_AFTER_LAUNCH("linear");
}
}  // namespace

void linear(const LinearArgs& a) {
  if (!check::linear(a)) return;
  // Q8_0 weights: widened per element (the dequantized model's math, what the CPU computes
  // with float activations); the 8-bit-activation arithmetic has no CUDA kernel.
  GN_CHECK(!is_quantized(a.w.dtype) || (a.w.dtype == DType::kQ8_0 && a.w.float_activations),
           ErrorKind::kDType,
           std::string("linear: ") + dtype_name(a.w.dtype) +
               (a.w.dtype == DType::kQ8_0
                    ? " weights with 8-bit activations have no CUDA kernel yet (use float "
                      "activations)"
                    : " weights have no CUDA kernel yet (use float32/bfloat16/float16 or Q8_0 "
                      "weights)"));
  GN_CHECK(!is_packed_float(a.w.dtype), ErrorKind::kDType,
           "linear: BF16R32 (the CPU's packed bf16 layout) has no CUDA kernel; use bfloat16");
  const int64_t K = a.w.cols;
  if (a.n <= k::kGemvMaxRows) {
    const bool two_byte = a.w.dtype == DType::kBF16 || a.w.dtype == DType::kF16;
    const bool vec16 = two_byte && K % 8 == 0 &&
                       reinterpret_cast<uintptr_t>(a.w.data) % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(a.x) % 16 == 0;
    switch (a.n) {
      case 1: launch_gemv<1>(a, vec16); break;
      case 2: launch_gemv<2>(a, vec16); break;
      case 3: launch_gemv<3>(a, vec16); break;
      case 4: launch_gemv<4>(a, vec16); break;
      case 5: launch_gemv<5>(a, vec16); break;
      case 6: launch_gemv<6>(a, vec16); break;
      case 7: launch_gemv<7>(a, vec16); break;
      default: launch_gemv<8>(a, vec16); break;
    }
    return;
  }
  const int64_t gm = (a.w.rows + k::kGemmTile - 1) / k::kGemmTile;
  const int64_t gn = (a.n + k::kGemmTile - 1) / k::kGemmTile;
  GN_CHECK(gn <= 65535, ErrorKind::kShape, "linear: too many rows of x for one CUDA launch");
  GN_LAUNCH(k::linear_gemm_kernel,
            dim3(grid_dim(gm, "linear"), static_cast<unsigned>(gn)), dim3(256), 0, stream())
  (a.x, a.n, K, a.w.data, a.w.dtype, a.w.rows, a.bias, a.accumulate, a.y);
  GN_AFTER_LAUNCH("linear");
}
