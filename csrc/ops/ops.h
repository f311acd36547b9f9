// gemma_native::ops — the model-agnostic compute ops.  Raw pointers, shapes and a small args
// struct per op; activations are fp32, weights may be fp32/bf16/fp16 (DType).  Each op checks
// its arguments (throwing gemma_native::Error) and then runs the kernel of the CPU ISA chosen
// at run time (see cpu/dispatch.h).  Every op has a numpy twin of the same name in
// python/gemma_native/reference.py; tests compare the two.
#pragma once

#include <cstdint>

#include "gemma_native/common.h"
#include "gemma_native/dtype.h"

namespace gemma_native::ops {

// A weight matrix [rows, cols] stored row-major in `dtype` (rows = output features).
struct WeightMatrix {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  // Quantized dtypes only: multiply with fp32 activations (W widened: what the dequantized fp32
  // model computes) instead of activations quantized to 8 bits per block for exact integer dot
  // products (llama.cpp's way, and the default).
  bool float_activations = false;
  // Float dtypes only: the bf16 compute mode (activations="bfloat16").  From kBf16MinRows rows of
  // x on, x and W are rounded to bf16 and multiplied on the CPU's bf16 matrix unit (AMX) with
  // fp32 sums, where bf16_gemm_kernel() names one; otherwise (and below that many rows) linear
  // runs exactly as without the flag.  Not bit-identical across machines, unlike the default.
  bool bf16_activations = false;
};
constexpr int64_t kBf16MinRows = 16;
// From this many rows of x on, Q8_0R16 weights may go to a tile unit (cpu/dispatch.h
// int8_gemm), with the same results.
constexpr int64_t kInt8TileMinRows = 16;

// out[n, :] = table[ids[n], :] * scale.   table [V, D]; out [N, D] fp32.
struct EmbeddingArgs {
  WeightMatrix table;
  const int32_t* ids = nullptr;
  int64_t n = 0;
  float scale = 1.0f;
  float* out = nullptr;
  // Device backends: a host copy of ids for the argument check (null: ids is host memory).
  // The CUDA kernel itself writes zeros for an id outside the table rather than read past it.
  const int32_t* host_ids = nullptr;
};
void embedding(const EmbeddingArgs& a);

// out = x * rsqrt(mean(x^2) + eps) * (offset + w).   x, out [N, D] (may alias); w [D] fp32.
// offset is 1 for Hugging Face / official checkpoints (zero-centred scale), 0 for GGUF.
struct RmsNormArgs {
  const float* x = nullptr;
  const float* w = nullptr;
  int64_t n = 0;
  int64_t d = 0;
  float eps = 1e-6f;
  float offset = 1.0f;
  float* out = nullptr;
};
void rmsnorm(const RmsNormArgs& a);

// y[n, m] = sum_k x[n, k] * W[m, k] + bias[m] (+ y[n, m] if accumulate).
// x [N, K] fp32; W [M, K]; bias [M] fp32 or null; y [N, M] fp32 (must not alias x).
struct LinearArgs {
  const float* x = nullptr;
  int64_t n = 0;
  WeightMatrix w;
  const float* bias = nullptr;
  bool accumulate = false;
  float* y = nullptr;
};
void linear(const LinearArgs& a);

// The 8-bit activations the quantized linear computes from one row x[k] (CPU, active ISA): for
// block == 32 quant.h's ActBlock32 (q8_0) blocks, for block == 256 its ActBlock256 (q8_K)
// blocks, k / block of them at out.  Exposed so tests can hold every ISA to quant.h's definition.
void quantize_activations(const float* x, int64_t k, int block, void* out);

// Block-diagonal linear with input-major blocks (RG-LRU gates):
// y[n, h*bs + j] = sum_i x[n, h*bs + i] * w[h, i, j] + b[h, j].
// x, y [N, H*bs] fp32 (must not alias); w [H, bs, bs] in `w_dtype` (a float dtype); b [H, bs]
// fp32 or null.
struct BlockDiagLinearArgs {
  const float* x = nullptr;
  int64_t n = 0;
  int64_t blocks = 0;
  int64_t block_size = 0;
  const void* w = nullptr;
  DType w_dtype = DType::kF32;
  const float* b = nullptr;
  float* y = nullptr;
  // The bf16 compute mode, as WeightMatrix::bf16_activations: from kBf16MinRows
  // rows of x on, with a block size that is a multiple of 32, x and w are rounded to bf16 and
  // multiplied on the bf16 unit in use (AMX tiles or AVX512-BF16); exact where none is.
  bool bf16_activations = false;
};
void block_diag_linear(const BlockDiagLinearArgs& a);

// Causal depthwise Conv1D over time, taps w[K, L] (w[K-1] multiplies the current input):
// y[b,t,c] = bias[c] + sum_{s<K} w[K-1-s, c] * u(t-s)[c] * mask(t, s)
// where u(t-s) is x[b, t-s] for t-s >= 0 and the carried state (the last K-1 raw inputs of the
// previous call, oldest first) before that, zero when state is null.  mask(t, s) drops an input
// when a position in (t-s, t] of this call starts a document (pos == 0).  After the call the
// state (if given) holds the last K-1 raw inputs.  x, y [B, T, L] (may not alias); pos [B, T];
// state [B, K-1, L] fp32 or null.
struct Conv1dArgs {
  const float* x = nullptr;
  const int32_t* pos = nullptr;
  const float* w = nullptr;
  const float* bias = nullptr;
  float* state = nullptr;
  int64_t batch = 0, time = 0, channels = 0, width = 4;
  float* y = nullptr;
};
void conv1d(const Conv1dArgs& a);

// RG-LRU scan (Griffin).  For each (b, c) over t, with reset = (pos[b,t] == 0):
//   gx = sigmoid(gate_x[b,t,c]); ga = sigmoid(gate_a[b,t,c])
//   log_a = -8 * ga * softplus(a_param[c]); a = exp(log_a); a2 = exp(2 * log_a)
//   xn = x * gx * (reset ? 1 : sqrt(1 - a2));  h = (reset ? 0 : a) * h + xn;  y = h
// x, gate_x, gate_a, y [B, T, L] fp32 (y may alias x); a_param [L] fp32; h [B, L] fp32 in/out.
struct RgLruArgs {
  const float* x = nullptr;
  const float* gate_x = nullptr;
  const float* gate_a = nullptr;
  const float* a_param = nullptr;
  const int32_t* pos = nullptr;
  float* h = nullptr;
  int64_t batch = 0, time = 0, channels = 0;
  float* y = nullptr;
};
void rglru_scan(const RgLruArgs& a);

// Rotary embedding, half-split (NeoX) layout over the first `rot_dims` dims of each head, in
// place.  x [N, heads, head_dim]; pos [N].  For d < rot_dims/2:
//   theta = pos * base^(-2d/rot_dims);  (x[d], x[d+r/2]) <- (x[d] cos - x[d+r/2] sin,
//                                                           x[d+r/2] cos + x[d] sin)
struct RopeArgs {
  float* x = nullptr;
  const int32_t* pos = nullptr;
  int64_t n = 0, heads = 0, head_dim = 0, rot_dims = 0;
  float base = 10000.0f;
  float linear_factor = 1.0f;  // linear RoPE scaling: inv_freq / factor (Gemma 3 4B+ globals)
};
void rope(const RopeArgs& a);

// Causal (local) multi-query / grouped-query attention over a chunk of T new tokens per
// sequence, optionally continuing from a ring-buffer cache of S slots.
//   Query t of sequence b has absolute index n = count[b] + t.  It sees key index p iff
//   p <= n, n - p <= window, and no token of this chunk in (p, n] has pos == 0 (a document
//   start).  Keys with p < count[b] come from cache slot p % S (so S >= window is needed for
//   exactness; the op checks it).  Query head h uses kv head h / (heads / kv_heads).
//   scores = (q . k) * scale, optionally cap * tanh(scores / cap), softmax in fp32.
// After computing, the chunk's keys/values are written into the ring (slot p % S) when a
// cache is given; the caller advances count.
// q, out [B, T, heads, hd]; k, v [B, T, kv_heads, hd]; pos [B, T];
// k_cache, v_cache [B, S, kv_heads, hd] or null (then count must be null: a fresh prefill).
struct AttentionArgs {
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  const int32_t* pos = nullptr;
  float* k_cache = nullptr;
  float* v_cache = nullptr;
  const int64_t* count = nullptr;
  // Device backends: a host copy of count for the argument check (null: count is host memory).
  const int64_t* host_count = nullptr;
  int64_t batch = 0, time = 0, heads = 0, kv_heads = 0, head_dim = 0, slots = 0;
  int64_t window = 0;
  float scale = 1.0f;
  float softcap = 0.0f;
  float* out = nullptr;
};
void attention(const AttentionArgs& a);

// out[i] = gelu_tanh(gate[i]) * up[i] (tanh GeLU).  Any of the pointers may alias.
struct GegluArgs {
  const float* gate = nullptr;
  const float* up = nullptr;
  int64_t n = 0;
  float* out = nullptr;
  // ggml's GELU (llama.cpp's CPU backend looks it up in a float16 table): for -10 < gate < 10,
  // gelu of the gate rounded to float16, rounded to float16; gate <= -10 gives 0, gate >= 10
  // the gate itself.
  bool f16_table = false;
};
void geglu(const GegluArgs& a);

// x[i] = cap * tanh(x[i] / cap), in place (the logit soft-cap).  cap > 0.
struct SoftcapArgs {
  float* x = nullptr;
  int64_t n = 0;
  float cap = 0.0f;
};
void softcap(const SoftcapArgs& a);

// x[i] += y[i] (residual connections).  x [n] fp32 in/out; y [n] fp32 (may alias x).
struct AddArgs {
  float* x = nullptr;
  const float* y = nullptr;
  int64_t n = 0;
};
void add(const AddArgs& a);

// Sampling from logits [B, V] (one row per sequence), per-row parameters.
//   temperature <= 0 -> greedy (argmax, lowest index on ties).  Otherwise the logits are divided
//   by temperature; top_k > 0 keeps the k largest; top_p < 1 keeps the smallest set of largest
//   probabilities whose sum reaches top_p; then one draw with a uniform u from (seed, counter).
struct SamplingRow {
  float temperature = 0.0f;
  int32_t top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 0;
  uint64_t counter = 0;
};
void sample(const float* logits, int64_t batch, int64_t vocab, const SamplingRow* rows,
            int32_t* out_ids);

// The uniform in [0, 1) that sample() draws for (seed, counter): splitmix64 of a mix of both,
// top 24 bits.  Exposed so the numpy twin and tests can reproduce draws.
float sample_uniform(uint64_t seed, uint64_t counter);

}  // namespace gemma_native::ops
