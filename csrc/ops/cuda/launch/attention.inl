// Launchers: attention (split kernel, combine for decode splits, ring write).
// (Included by cuda/ops_launch.inl; the front provides device_scratch(floats), which may
// return null -- e.g. while a GPU graph is being captured and the buffer is too small -- and
// then one split is used.)

void attention(const AttentionArgs& a) {
  if (!check::attention(a)) return;
  GN_CHECK(a.head_dim <= k::kAttnMaxHd, ErrorKind::kShape,
           "attention: head_dim > " + std::to_string(k::kAttnMaxHd) + " has no CUDA kernel");
  const int64_t group = a.heads / a.kv_heads;
  GN_CHECK(group <= k::kAttnMaxGroup, ErrorKind::kShape,
           "attention: more than " + std::to_string(k::kAttnMaxGroup) +
               " query heads per kv head have no CUDA kernel");
  GN_CHECK(a.batch * a.time <= (int64_t{1} << 24) && a.window <= (int64_t{1} << 30),
           ErrorKind::kShape, "attention: shape too large for one CUDA launch");
  k::AttnShape s;
  s.T = a.time;
  s.H = a.heads;
  s.KV = a.kv_heads;
  s.hd = a.head_dim;
  s.S = a.k_cache != nullptr ? a.slots : 0;
  s.window = a.window;
  s.scale = a.scale;
  s.softcap = a.softcap;
  // Decode (few queries against a long ring): split the keys over blocks.  The number of
  // splits depends only on shapes (not on count), so a captured graph stays right as the
  // cache fills.
  s.splits = 1;
  if (a.k_cache != nullptr && a.time <= 4) {
    const int64_t most = std::min<int64_t>(a.window + 1, a.slots + a.time);
    s.splits = static_cast<int>(std::min<int64_t>(16, std::max<int64_t>(1, (most + 255) / 256)));
  }
  float* partial = nullptr;
  if (s.splits > 1) {
    partial = device_scratch(static_cast<size_t>(a.batch * a.time * a.heads * s.splits *
                                                    (a.head_dim + 2)));
    if (partial == nullptr) s.splits = 1;
  }
  const int64_t rows = a.batch * a.time * a.kv_heads;
  GN_LAUNCH(k::attention_split_kernel,
            dim3(grid_dim(rows, "attention"), static_cast<unsigned>(s.splits)),
            dim3(static_cast<unsigned>(32 * group)), 0, stream())
  (a.q, a.k, a.v, a.pos, a.k_cache, a.v_cache, a.count, s, a.out, partial);
  GN_AFTER_LAUNCH("attention");
  if (s.splits > 1) {
    GN_LAUNCH(k::attention_combine_kernel,
              dim3(grid_dim(a.batch * a.time * a.heads, "attention")),
              dim3(row_threads(a.head_dim)), 0, stream())
    (partial, s, a.out);
    GN_AFTER_LAUNCH("attention combine");
  }
  if (a.k_cache != nullptr) {
    GN_LAUNCH(k::attention_ring_write_kernel, dim3(grid_dim(a.batch * a.time, "attention")),
              dim3(256), 0, stream())
    (a.k, a.v, a.count, s, a.k_cache, a.v_cache);
    GN_AFTER_LAUNCH("attention ring write");
  }
}
