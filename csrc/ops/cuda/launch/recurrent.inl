// Launchers: the recurrent block's ops (conv1d, block_diag_linear, rglru_scan).
// (Included by cuda/ops_launch.inl.)

void rglru_scan(const RgLruArgs& a) {
  if (!check::rglru_scan(a)) return;
  GN_CHECK(a.batch <= 65535, ErrorKind::kShape, "rglru_scan: batch > 65535 on CUDA");
  const unsigned threads = 128;
  const unsigned cblocks = grid_dim((a.channels + threads - 1) / threads, "rglru_scan");
  const int64_t chunks = (a.time + k::kScanChunk - 1) / k::kScanChunk;
  // Long chunks: split over time (summaries, carries, then the scan from each chunk's start).
  float* scratch = nullptr;
  if (chunks > 1 && chunks <= 65535) {
    scratch = device_scratch(static_cast<size_t>(3 * a.batch * chunks * a.channels));
  }
  if (scratch == nullptr) {  // decode, short chunks, or no scratch: one thread per channel
    GN_LAUNCH(k::rglru_scan_kernel, dim3(cblocks, 1, static_cast<unsigned>(a.batch)),
              dim3(threads), 0, stream())
    (a.x, a.gate_x, a.gate_a, a.a_param, a.pos, a.h, a.time, a.channels, a.time, nullptr, a.y);
    GN_AFTER_LAUNCH("rglru_scan");
    return;
  }
  float* summary = scratch;                                // [B, chunks, 2, L]
  float* h_start = scratch + 2 * a.batch * chunks * a.channels;  // [B, chunks, L]
  const dim3 grid(cblocks, static_cast<unsigned>(chunks), static_cast<unsigned>(a.batch));
  GN_LAUNCH(k::rglru_chunk_summary_kernel, grid, dim3(threads), 0, stream())
  (a.x, a.gate_x, a.gate_a, a.a_param, a.pos, a.time, a.channels, k::kScanChunk, summary);
  GN_AFTER_LAUNCH("rglru_scan summaries");
  GN_LAUNCH(k::rglru_chunk_carry_kernel, dim3(cblocks, 1, static_cast<unsigned>(a.batch)),
            dim3(threads), 0, stream())
  (summary, a.time, a.channels, k::kScanChunk, a.h, h_start);
  GN_AFTER_LAUNCH("rglru_scan carries");
  GN_LAUNCH(k::rglru_scan_kernel, grid, dim3(threads), 0, stream())
  (a.x, a.gate_x, a.gate_a, a.a_param, a.pos, a.h, a.time, a.channels, k::kScanChunk, h_start,
   a.y);
  GN_AFTER_LAUNCH("rglru_scan");
}

void conv1d(const Conv1dArgs& a) {
  if (!check::conv1d(a)) return;
  GN_CHECK(a.batch <= 65535, ErrorKind::kShape, "conv1d: batch > 65535 on CUDA");
  const unsigned threads = 128;
  const int64_t cblocks = (a.channels + threads - 1) / threads;
  GN_LAUNCH(k::conv1d_kernel,
            dim3(grid_dim(cblocks * a.time, "conv1d"), static_cast<unsigned>(a.batch)),
            dim3(threads), 0, stream())
  (a.x, a.pos, a.w, a.bias, a.state, a.time, a.channels, a.width, cblocks, a.y);
  GN_AFTER_LAUNCH("conv1d");
  if (a.state != nullptr && a.width > 1) {
    GN_LAUNCH(k::conv1d_state_kernel,
              dim3(grid_dim(cblocks, "conv1d"), static_cast<unsigned>(a.batch)), dim3(threads),
              0, stream())
    (a.x, a.time, a.channels, a.width - 1, a.state);
    GN_AFTER_LAUNCH("conv1d state");
  }
}

void block_diag_linear(const BlockDiagLinearArgs& a) {
  if (!check::block_diag_linear(a)) return;
  GN_CHECK(a.block_size <= k::kBdlMaxBs, ErrorKind::kShape,
           "block_diag_linear: blocks larger than " + std::to_string(k::kBdlMaxBs) +
               " are not supported on CUDA");
  GN_CHECK(!is_quantized(a.w_dtype), ErrorKind::kDType,
           "block_diag_linear: quantized weights have no CUDA kernel");
  const int64_t groups = (a.n + k::kBdlRows - 1) / k::kBdlRows;
  GN_CHECK(groups <= 65535, ErrorKind::kShape, "block_diag_linear: too many rows for CUDA");
  GN_LAUNCH(k::block_diag_linear_kernel,
            dim3(grid_dim(a.blocks, "block_diag_linear"), static_cast<unsigned>(groups)),
            dim3(row_threads(a.block_size)), 0, stream())
  (a.x, a.n, a.blocks, a.block_size, a.w, a.w_dtype, a.b, a.y);
  GN_AFTER_LAUNCH("block_diag_linear");
}
