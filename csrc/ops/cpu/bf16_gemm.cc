// The bf16 compute mode's GEMM (activations="bfloat16"): y[n, m] = sum_k bf16(x[n, k]) *
// bf16(W[m, k]) + bias[m], products exact, sums in fp32, on Intel AMX tiles (TDPBF16PS).
//
// Compiled twice from this one file:
//   GN_ISA=amx     with -mamx-tile -mamx-bf16: the real tile instructions (Sapphire Rapids and
//                  later; the OS must grant the tile state, see dispatch.cc);
//   GN_ISA=amxemu  with no ISA flags: the same kernel over a portable emulation of the eight
//                  tile registers and the four tile instructions it uses, so that the packing,
//                  tiling and edge logic is checked on every machine (tests/ops/test_bf16_mode.py).
// The emulation adds the two products of each bf16 pair to the fp32 accumulator one after the
// other, rounding each sum (the instruction's documented order); the hardware may round the
// pair differently, so the two agree to fp32 rounding, not bit for bit.
//
// Layout (palette 1, every tile 16 rows x 64 bytes):
//   C  tiles 0-3  2 x 2 blocks of 16 x 16 fp32 (32 rows of x against 32 rows of W)
//   A  tiles 4-5  16 rows of x x 32 bf16 values of k; x is packed to bf16 once per call, tile
//                 by tile (each 1 KiB tile contiguous: one sequential stream per 16 rows)
//   B  tiles 6-7  16 k pairs x 16 rows of W x 2 (the "VNNI" order TDPBF16PS reads: W row m's
//                 values k = 2i, 2i+1 side by side in tile row i), packed per task, each
//                 32-row pair's tiles one sequential stream
// Each task owns mb rows of W (packed once per call, <= 1.25 MiB so that it stays in the
// 2 MiB L2 of a Sapphire Rapids core: 256 rows up to K = 2560, fewer for longer rows) and
// walks every 32-row block of x against them; per 32 values of k, 4 tile loads feed 4
// TDPBF16PS (16 x 16 x 32 MACs each).  The next 32-row block of x is prefetched meanwhile.
// Packing a bf16 W is a 16 x 16 transpose of 32-bit words per tile (AVX-512 permutes).
// Napkin math: a TDPBF16PS is 8192 multiply-adds in 16 cycles (a plain loop of them runs at
// ~3.7 TFLOP/s on one core of the development Xeon), about 16x an AVX-512 FMA port pair; the
// packing costs O(N*K + M*K) per call against O(N*M*K) products.  What holds the kernel to
// ~1 TFLOP/s per core is feeding the tiles: each TDPBF16PS needs a fresh 1 KiB tile from L2.
#include <cstring>

#include "ops/cpu/amx_tiles.h"
#include "ops/cpu/bf16_pack.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/simd.h"

#if defined(GN_AMX_NATIVE)
#include <immintrin.h>
#endif

namespace gemma_native::ops::cpu::GN_ISA {
namespace {

constexpr int64_t kBlockK = 32;   // bf16 values of k per A/B tile
constexpr int64_t kBlockN = 32;   // rows of x per 2 x 2 C tile block
constexpr int64_t kMaxMb = 256;   // rows of W per task at most (8 C tile column pairs)
constexpr int64_t kPackBytes = 1280 * 1024;  // packed W per task at most (from 32 rows up)
constexpr int kTileBytes = 1024;  // 16 rows x 64 bytes

#if defined(GN_AMX_NATIVE)
static inline void tiles_begin() {
  TileConfig cfg;  // tiles 0-7 all 16 rows x 64 bytes
  for (int t = 0; t < 8; ++t) cfg.colsb[t] = 64, cfg.rows[t] = 16;
  _tile_loadconfig(&cfg);
}
static inline void tiles_end() { _tile_release(); }
#define GN_TILE_ZERO(t) _tile_zero(t)
#define GN_TILE_LOAD(t, p, stride) _tile_loadd(t, p, stride)
#define GN_TILE_STORE(t, p, stride) _tile_stored(t, p, stride)
#define GN_TILE_DP(c, a, b) _tile_dpbf16ps(c, a, b)
#else
// Eight 16 x 64-byte registers per thread, as the hardware keeps them per thread.
struct EmuTiles {
  alignas(64) unsigned char t[8][16][64];
};
static thread_local EmuTiles g_tiles;
static inline void tiles_begin() { std::memset(&g_tiles, 0, sizeof(g_tiles)); }
static inline void tiles_end() {}
static inline void emu_zero(int t) { std::memset(g_tiles.t[t], 0, sizeof(g_tiles.t[t])); }
static inline void emu_load(int t, const void* p, int64_t stride) {
  for (int r = 0; r < 16; ++r) std::memcpy(g_tiles.t[t][r], static_cast<const char*>(p) + r * stride, 64);
}
static inline void emu_store(int t, void* p, int64_t stride) {
  for (int r = 0; r < 16; ++r) std::memcpy(static_cast<char*>(p) + r * stride, g_tiles.t[t][r], 64);
}
// c[m][n] += a[m][2i] * b[i][2n] then += a[m][2i+1] * b[i][2n+1], for i = 0..15 in order.
static inline void emu_dp(int c, int a, int b) {
  for (int m = 0; m < 16; ++m) {
    float acc[16];
    std::memcpy(acc, g_tiles.t[c][m], 64);
    uint16_t arow[32];
    std::memcpy(arow, g_tiles.t[a][m], 64);
    for (int i = 0; i < 16; ++i) {
      uint16_t brow[32];
      std::memcpy(brow, g_tiles.t[b][i], 64);
      const float a0 = bf16_to_f32(arow[2 * i]), a1 = bf16_to_f32(arow[2 * i + 1]);
      for (int n = 0; n < 16; ++n) {
        acc[n] += a0 * bf16_to_f32(brow[2 * n]);
        acc[n] += a1 * bf16_to_f32(brow[2 * n + 1]);
      }
    }
    std::memcpy(g_tiles.t[c][m], acc, 64);
  }
}
#define GN_TILE_ZERO(t) emu_zero(t)
#define GN_TILE_LOAD(t, p, stride) emu_load(t, p, stride)
#define GN_TILE_STORE(t, p, stride) emu_store(t, p, stride)
#define GN_TILE_DP(c, a, b) emu_dp(c, a, b)
#endif

// W rows [m0, m0 + mb) (zero past `rows`) into B tiles, each 32-row pair's tiles one
// sequential stream: the tile of 16-row group g (= 2 pair + h) and k block kb sits at
// dst + ((pair * nkb + kb) * 2 + h) * 512 values; its row i holds, for n = 0..15,
// W[m0 + 16g + n][32kb + 2i] and W[m0 + 16g + n][32kb + 2i + 1].
// BF16R32 weights (dtype.h) hold these tiles' rows already: tile row i of k block kb is the
// word pair p = 2 kb + i / 8, l = i % 8 of the 16 rows, 64 bytes to copy (pack_x puts x's
// values in the same pairs).
static void pack_w_r32(const LinearArgs& a, int64_t m0, int64_t mb, int64_t kp, uint16_t* dst) {
  const int64_t k = a.w.cols, rows = a.w.rows, lane_pairs = k / kR32ColStep;
  const int64_t nkb = kp / kBlockK;
  const uint32_t* w = static_cast<const uint32_t*>(a.w.data);
  for (int64_t g = 0; g < mb / 16; ++g) {
    const int64_t m = m0 + g * 16;
    const uint32_t* panel = w + (m - m % kR32Rows) * (k / 2) + m % kR32Rows;
    for (int64_t kb = 0; kb < nkb; ++kb) {
      uint16_t* tile = dst + (((g / 2) * nkb + kb) * 2 + g % 2) * (kTileBytes / 2);
      for (int64_t i = 0; i < 16; ++i) {
        const int64_t pp = 2 * kb + i / 8, l = i % 8;
        if (m < rows && pp < lane_pairs) {
          std::memcpy(tile + i * 32, panel + (l * lane_pairs + pp) * kR32Rows, 64);
        } else {
          std::memset(tile + i * 32, 0, 64);
        }
      }
    }
  }
}

template <DType DT>
static void pack_w(const LinearArgs& a, int64_t m0, int64_t mb, int64_t kp, uint16_t* dst) {
  const int64_t k = a.w.cols, rows = a.w.rows;
  const size_t row_bytes = static_cast<size_t>(k) * dtype_size(DT);
  const char* base = static_cast<const char*>(a.w.data);
  const int64_t nkb = kp / kBlockK;
  for (int64_t g = 0; g < mb / 16; ++g) {
    const void* wrow[16];
    bool full = DT == DType::kBF16;  // all 16 rows present: value pairs move as 32-bit words
    for (int64_t n = 0; n < 16; ++n) {
      const int64_t m = m0 + g * 16 + n;
      wrow[n] = m < rows ? base + static_cast<size_t>(m) * row_bytes : nullptr;
      full = full && wrow[n] != nullptr;
    }
    // Tile by tile, so the writes are sequential and the 16 source lines are each read whole.
    for (int64_t kb = 0; kb < nkb; ++kb) {
      uint16_t* tile = dst + (((g / 2) * nkb + kb) * 2 + g % 2) * (kTileBytes / 2);
      if (full && (kb + 1) * kBlockK <= k) {
#if defined(GN_AMX_NATIVE)
        const uint16_t* src[16];
        for (int64_t n = 0; n < 16; ++n) src[n] = static_cast<const uint16_t*>(wrow[n]);
        transpose16_pairs(src, kb * kBlockK, tile);
        continue;
#endif
        uint32_t words[16][16];  // [i][n]
        for (int64_t n = 0; n < 16; ++n) {
          uint32_t src[16];
          std::memcpy(src, static_cast<const uint16_t*>(wrow[n]) + kb * kBlockK, 64);
          for (int64_t i = 0; i < 16; ++i) words[i][n] = src[i];
        }
        std::memcpy(tile, words, sizeof(words));
        continue;
      }
      for (int64_t i = 0; i < 16; ++i) {
        const int64_t j = kb * kBlockK + 2 * i;
        for (int64_t n = 0; n < 16; ++n) {
          const void* w = wrow[n];
          tile[i * 32 + 2 * n] = (w && j < k) ? weight_bf16<DT>(w, j) : 0;
          tile[i * 32 + 2 * n + 1] = (w && j + 1 < k) ? weight_bf16<DT>(w, j + 1) : 0;
        }
      }
    }
  }
}

// One 32 x 32 block of C: 16-row x tiles xa0 / xa1 (k blocks 512 values apart) against a
// 32-row pair of packed W tiles at b, over `steps` k blocks of 32, into c[32][ld] (floats).
// Per k block: 4 tile loads feed 4 TDPBF16PS; step() runs once per k block (prefetches).
template <class Step>
static inline void c_block(const uint16_t* xa0, const uint16_t* xa1, const uint16_t* b,
                           int64_t steps, float* c, int64_t ld, Step&& step) {
  const int64_t ldc = ld * 4;  // bytes per row of c
  GN_TILE_ZERO(0);
  GN_TILE_ZERO(1);
  GN_TILE_ZERO(2);
  GN_TILE_ZERO(3);
  for (int64_t kb = 0; kb < steps; ++kb, b += kTileBytes) {
    step();
    GN_TILE_LOAD(4, xa0 + kb * (kTileBytes / 2), 64);
    GN_TILE_LOAD(5, xa1 + kb * (kTileBytes / 2), 64);
    GN_TILE_LOAD(6, b, 64);
    GN_TILE_LOAD(7, b + kTileBytes / 2, 64);
    GN_TILE_DP(0, 4, 6);
    GN_TILE_DP(1, 4, 7);
    GN_TILE_DP(2, 5, 6);
    GN_TILE_DP(3, 5, 7);
  }
  GN_TILE_STORE(0, c, ldc);
  GN_TILE_STORE(1, c + 16, ldc);
  GN_TILE_STORE(2, c + 16 * ld, ldc);
  GN_TILE_STORE(3, c + 16 * ld + 16, ldc);
}

// x [n_rows, k] rounded to bf16 (nearest even), zero-padded to np rows and a multiple of 32
// values, as A tiles: the tile of 16-row group g and k block kb is 1 KiB at
// xb + (g * nkb + kb) * 512 values (row r: x[16g + r][32kb ..]).  R32 (BF16R32 weights): each
// block of 32 values in the pairs of the weights' words, element j = 2w + h of a row holding
// value 16 (w / 8) + w % 8 + 8 h of its block.
template <bool R32>
static void pack_x(const float* x, int64_t n_rows, int64_t k, int64_t np, uint16_t* xb) {
  auto value = [](int64_t j) -> int64_t { return R32 ? 16 * (j / 16) + (j / 2) % 8 + 8 * (j % 2) : j; };
  const int64_t nkb = round_up(k, kBlockK) / kBlockK;
  par_for(np / 16, 1, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      for (int64_t r = 0; r < 16; ++r) {
        const int64_t row = g * 16 + r;
        const float* src = x + row * k;
        for (int64_t kb = 0; kb < nkb; ++kb) {
          uint16_t* dst = xb + (g * nkb + kb) * (kTileBytes / 2) + r * kBlockK;
          const int64_t j0 = kb * kBlockK;
          const int64_t valid = row < n_rows ? min64(kBlockK, k - j0) : 0;
          for (int64_t j = 0; j < kBlockK; ++j) {
            const int64_t v = value(j);
            dst[j] = v < valid ? f32_to_bf16(src[j0 + v]) : 0;
          }
        }
      }
    }
  });
}

template <DType DT>
void run(const LinearArgs& a) {
  const int64_t n_rows = a.n, m_rows = a.w.rows, k = a.w.cols;
  const int64_t kp = round_up(k, kBlockK), np = round_up(n_rows, kBlockN);
  const int64_t nkb = kp / kBlockK;

  Buf<uint16_t> xb(np * kp);
  pack_x<DT == DType::kBF16R32>(a.x, n_rows, k, np, xb.data());

  const int64_t mb = max64(32, min64(kMaxMb, kPackBytes / (kp * 2) / 32 * 32));
  const int64_t tasks = (m_rows + mb - 1) / mb;
  par_for(tasks, 1, [&](int64_t t0, int64_t t1) {
    thread_local Grow<uint16_t> wbuf;
    thread_local Grow<float> cgrow;
    uint16_t* wp = wbuf.get(kp * mb);
    float* cbuf = cgrow.get(kBlockN * mb);  // the C tiles of a 32-row block of x, [32][mb]
    tiles_begin();
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t m0 = t * mb;
      if constexpr (DT == DType::kBF16R32) {
        pack_w_r32(a, m0, mb, kp, wp);
      } else {
        pack_w<DT>(a, m0, mb, kp, wp);
      }
      const int64_t mgroups = min64(mb, round_up(m_rows - m0, 32)) / 32;  // 32-row pairs
      for (int64_t n0 = 0; n0 < np; n0 += kBlockN) {
        const uint16_t* xa0 = xb.data() + (n0 / 16) * nkb * (kTileBytes / 2);
        const uint16_t* xa1 = xa0 + nkb * (kTileBytes / 2);
        // The next 32-row block's x tiles are fetched into L2 while this one runs, two lines of
        // each of its two streams per step (they are read from L3 otherwise, once per task).
        const uint16_t* pf0 = xa1 + nkb * (kTileBytes / 2);
        const uint16_t* pf1 = pf0 + nkb * (kTileBytes / 2);
        const int64_t pf_lines = n0 + kBlockN < np ? nkb * 16 : 0;  // cache lines per stream
        int64_t pf = 0;
        for (int64_t mg = 0; mg < mgroups; ++mg) {
          c_block(xa0, xa1, wp + mg * nkb * kTileBytes, nkb, cbuf + mg * 32, mb, [&] {
            if (pf < pf_lines) {
              prefetch_l2(pf0 + pf * 32);
              prefetch_l2(pf1 + pf * 32);
              prefetch_l2(pf0 + pf * 32 + 32);
              prefetch_l2(pf1 + pf * 32 + 32);
              pf += 2;
            }
          });
        }
        const int64_t n_end = min64(kBlockN, n_rows - n0), m_end = min64(mb, m_rows - m0);
        for (int64_t i = 0; i < n_end; ++i) {
          float* yrow = a.y + (n0 + i) * m_rows + m0;
          const float* c = cbuf + i * mb;
          for (int64_t j = 0; j < m_end; ++j) {
            const float s = c[j] + (a.bias ? a.bias[m0 + j] : 0.0f);
            yrow[j] = a.accumulate ? yrow[j] + s : s;
          }
        }
      }
    }
    tiles_end();
  });
}

// Block h of an input-major block-diagonal weight (w[h][i][j], i input, j output; bs % 32 == 0)
// as B tiles in pack_w's layout: the tile of 16-output group g and k block kb sits at
// dst + ((g / 2 * nkb + kb) * 2 + g % 2) * 512 values, its row i holding, for n = 0..15,
// w[h][32kb + 2i][16g + n] and w[h][32kb + 2i + 1][16g + n].  Input-major rows are contiguous
// over the outputs, so no transpose is needed.
template <DType DT>
static void pack_block(const void* w, int64_t h, int64_t bs, uint16_t* dst) {
  const int64_t nkb = bs / kBlockK, base = h * bs * bs;
  for (int64_t g = 0; g < bs / 16; ++g) {
    for (int64_t kb = 0; kb < nkb; ++kb) {
      uint16_t* tile = dst + (((g / 2) * nkb + kb) * 2 + g % 2) * (kTileBytes / 2);
      for (int64_t i = 0; i < 16; ++i) {
        const int64_t r0 = base + (kb * kBlockK + 2 * i) * bs + g * 16;  // w[h][2i'][16g]
        for (int64_t n = 0; n < 16; ++n) {
          tile[i * 32 + 2 * n] = weight_bf16<DT>(w, r0 + n);
          tile[i * 32 + 2 * n + 1] = weight_bf16<DT>(w, r0 + bs + n);
        }
      }
    }
  }
}

// y[n, h*bs + j] = sum_i bf16(x[n, h*bs + i]) * bf16(w[h, i, j]) + b[h, j]: x packed once as
// A tiles over the whole width (block h's tiles are k blocks h*bs/32 ..), each block's weights
// packed by the thread that runs it, the same 2 x 2 C tile loop as run().
template <DType DT>
void run_block_diag(const BlockDiagLinearArgs& a) {
  const int64_t bs = a.block_size, width = a.blocks * bs, n_rows = a.n;
  const int64_t np = round_up(n_rows, kBlockN), nkb = width / kBlockK, bkb = bs / kBlockK;
  Buf<uint16_t> xb(np * width);
  pack_x<false>(a.x, n_rows, width, np, xb.data());
  par_for(a.blocks, 1, [&](int64_t h0, int64_t h1) {
    thread_local Grow<uint16_t> wbuf;
    thread_local Grow<float> cgrow;
    uint16_t* wp = wbuf.get(bs * bs);
    float* cbuf = cgrow.get(kBlockN * bs);  // [32][bs]
    tiles_begin();
    for (int64_t h = h0; h < h1; ++h) {
      pack_block<DT>(a.w, h, bs, wp);
      for (int64_t n0 = 0; n0 < np; n0 += kBlockN) {
        const uint16_t* xa0 = xb.data() + ((n0 / 16) * nkb + h * bkb) * (kTileBytes / 2);
        const uint16_t* xa1 = xa0 + nkb * (kTileBytes / 2);
        for (int64_t mg = 0; mg < bs / 32; ++mg) {
          c_block(xa0, xa1, wp + mg * bkb * kTileBytes, bkb, cbuf + mg * 32, bs, [] {});
        }
        const int64_t n_end = min64(kBlockN, n_rows - n0);
        const float* bias = a.b ? a.b + h * bs : nullptr;
        for (int64_t i = 0; i < n_end; ++i) {
          float* yrow = a.y + (n0 + i) * width + h * bs;
          const float* c = cbuf + i * bs;
          for (int64_t j = 0; j < bs; ++j) yrow[j] = c[j] + (bias ? bias[j] : 0.0f);
        }
      }
    }
    tiles_end();
  });
}

}  // namespace

void linear_bf16(const LinearArgs& a) {
  if (a.w.dtype == DType::kBF16R32) {
    run<DType::kBF16R32>(a);
    return;
  }
  with_dtype(a.w.dtype, [&](auto dt) { run<decltype(dt)::value>(a); });
}

void block_diag_bf16(const BlockDiagLinearArgs& a) {
  with_dtype(a.w_dtype, [&](auto dt) { run_block_diag<decltype(dt)::value>(a); });
}

}  // namespace gemma_native::ops::cpu::GN_ISA
