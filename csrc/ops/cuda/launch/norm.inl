// Launchers: RMSNorm.  (Included by cuda/ops_launch.inl.)

void rmsnorm(const RmsNormArgs& a) {
  if (!check::rmsnorm(a)) return;
  GN_LAUNCH(k::rmsnorm_kernel, dim3(grid_dim(a.n, "rmsnorm")), dim3(row_threads(a.d)), 0, stream())
  (a.x, a.w, a.d, a.eps, a.offset, a.out);
  GN_AFTER_LAUNCH("rmsnorm");
}
