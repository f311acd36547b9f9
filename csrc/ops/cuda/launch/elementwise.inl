// Launchers: embedding, rope, geglu, softcap, add.  (Included by cuda/ops_launch.inl.)

namespace {
// Enough blocks of 256 to fill a large GPU, but no more than the elements need.
inline unsigned elementwise_blocks(int64_t n) {
  const int64_t b = (n + 255) / 256;
  return static_cast<unsigned>(b < 4096 ? b : 4096);
}
}  // namespace

void embedding(const EmbeddingArgs& a) {
  if (!check::embedding(a)) return;
  GN_CHECK(!is_quantized(a.table.dtype) || a.table.dtype == DType::kQ8_0, ErrorKind::kDType,
           std::string("embedding: ") + dtype_name(a.table.dtype) +
               " tables have no CUDA kernel yet");
  GN_CHECK(!is_packed_float(a.table.dtype), ErrorKind::kDType,
           "embedding: BF16R32 (the CPU's packed bf16 layout) has no CUDA kernel; use bfloat16");
  GN_LAUNCH(k::embedding_kernel, dim3(grid_dim(a.n, "embedding")), dim3(row_threads(a.table.cols)),
            0, stream())
  (a.table.data, a.table.dtype, a.table.rows, a.table.cols, a.ids, a.scale, a.out);
  GN_AFTER_LAUNCH("embedding");
}

void rope(const RopeArgs& a) {
  if (!check::rope(a)) return;
  GN_LAUNCH(k::rope_kernel, dim3(grid_dim(a.n, "rope")), dim3(row_threads(a.rot_dims / 2, 128)),
            0, stream())
  (a.x, a.pos, a.heads, a.head_dim, a.rot_dims, a.base, a.linear_factor);
  GN_AFTER_LAUNCH("rope");
}

void geglu(const GegluArgs& a) {
  GN_CHECK(!a.f16_table, ErrorKind::kDevice,
           "geglu: the float16-table GELU (llama.cpp arithmetic) has no CUDA kernel yet");
  if (!check::geglu(a)) return;
  GN_LAUNCH(k::geglu_kernel, dim3(elementwise_blocks(a.n)), dim3(256), 0, stream())
  (a.gate, a.up, a.n, a.out);
  GN_AFTER_LAUNCH("geglu");
}

void softcap(const SoftcapArgs& a) {
  if (!check::softcap(a)) return;
  GN_LAUNCH(k::softcap_kernel, dim3(elementwise_blocks(a.n)), dim3(256), 0, stream())
  (a.x, a.n, a.cap);
  GN_AFTER_LAUNCH("softcap");
}

void add(const AddArgs& a) {
  if (!check::add(a)) return;
  GN_LAUNCH(k::add_kernel, dim3(elementwise_blocks(a.n)), dim3(256), 0, stream())
  (a.x, a.y, a.n);
  GN_AFTER_LAUNCH("add");
}
