// The bf16 compute mode's GEMM on CPUs with AVX512-BF16 but no AMX (AMD Zen 4 / Zen 5, Intel
// Cooper Lake): y[n, m] = sum_k bf16(x[n, k]) * bf16(W[m, k]) + bias[m], products exact, sums
// in fp32, with VDPBF16PS (16 lanes, each adding the two products of one bf16 pair).
//
// Compiled twice from this one file:
//   GN_ISA=avx512bf16     with -mavx512bf16: the real instruction;
//   GN_ISA=avx512bf16emu  over SIMDe (GN_SIMDE_AVX512, no ISA flags): the same code on any
//                         CPU, so that the packing, tiling and edge logic is tested everywhere.
// The instruction adds the odd product, then the even one, to the fp32 lane, rounding each sum
// to nearest even and flushing denormals; SIMDe adds them in the other order without flushing.
// The two agree to fp32 rounding, not bit for bit (as the AMX path and its emulation).
//
// Layout: x is rounded to bf16 once per call and stored as 32-bit words, one per pair of k
// (x[n][2i] | x[n][2i+1] << 16, zero past k), in blocks of 12 rows interleaved pair by pair,
// xq[block][i][12], so that the micro-kernel's 12 broadcasts per step read one sequential
// 48-byte stream instead of 12 rows' worth of lines.  Each task packs its mb rows of W the
// same way in groups of 16 rows, [group][i][16 words], so that one zmm load gives pair i of 16
// output rows (a bf16 W: 16 x 16 word transposes in registers, bf16_pack.h).  The micro-kernel
// holds 12 rows of x x 32 rows of W in 24 accumulators: per pair i, 2 W loads and 12
// broadcasts of x feed 24 VDPBF16PS (768 multiply-adds), over the whole of k.
// Napkin math: a VDPBF16PS is 32 multiply-adds, twice an fp32 FMA's 16, at the same rate on
// Zen 4 (one zmm per cycle: 230 GFLOP/s on one core of the development EPYC, against 115 for
// zmm FMAs) and on Intel cores (two), so bf16 mode can run prefill at up to twice the exact
// mode's speed, before counting the halved weight and activation traffic.  On that Zen 4 core
// the interleaved x took a standalone copy of the loop from 84% to 90% of that peak, and the
// transposes cut packing a 7680 x 2560 W from ~8.8 to ~2.2 ms (a tenth of the products' time
// at 512 rows of x).
#include <cstring>

#include "ops/cpu/bf16_pack.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/simd.h"

namespace gemma_native::ops::cpu::GN_ISA {
namespace {

constexpr int kRows = 12;           // rows of x per micro-tile
constexpr int64_t kGroup = 16;      // rows of W per zmm
constexpr int64_t kMaxMb = 256;     // rows of W per task at most
constexpr int64_t kPackBytes = 512 * 1024;  // packed W per task at most (from 32 rows up)
constexpr int64_t kPackAhead = 8;  // cache lines of each W row fetched ahead of the transposes

static inline __m512bh as_bh(__m512i v) {
  __m512bh r;
  std::memcpy(&r, &v, sizeof r);
  return r;
}

// W rows [m0, m0 + mb) (zero past the matrix) as dst[(g * k2 + i) * 16 + r] = the pair i of
// row m0 + 16 g + r.
template <DType DT>
static void pack_w(const LinearArgs& a, int64_t m0, int64_t mb, int64_t k2, uint32_t* dst) {
  const int64_t k = a.w.cols, rows = a.w.rows;
  const size_t row_bytes = static_cast<size_t>(k) * dtype_size(DT);
  const char* base = static_cast<const char*>(a.w.data);
  for (int64_t g = 0; g < mb / kGroup; ++g) {
    uint32_t* out = dst + g * k2 * kGroup;
    int64_t done = 0;  // pairs packed by the transposes
    if (DT == DType::kBF16 && m0 + (g + 1) * kGroup <= rows) {
      const uint16_t* src[kGroup];
      for (int64_t r = 0; r < kGroup; ++r) {
        const int64_t m = m0 + g * kGroup + r;
        src[r] = reinterpret_cast<const uint16_t*>(base + static_cast<size_t>(m) * row_bytes);
      }
      for (; done + 16 <= k / 2; done += 16) {
        if (done + 16 * (kPackAhead + 1) <= k / 2) {
          for (int64_t r = 0; r < kGroup; ++r) prefetch_l2(src[r] + 2 * done + 32 * kPackAhead);
        }
        transpose16_pairs(src, 2 * done, reinterpret_cast<uint16_t*>(out + done * kGroup));
      }
    }
    for (int64_t r = 0; r < kGroup; ++r) {
      const int64_t m = m0 + g * kGroup + r;
      if (m >= rows) {
        for (int64_t i = done; i < k2; ++i) out[i * kGroup + r] = 0;
        continue;
      }
      const void* w = base + static_cast<size_t>(m) * row_bytes;
      if constexpr (DT == DType::kBF16) {
        const uint16_t* h = static_cast<const uint16_t*>(w);
        for (int64_t i = done; i < k / 2; ++i) {
          uint32_t word;
          std::memcpy(&word, h + 2 * i, 4);
          out[i * kGroup + r] = word;
        }
      } else {
        for (int64_t i = done; i < k / 2; ++i) {
          out[i * kGroup + r] = static_cast<uint32_t>(weight_bf16<DT>(w, 2 * i)) |
                                static_cast<uint32_t>(weight_bf16<DT>(w, 2 * i + 1)) << 16;
        }
      }
      if (k % 2) out[(k2 - 1) * kGroup + r] = weight_bf16<DT>(w, k - 1);
    }
  }
}

// Where a micro-tile's sums go: y rows ldy floats apart, the first cols (<= 32) columns, plus
// bias[j] (none if null), added to what y holds when accumulate.
struct TileOut {
  float* y;
  int64_t ldy;
  int64_t cols;
  const float* bias;
  bool accumulate;
};

// Row y's 16 sums c plus bias (zero if null), added to what y holds when accumulate: the
// scalar tail's arithmetic 16 columns at a time.  (No masked loads and stores: SIMDe's write
// and read the whole 64 bytes.)
static inline void store16(__m512 c, float* y, const float* bias, bool accumulate) {
  c = _mm512_add_ps(c, bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps());
  if (accumulate) c = _mm512_add_ps(_mm512_loadu_ps(y), c);
  _mm512_storeu_ps(y, c);
}

// y[r][0..32) (to o.cols) = sum over pairs of x row r . W groups w0, w1 (pair i's 16 words at
// + i * WS), for R rows of x (R <= kRows) interleaved as xq[i][kRows].
template <int R, int WS>
static void tile(const uint32_t* xq, int64_t k2, const uint32_t* w0, const uint32_t* w1,
                 const TileOut& o) {
  __m512 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t i = 0; i < k2; ++i) {
    const __m512bh b0 = as_bh(_mm512_loadu_si512(w0 + i * WS));
    const __m512bh b1 = as_bh(_mm512_loadu_si512(w1 + i * WS));
    for (int r = 0; r < R; ++r) {
      const __m512bh x = as_bh(_mm512_set1_epi32(static_cast<int>(xq[i * kRows + r])));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x, b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x, b1);
    }
  }
  if (o.cols == 32) {
    for (int r = 0; r < R; ++r) {
      float* y = o.y + r * o.ldy;
      store16(acc[r][0], y, o.bias, o.accumulate);
      store16(acc[r][1], y + 16, o.bias ? o.bias + 16 : nullptr, o.accumulate);
    }
    return;
  }
  alignas(64) float c[32];  // a partial tile (the last columns of W)
  for (int r = 0; r < R; ++r) {
    _mm512_store_ps(c, acc[r][0]);
    _mm512_store_ps(c + 16, acc[r][1]);
    float* y = o.y + r * o.ldy;
    for (int64_t j = 0; j < o.cols; ++j) {
      const float v = c[j] + (o.bias ? o.bias[j] : 0.0f);
      y[j] = o.accumulate ? y[j] + v : v;
    }
  }
}

using TileFn = void (*)(const uint32_t*, int64_t, const uint32_t*, const uint32_t*,
                        const TileOut&);

// The tiles by height, for W words WS apart: kGroup for the per-call packed W, kR32Rows for
// BF16R32 weights read in place (a 32-row panel's pairs hold both groups, w1 = w0 + 16).
template <int WS>
constexpr TileFn kTiles[kRows + 1] = {
    nullptr,       &tile<1, WS>,  &tile<2, WS>, &tile<3, WS>, &tile<4, WS>,
    &tile<5, WS>,  &tile<6, WS>,  &tile<7, WS>, &tile<8, WS>, &tile<9, WS>,
    &tile<10, WS>, &tile<11, WS>, &tile<12, WS>};

// f32_to_bf16 of 16 floats, each result in the high half of its 32-bit lane (nearest even;
// a NaN stays a quiet NaN), bit for bit the scalar definition.
static inline __m512i bf16_hi(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i abs = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
  const __mmask16 nan = _mm512_cmpgt_epi32_mask(abs, _mm512_set1_epi32(0x7f800000));
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd));
  return _mm512_mask_or_epi32(rounded, nan, u, _mm512_set1_epi32(0x00400000));
}

// The 16-bit elements of a two-register permute (a, b) that gather 32 values' bf16 halves
// (value v's in element 2v + 1) into 16 words of pairs: in k order, element j = 2j + 1; in
// BF16R32's pairs (dtype.h: word w of a 32-value block holds values 16 (w / 8) + w % 8 and
// that + 8), element 2w takes the first value of word w's pair, 2w + 1 the second.
struct PairHalves {
  alignas(64) int16_t v[32];
  constexpr explicit PairHalves(bool r32) : v() {
    for (int j = 0; j < 32; ++j) {
      const int w = j / 2, first = 16 * (w / 8) + w % 8;
      v[j] = static_cast<int16_t>(2 * (r32 ? first + 8 * (j % 2) : j) + 1);
    }
  }
};
alignas(64) static constexpr PairHalves kOddHalves{false};
alignas(64) static constexpr PairHalves kR32Halves{true};

// Words of the packed x: blocks of kRows rows (the last one zero-padded) x (k + 1) / 2 pairs.
static int64_t x_words(int64_t n_rows, int64_t k) {
  return (n_rows + kRows - 1) / kRows * ((k + 1) / 2) * kRows;
}

// x [n_rows, k] to bf16 pairs (nearest even), interleaved per block of kRows rows:
// xq[(b * k2 + i) * kRows + r] = x[b kRows + r][2i] | x[b kRows + r][2i + 1] << 16 (zero for
// rows past n_rows).  32 values of each of the block's rows become one register of 16 pairs,
// a 16 x 16 transpose turns the block's registers into one register per pair, and each of
// those stores its first kRows words; the last pairs of a row (k % 32 values) go one by one.
// R32 (BF16R32 weights; k % 16 == 0): pair i = l * (k / 16) + p holds x[16p + l] and
// x[16p + l + 8] (l < 8), in the order of the weights' words.
template <bool R32>
static void pack_x(const float* x, int64_t n_rows, int64_t k, uint32_t* xq) {
  static_assert(kRows <= 16, "one register per pair holds 16 rows");
  const int64_t k2 = (k + 1) / 2, blocks = (n_rows + kRows - 1) / kRows;
  const int64_t kv = k / 32 * 16;  // pairs converted 16 at a time
  const int64_t lane_pairs = k / kR32ColStep;
  // Where pair register w (of the 16 made from values [2i, 2i + 32)) goes, in pairs.
  auto pair_at = [&](int64_t i, int w) -> int64_t {
    if (!R32) return i + w;
    return (w % 8) * lane_pairs + i / 8 + w / 8;
  };
  par_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    const __m512i odd_halves = _mm512_load_si512(R32 ? kR32Halves.v : kOddHalves.v);
    for (int64_t b = b0; b < b1; ++b) {
      uint32_t* dst = xq + b * k2 * kRows;
      const int64_t n0 = b * kRows;
      const int rows = static_cast<int>(min64(kRows, n_rows - n0));
      for (int64_t i = 0; i < kv; i += 16) {
        __m512i r[16];
        for (int n = 0; n < 16; ++n) {
          if (n >= rows) {
            r[n] = _mm512_setzero_si512();
            continue;
          }
          // The high 16-bit halves of both registers' lanes, in order, are 16 pairs.
          const float* src = x + (n0 + n) * k + 2 * i;
          const __m512i lo = bf16_hi(_mm512_loadu_ps(src));
          const __m512i hi = bf16_hi(_mm512_loadu_ps(src + 16));
          r[n] = _mm512_permutex2var_epi16(lo, odd_halves, hi);
        }
        transpose16_words(r);
        // Each 16-word store runs 16 - kRows words into the next pair, which a later store
        // rewrites, except after a lane's last pair (R32) or the block's (what follows may be
        // the next block's, which another thread packs): those store exactly kRows words.
        for (int w = 0; w < 16; ++w) {
          const int64_t at = pair_at(i, w);
          const bool last = R32 ? (at + 1) % lane_pairs == 0 : w == 15;
          if (!last) {
            _mm512_storeu_si512(dst + at * kRows, r[w]);
            continue;
          }
          alignas(64) uint32_t words[16];
          _mm512_store_si512(words, r[w]);
          std::memcpy(dst + at * kRows, words, kRows * sizeof(uint32_t));
        }
      }
      for (int r = 0; r < kRows; ++r) {
        for (int64_t i = kv; i < k2; ++i) {  // pair i of k's order (the k % 32 values left)
          int64_t j0 = 2 * i, j1 = 2 * i + 1, at = i;
          if (R32) {  // i % 8 = l: values 16p + l and + 8, with p = i / 8 (as in words)
            j0 = 16 * (i / 8) + i % 8, j1 = j0 + 8;
            at = (i % 8) * lane_pairs + i / 8;
          }
          uint32_t word = 0;
          if (r < rows) {
            const float* src = x + (n0 + r) * k;
            word = f32_to_bf16(src[j0]);
            if (j1 < k) word |= static_cast<uint32_t>(f32_to_bf16(src[j1])) << 16;
          }
          dst[at * kRows + r] = word;
        }
      }
    }
  });
}

// Rows of W per task: a multiple of 32 up to `cap`, chosen so that the tasks split evenly over
// the threads.  parallel_for hands the tasks out in chunks, one at a time, so the last thread
// to finish runs ceil(chunks / threads) of them; 2560 rows in tasks of 96 on two threads ran 15
// of the 27 tasks on one thread (11% lost), tasks of 64 split 20 / 20.
static int64_t rows_per_task(int64_t m_rows, int64_t cap) {
  const int64_t threads = num_threads();
  if (threads <= 1) return cap;
  int64_t best = cap;
  double best_eff = 0.0;
  for (int64_t mb = cap; mb >= min64(cap, 64); mb -= 32) {
    const int64_t tasks = (m_rows + mb - 1) / mb;
    const int64_t chunk = parallel_for_chunk(tasks, 1);
    const int64_t rounds = ((tasks + chunk - 1) / chunk + threads - 1) / threads;
    const double eff =
        static_cast<double>(m_rows) / static_cast<double>(threads * rounds * chunk * mb);
    if (eff > best_eff * 1.02) best = mb, best_eff = eff;  // a larger mb unless clearly worse
  }
  return best;
}

// BF16R32 weights: the tiles read each 32-row panel where it is, pairs in the weights' order.
static void run_r32(const LinearArgs& a) {
  const int64_t n_rows = a.n, m_rows = a.w.rows, k = a.w.cols, k2 = k / 2;
  Buf<uint32_t> xq(x_words(n_rows, k));
  pack_x<true>(a.x, n_rows, k, xq.data());
  const int64_t cap = max64(32, min64(kMaxMb, kPackBytes / (k2 * 4) / 32 * 32));
  const int64_t mb = rows_per_task(m_rows, cap);
  const int64_t tasks = (m_rows + mb - 1) / mb;
  const uint32_t* w = static_cast<const uint32_t*>(a.w.data);
  par_for(tasks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t m0 = t * mb, m_task = min64(mb, m_rows - m0);
      for (int64_t n0 = 0; n0 < n_rows; n0 += kRows) {
        const int rows = static_cast<int>(min64(kRows, n_rows - n0));
        for (int64_t j0 = 0; j0 < m_task; j0 += kR32Rows) {
          const uint32_t* w0 = w + (m0 + j0) * k2;  // panel (m0 + j0) / 32 starts there
          const TileOut o{a.y + n0 * m_rows + m0 + j0, m_rows, kR32Rows,
                          a.bias ? a.bias + m0 + j0 : nullptr, a.accumulate};
          kTiles<kR32Rows>[rows](xq.data() + n0 * k2, k2, w0, w0 + kGroup, o);
        }
      }
    }
  });
}

template <DType DT>
void run(const LinearArgs& a) {
  const int64_t n_rows = a.n, m_rows = a.w.rows, k = a.w.cols;
  const int64_t k2 = (k + 1) / 2;

  Buf<uint32_t> xq(x_words(n_rows, k));
  pack_x<false>(a.x, n_rows, k, xq.data());

  const int64_t cap = max64(32, min64(kMaxMb, kPackBytes / (k2 * 4) / 32 * 32));
  const int64_t mb = rows_per_task(m_rows, cap);
  const int64_t tasks = (m_rows + mb - 1) / mb;
  par_for(tasks, 1, [&](int64_t t0, int64_t t1) {
    thread_local Grow<uint32_t> wbuf;
    uint32_t* wp = wbuf.get(k2 * mb);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t m0 = t * mb;
      const int64_t m_task = min64(mb, m_rows - m0);
      const int64_t mbp = round_up(m_task, 32);
      pack_w<DT>(a, m0, mbp, k2, wp);
      for (int64_t n0 = 0; n0 < n_rows; n0 += kRows) {
        const int rows = static_cast<int>(min64(kRows, n_rows - n0));
        for (int64_t j0 = 0; j0 < mbp; j0 += 32) {
          const uint32_t* w0 = wp + (j0 / kGroup) * k2 * kGroup;
          const TileOut o{a.y + n0 * m_rows + m0 + j0, m_rows, min64(32, m_task - j0),
                          a.bias ? a.bias + m0 + j0 : nullptr, a.accumulate};
          kTiles<kGroup>[rows](xq.data() + n0 * k2, k2, w0, w0 + k2 * kGroup, o);
        }
      }
    }
  });
}

// Block h of an input-major block-diagonal weight (w[h][i][j], i input, j output; bs % 32 == 0)
// in pack_w's layout: dst[(g * bs / 2 + i) * 16 + r] = w[h][2i][16g + r] | w[h][2i + 1][16g + r]
// << 16.  Input-major rows run over the outputs, so a bf16 block needs no transpose: two rows'
// 16 values are interleaved.
template <DType DT>
static void pack_block(const void* w, int64_t h, int64_t bs, uint32_t* dst) {
  const int64_t k2 = bs / 2, base = h * bs * bs;
  for (int64_t g = 0; g < bs / kGroup; ++g) {
    for (int64_t i = 0; i < k2; ++i) {
      const int64_t r0 = base + 2 * i * bs + g * kGroup;  // w[h][2i][16g]
      uint32_t* out = dst + (g * k2 + i) * kGroup;
      if constexpr (DT == DType::kBF16) {
        const uint16_t* wb = static_cast<const uint16_t*>(w);
        const __m512i even = _mm512_cvtepu16_epi32(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + r0)));
        const __m512i odd = _mm512_cvtepu16_epi32(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + r0 + bs)));
        _mm512_storeu_si512(out, _mm512_or_si512(even, _mm512_slli_epi32(odd, 16)));
      } else {
        for (int64_t r = 0; r < kGroup; ++r) {
          out[r] = static_cast<uint32_t>(weight_bf16<DT>(w, r0 + r)) |
                   static_cast<uint32_t>(weight_bf16<DT>(w, r0 + bs + r)) << 16;
        }
      }
    }
  }
}

// y[n, h*bs + j] = sum_i bf16(x[n, h*bs + i]) * bf16(w[h, i, j]) + b[h, j]: x packed once over
// the whole width (block h's pairs start at pair h*bs/2 of every 12-row block), every block's
// weights packed once, then one task per (block, 12 rows of x), so that the few blocks (10 at
// the 2B shape) still split evenly over the threads.
template <DType DT>
void run_block_diag(const BlockDiagLinearArgs& a) {
  const int64_t bs = a.block_size, width = a.blocks * bs, n_rows = a.n;
  const int64_t k2 = width / 2, bk2 = bs / 2;
  Buf<uint32_t> xq(x_words(n_rows, width));
  pack_x<false>(a.x, n_rows, width, xq.data());
  Buf<uint32_t> wq(a.blocks * bs * bk2);
  par_for(a.blocks, 1, [&](int64_t h0, int64_t h1) {
    for (int64_t h = h0; h < h1; ++h) pack_block<DT>(a.w, h, bs, wq.data() + h * bs * bk2);
  });
  const int64_t xblocks = (n_rows + kRows - 1) / kRows;
  par_for(a.blocks * xblocks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t h = t / xblocks, n0 = (t % xblocks) * kRows;
      const int rows = static_cast<int>(min64(kRows, n_rows - n0));
      const uint32_t* xb = xq.data() + n0 * k2 + h * bk2 * kRows;
      const uint32_t* wb = wq.data() + h * bs * bk2;
      const float* bias = a.b ? a.b + h * bs : nullptr;
      for (int64_t j0 = 0; j0 < bs; j0 += 32) {
        const uint32_t* w0 = wb + (j0 / kGroup) * bk2 * kGroup;
        kTiles<kGroup>[rows](xb, bk2, w0, w0 + bk2 * kGroup,
                     TileOut{a.y + n0 * width + h * bs + j0, width, 32,
                             bias ? bias + j0 : nullptr, false});
      }
    }
  });
}

}  // namespace

void linear_bf16(const LinearArgs& a) {
  if (a.w.dtype == DType::kBF16R32) {
    run_r32(a);
    return;
  }
  with_dtype(a.w.dtype, [&](auto dt) { run<decltype(dt)::value>(a); });
}

void block_diag_bf16(const BlockDiagLinearArgs& a) {
  with_dtype(a.w_dtype, [&](auto dt) { run_block_diag<decltype(dt)::value>(a); });
}

}  // namespace gemma_native::ops::cpu::GN_ISA
