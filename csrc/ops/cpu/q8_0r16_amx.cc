// Q8_0R16 linear (dtype="int8" models, int8 activations) on Intel AMX-INT8 tiles (TDPBSUD), for
// prefill: y[n, m] = sum over blocks b of float(S[n, m, b]) * (dw[m, b] * dx[n, b]), the sum
// over b in increasing order, one fma per block, then + bias[m]; S the block's exact int32
// product of the activation row's 32 int8 values with the weight row's 32 int8 values.  That is
// q8_0r16.cc's definition, so the results equal the kernel sets' bit for bit: only the integer
// sums are formed differently, and integer sums do not depend on their order.
//
// Compiled twice, beside the bf16 GEMM (bf16_gemm.cc):
//   GN_ISA=amx     with -mamx-tile -mamx-int8 (Sapphire Rapids and later; the OS must grant the
//                  tile state, see dispatch.cc);
//   GN_ISA=amxemu  with no ISA flags: the same code over an emulation of the tile registers, their
//                  configuration and the three tile instructions used, so that every machine's
//                  tests run the packing, tiling and edge logic (tests/ops/test_int8_gemm.py).
//
// Why TDPBSUD fits the layout as stored.  A Q8_0R16 group-block (quant.h) holds, after the 16
// rows' half scales, k-step j = 0..7 as 64 bytes: for row r = 0..15 the 4 values 4j..4j+3 of
// that row, as unsigned bytes q + 128.  That is a B tile of 8 rows x 64 bytes as TDPBSUD reads
// it (B[k / 4][4 n + k % 4] = weight row n's value k), loaded where it lies.  The A tile is 16
// activation rows x 32 signed bytes (one block of each).  C[t][r] = sum_k x_t[k] * (q_r[k] + 128)
// = S + 128 * sum_k x_t[k]; the same correction as the VNNI path (corr = -128 * sum x) recovers S.
//
// Tiles (palette 1): C 0-3 (16 x 16 int32: 2 x 2 blocks of 16 activation rows x 16 weight rows),
// A 4-5 (16 rows x 32 bytes), B 6-7 (8 rows x 64 bytes).  Per block, 4 tile loads feed 4
// TDPBSUD of 16 x 16 x 32 products each; the four C tiles then go through memory into the
// vector unit (one convert, one scale product and one fma per 16 outputs, as in q8_0r16.cc):
// that per-block step, not the tile unit, bounds the kernel, since every 32 values carry
// their own scales.  A task owns pairs of weight groups (32 rows x K bytes, ~87 KB at K =
// 2560, kept in L2) and walks every 32-row block of the packed activations against them.
#include <cmath>
#include <cstring>

#include "gemma_native/quant.h"
#include "ops/cpu/amx_tiles.h"
#include "ops/cpu/dispatch.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/simd.h"

#if defined(GN_AMX_NATIVE)
#include <immintrin.h>
#endif

namespace gemma_native::ops::cpu::GN_ISA {
namespace {

constexpr int kRows = kQ8R16Rows;                 // weight rows per group, = C tile columns
constexpr int64_t kGB = kQ8R16GroupBlock;         // bytes per (group, block)
constexpr int64_t kATile = 16 * 32;               // bytes of one A tile (16 rows x 32 values)

// Tile shapes: C 0-3, A 4-5, B 6-7.
constexpr int kCRows = 16, kCColsb = 64, kARows = 16, kAColsb = 32, kBRows = 8, kBColsb = 64;

static TileConfig tile_config() {
  TileConfig cfg;
  for (int t = 0; t < 4; ++t) cfg.colsb[t] = kCColsb, cfg.rows[t] = kCRows;
  for (int t = 4; t < 6; ++t) cfg.colsb[t] = kAColsb, cfg.rows[t] = kARows;
  for (int t = 6; t < 8; ++t) cfg.colsb[t] = kBColsb, cfg.rows[t] = kBRows;
  return cfg;
}

#if defined(GN_AMX_NATIVE)
static inline void tiles_begin() {
  const TileConfig cfg = tile_config();
  _tile_loadconfig(&cfg);
}
static inline void tiles_end() { _tile_release(); }
#define GN_TILE_ZERO(t) _tile_zero(t)
#define GN_TILE_LOAD(t, p, stride) _tile_loadd(t, p, stride)
#define GN_TILE_STORE(t, p, stride) _tile_stored(t, p, stride)
#define GN_TILE_DPBSUD(c, a, b) _tile_dpbsud(c, a, b)
#else
// Eight tile registers per thread with the configured shapes.  Each instruction checks the
// shapes it is given as the hardware would (#UD there), so a wrong configuration fails the
// tests on every machine instead of only on an AMX one.
struct EmuTiles {
  TileConfig cfg;
  alignas(64) unsigned char t[8][16][64];
};
static thread_local EmuTiles g_tiles;
static inline void tiles_begin() {
  g_tiles.cfg = tile_config();
  std::memset(g_tiles.t, 0, sizeof(g_tiles.t));
}
static inline void tiles_end() { g_tiles.cfg = TileConfig{}; }
static inline void emu_require(bool ok, const char* what) {
  if (!ok) kernel_fault(what);
}
static inline void emu_zero(int t) { std::memset(g_tiles.t[t], 0, sizeof(g_tiles.t[t])); }
static inline void emu_load(int t, const void* p, int64_t stride) {
  const int rows = g_tiles.cfg.rows[t], colsb = g_tiles.cfg.colsb[t];
  emu_require(g_tiles.cfg.palette == 1 && rows > 0 && rows <= 16 && colsb > 0 && colsb <= 64,
              "emulated AMX tiles: load of an unconfigured tile");
  std::memset(g_tiles.t[t], 0, sizeof(g_tiles.t[t]));
  for (int r = 0; r < rows; ++r) std::memcpy(g_tiles.t[t][r], static_cast<const char*>(p) + r * stride, colsb);
}
static inline void emu_store(int t, void* p, int64_t stride) {
  const int rows = g_tiles.cfg.rows[t], colsb = g_tiles.cfg.colsb[t];
  emu_require(g_tiles.cfg.palette == 1 && rows > 0 && colsb > 0, "emulated AMX tiles: store of an unconfigured tile");
  for (int r = 0; r < rows; ++r) std::memcpy(static_cast<char*>(p) + r * stride, g_tiles.t[t][r], colsb);
}
// c[m][n] += sum over k < colsb(a) of int8 a[m][k] * uint8 b[k / 4][4 n + k % 4], in int32
// (wrapping, as the instruction does; the sums here stay far inside the range).
static inline void emu_dpbsud(int c, int a, int b) {
  const TileConfig& cfg = g_tiles.cfg;
  emu_require(cfg.rows[c] == cfg.rows[a] && cfg.colsb[c] == cfg.colsb[b] &&
                  cfg.colsb[a] == 4 * cfg.rows[b] && cfg.colsb[c] % 4 == 0,
              "emulated AMX tiles: TDPBSUD tile shapes do not match");
  for (int m = 0; m < cfg.rows[c]; ++m) {
    int32_t acc[16];
    std::memcpy(acc, g_tiles.t[c][m], 64);
    for (int n = 0; n < cfg.colsb[c] / 4; ++n) {
      uint32_t s = static_cast<uint32_t>(acc[n]);
      for (int k = 0; k < cfg.colsb[a]; ++k) {
        const int32_t av = static_cast<int8_t>(g_tiles.t[a][m][k]);
        const int32_t bv = g_tiles.t[b][k / 4][4 * n + k % 4];
        s += static_cast<uint32_t>(av * bv);
      }
      acc[n] = static_cast<int32_t>(s);
    }
    std::memcpy(g_tiles.t[c][m], acc, 64);
  }
}
#define GN_TILE_ZERO(t) emu_zero(t)
#define GN_TILE_LOAD(t, p, stride) emu_load(t, p, stride)
#define GN_TILE_STORE(t, p, stride) emu_store(t, p, stride)
#define GN_TILE_DPBSUD(c, a, b) emu_dpbsud(c, a, b)
#endif

// The activations of one call: for 16-row panel p and block b, the A tile (16 rows x 32 int8)
// at qs + (p * nb + b) * kATile, and the rows' scales d and corrections corr = -128 * (sum of
// the block's values) at (p * nb + b) * 16 + row.  Rows past n are zeros.
struct PackedX {
  Buf<int8_t> qs;
  Buf<float> d;
  Buf<int32_t> corr;
  PackedX(int64_t panels, int64_t nb) : qs(panels * nb * kATile), d(panels * nb * 16), corr(panels * nb * 16) {}
};

static void pack_x(const LinearArgs& a, int64_t panels, int64_t nb, PackedX& px) {
  const int64_t K = a.w.cols;
  const auto quantize = cpu::active().quantize_act;  // every kernel set's quantizer is the same
  par_for(panels * 16, 16, [&](int64_t r0, int64_t r1) {
    Buf<ActBlock32> row(nb);
    for (int64_t rr = r0; rr < r1; ++rr) {
      const int64_t p = rr / 16, t = rr % 16;
      const bool real = rr < a.n;
      if (real) quantize(a.x + rr * K, K, 32, row.data());
      for (int64_t b = 0; b < nb; ++b) {
        int8_t* dst = px.qs.data() + (p * nb + b) * kATile + t * 32;
        const int64_t s = (p * nb + b) * 16 + t;
        if (!real) {
          std::memset(dst, 0, 32);
          px.d[s] = 0.0f;
          px.corr[s] = 0;
          continue;
        }
        std::memcpy(dst, row[b].qs, 32);
        px.d[s] = row[b].d;
        px.corr[s] = act_block_corr(row[b]);
      }
    }
  });
}

// facc[t * 16 + r] += float(c[t * 16 + r] + corr[t]) * (dw[r] * d[t]) for t, r < 16, each a
// single-rounding fma (q8_0r16.cc's per-block step for one 16 x 16 C tile).
static inline void scale_add(const int32_t* c, const int32_t* corr, const float* d,
                             const uint16_t* dw_half, float* facc) {
#if defined(GN_AMX_NATIVE)
  const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(dw_half)));
  for (int t = 0; t < 16; ++t) {
    const __m512i s = _mm512_add_epi32(_mm512_loadu_si512(c + t * 16), _mm512_set1_epi32(corr[t]));
    const __m512 dd = _mm512_mul_ps(dw, _mm512_set1_ps(d[t]));
    _mm512_storeu_ps(facc + t * 16,
                     _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), dd, _mm512_loadu_ps(facc + t * 16)));
  }
#else
  float dw[16];
  for (int r = 0; r < 16; ++r) dw[r] = f16_to_f32(dw_half[r]);
  for (int t = 0; t < 16; ++t) {
    for (int r = 0; r < 16; ++r) {
      const float dd = dw[r] * d[t];
      facc[t * 16 + r] = std::fma(static_cast<float>(c[t * 16 + r] + corr[t]), dd, facc[t * 16 + r]);
    }
  }
#endif
}

}  // namespace

void linear_q8_0r16(const LinearArgs& a) {
  const int64_t K = a.w.cols, M = a.w.rows, nb = K / 32;
  const int64_t groups = M / kRows, xpanels = (a.n + 15) / 16;
  const int64_t xpairs = (xpanels + 1) / 2;
  PackedX px(2 * xpairs, nb);
  pack_x(a, 2 * xpairs, nb, px);
  const uint8_t* wbase = static_cast<const uint8_t*>(a.w.data);
  par_for((groups + 1) / 2, 1, [&](int64_t q0, int64_t q1) {
    alignas(64) int32_t cbuf[4][16 * 16];
    alignas(64) float facc[4][16 * 16];  // [activation panel h][weight group e], 2 x 2
    tiles_begin();
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t g0 = 2 * q, ng = min64(2, groups - g0);
      // A lone last group runs as both B tiles; the copy's outputs are dropped.
      const uint8_t* grp[2] = {wbase + g0 * nb * kGB, wbase + (g0 + ng - 1) * nb * kGB};
      for (int64_t xp = 0; xp < xpairs; ++xp) {
        std::memset(facc, 0, sizeof(facc));
        for (int64_t b = 0; b < nb; ++b) {
          const int64_t s0 = (2 * xp * nb + b), s1 = ((2 * xp + 1) * nb + b);
          GN_TILE_ZERO(0);
          GN_TILE_ZERO(1);
          GN_TILE_ZERO(2);
          GN_TILE_ZERO(3);
          GN_TILE_LOAD(4, px.qs.data() + s0 * kATile, 32);
          GN_TILE_LOAD(5, px.qs.data() + s1 * kATile, 32);
          GN_TILE_LOAD(6, grp[0] + b * kGB + 2 * kRows, 64);
          GN_TILE_LOAD(7, grp[1] + b * kGB + 2 * kRows, 64);
          GN_TILE_DPBSUD(0, 4, 6);
          GN_TILE_DPBSUD(1, 4, 7);
          GN_TILE_DPBSUD(2, 5, 6);
          GN_TILE_DPBSUD(3, 5, 7);
          GN_TILE_STORE(0, cbuf[0], 64);
          GN_TILE_STORE(1, cbuf[1], 64);
          GN_TILE_STORE(2, cbuf[2], 64);
          GN_TILE_STORE(3, cbuf[3], 64);
          for (int h = 0; h < 2; ++h) {
            const int64_t s = h == 0 ? s0 : s1;
            for (int e = 0; e < 2; ++e) {
              const auto* dw = reinterpret_cast<const uint16_t*>(grp[e] + b * kGB);
              scale_add(cbuf[2 * h + e], px.corr.data() + s * 16, px.d.data() + s * 16, dw,
                        facc[2 * h + e]);
            }
          }
        }
        for (int h = 0; h < 2; ++h) {
          for (int e = 0; e < ng; ++e) {
            for (int t = 0; t < 16; ++t) {
              const int64_t n = (2 * xp + h) * 16 + t;
              if (n >= a.n) break;
              for (int r = 0; r < kRows; ++r) {
                store_linear(a, n, (g0 + e) * kRows + r, facc[2 * h + e][t * 16 + r]);
              }
            }
          }
        }
      }
    }
    tiles_end();
  });
}

}  // namespace gemma_native::ops::cpu::GN_ISA
