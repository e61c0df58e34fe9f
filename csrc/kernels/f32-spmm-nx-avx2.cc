// CSR and BSR, any batch, AVX2 + FMA: vectorised across the columns of X.
//
// Each stored weight w multiplies a row of X: Y[i, j..j+8) += w * X[k, j..j+8).
// A register tile covers RB output rows x V vectors of 8 columns. FMA latency
// is 4 cycles and two issue per cycle, so a tile needs 8 independent
// accumulator chains to run at full rate: when RB * V < 8 the loop over stored
// blocks is unrolled U = 8 / (RB * V) times with U separate accumulator sets,
// summed once at the end. Tiles are as wide as the batch allows (V = 8/RB, then
// halving down to one vector), so batch 32 in CSR is one 1 x 32 tile with U = 2,
// not four passes of one chain each. Blocks of R = 16 rows take two passes of 8.
// Per block column a tile does V loads of X and RB broadcasts of weights for
// RB * V FMAs, so it is FMA-bound while X's rows stay in L1/L2.
//
// Accumulators live in registers only: the epilogue copies them to a stack
// buffer once per tile and writes Y from there, so no runtime-indexed access to
// the accumulator array can force it into memory inside the hot loop.
//
// Contract: X rows are contiguous along n; any ldx >= 1 (rows may overlap when
// ldx < n: the direct convolution runs this kernel with ldx == 1, indices as
// offsets into one padded image). Y's columns may be
// strided (y_cs != 1, used by `linear`, which writes Y^T straight into the
// (batch, M) output). Masked tails never touch X or Y outside n columns. No
// alignment required.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels.h"

namespace pysparse {
namespace {

#define PYSPARSE_UNROLL _Pragma("GCC unroll 16")

inline __m256i tail_mask(int64_t count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Writes rows [0, rows) x cols [0, cols) of out (row stride ldo) to Y at
// (row0, j). Not a template: one copy serves every tile shape.
void write_tile(const SpmmArgs& a, int64_t row0, int rows, int64_t j, int64_t cols, const float* out, int ldo) {
  for (int r = 0; r < rows; ++r) {
    float* yr = a.y + (row0 + r) * a.y_rs + j * a.y_cs;
    const float* o = out + r * ldo;
    if (a.y_cs == 1) {
      for (int64_t u = 0; u < cols; ++u) yr[u] = o[u];
    } else {
      for (int64_t u = 0; u < cols; ++u) yr[u * a.y_cs] = o[u];
    }
  }
}

// One register tile: rows [r0, r0 + RB) of block row b, columns [j, j + 8 V).
// kMasked: V == 1 and only `count` (< 8) columns exist. kSell: b is a SELL
// slice and r0 its lane (R == RB == 1): the lane's row read at stride 8.
template <class Index, int R, int RB, int V, bool kC1, bool kMasked, bool kSell>
inline void tile(const SpmmArgs& a, int64_t b, int r0, int rows_pass, int64_t j, int64_t count) {
  constexpr int U = (RB * V >= 8) ? 1 : 8 / (RB * V);
  const SparseView& w = *a.w;
  constexpr int64_t S = kSell ? 8 : 1;  // stride between a row's stored weights
  const Index* idx = static_cast<const Index*>(w.idx) + (kSell ? r0 : 0);
  const int64_t C = kC1 ? 1 : w.block_c;
  const int64_t ldx = a.ldx;
  const float* x = a.x + j;
  const float* values = w.values + r0;
  const int64_t row0 = kSell ? w.row_of[b * 8 + r0] : b * R + r0;
  const __m256i mask = kMasked ? tail_mask(count) : _mm256_setzero_si256();

  __m256 acc[U][RB][V];
  PYSPARSE_UNROLL for (int u = 0; u < U; ++u)
    PYSPARSE_UNROLL for (int r = 0; r < RB; ++r)
      PYSPARSE_UNROLL for (int t = 0; t < V; ++t) acc[u][r][t] = _mm256_setzero_ps();

  // acc[u] += block p's columns times X's rows.
  auto step = [&](int u, int64_t p) {
    const float* xk = x + static_cast<int64_t>(idx[p * S]) * ldx;
    const float* vp = values + p * R * C * S;
    for (int64_t c = 0; c < C; ++c, xk += ldx, vp += R) {
      __m256 xv[V];
      PYSPARSE_UNROLL for (int t = 0; t < V; ++t) xv[t] = kMasked ? _mm256_maskload_ps(xk, mask) : _mm256_loadu_ps(xk + 8 * t);
      PYSPARSE_UNROLL for (int r = 0; r < RB; ++r) {
        const __m256 wv = _mm256_broadcast_ss(vp + r);
        PYSPARSE_UNROLL for (int t = 0; t < V; ++t) acc[u][r][t] = _mm256_fmadd_ps(wv, xv[t], acc[u][r][t]);
      }
    }
  };
  int64_t p = w.ptr[b];
  const int64_t end = kSell ? p + w.row_len[b * 8 + r0] : w.ptr[b + 1];
  for (; p + U <= end; p += U) {
    PYSPARSE_UNROLL for (int u = 0; u < U; ++u) step(u, p + u);
  }
  for (; p < end; ++p) step(0, p);

  alignas(32) float out[RB][8 * V];
  PYSPARSE_UNROLL for (int r = 0; r < RB; ++r) {
    const float bias = (a.bias != nullptr && r < rows_pass) ? a.bias[row0 + r] : 0.0f;
    PYSPARSE_UNROLL for (int t = 0; t < V; ++t) {
      __m256 s = acc[0][r][t];
      PYSPARSE_UNROLL for (int u = 1; u < U; ++u) s = _mm256_add_ps(s, acc[u][r][t]);
      _mm256_store_ps(&out[r][8 * t], _mm256_add_ps(s, _mm256_set1_ps(bias)));
    }
  }
  if (!kMasked && a.y_cs == 1 && rows_pass == RB) {
    PYSPARSE_UNROLL for (int r = 0; r < RB; ++r)
      PYSPARSE_UNROLL for (int t = 0; t < V; ++t)
        _mm256_storeu_ps(a.y + (row0 + r) * a.y_rs + j + 8 * t, _mm256_load_ps(&out[r][8 * t]));
  } else {
    write_tile(a, row0, rows_pass, j, kMasked ? count : 8 * V, &out[0][0], 8 * V);
  }
}

// Columns [j, n) of one pass, widest tile first.
template <class Index, int R, int RB, int V, bool kC1, bool kSell = false>
inline void columns(const SpmmArgs& a, int64_t b, int r0, int rows_pass, int64_t j) {
  for (; j + 8 * V <= a.n; j += 8 * V) tile<Index, R, RB, V, kC1, false, kSell>(a, b, r0, rows_pass, j, 8 * V);
  if constexpr (V > 1) {
    columns<Index, R, RB, V / 2, kC1, kSell>(a, b, r0, rows_pass, j);
  } else {
    if (j < a.n) tile<Index, R, RB, 1, kC1, true, kSell>(a, b, r0, rows_pass, j, a.n - j);
  }
}

// Dense-ish CSR rows (about 20% of weights kept or more) at n >= 32 with a
// long K: the tiles above pull a 128-byte row of X from L2 for every weight
// (X^T is K x n floats, 384 KB for K = 3072, n = 32), and L2 -> L1 bandwidth,
// not the FMAs, sets the pace. Here X is taken in panels of kPanelCols rows
// (32 KB at 32 columns, L1-sized) and up to kPanelRows rows of W at a time:
// each row's run of weights inside the panel adds into its 32-column partial
// sums, kept in an L1 tile between panels. Measured at n = 32 (Zen 4, same
// process, interleaved): 768x3072 at 50% 1922 -> 1439 us, 3072x768 at 50%
// 2005 -> 1777 us; at 10% the runs are too short (~25 weights per row and
// panel) and it is 1.2-2x slower, hence the gate on the run length.
//
// The gate is decided per ROW, from that row's own nonzero count: the two
// paths add a row's products in different orders, so a choice made per thread
// part (as it once was) let the partition, and so the thread count, change a
// row's last bits. Per row, every thread count runs every row the same way.
constexpr int64_t kPanelCols = 256;
constexpr int64_t kPanelRows = 32;
constexpr int64_t kMinPanelRun = 48;

// Nonzeros from which a row runs in panels at this n and K; 0: never.
int64_t panel_threshold(const SpmmArgs& a) {
  const SparseView& w = *a.w;
  if (a.n < 32 || w.cols < 2 * kPanelCols) return 0;
  return kMinPanelRun * ((w.cols + kPanelCols - 1) / kPanelCols);
}

// Columns [0, n32) of Y (n32 a multiple of 32) for CSR rows [row_begin, row_end).
template <class Index>
void csr_panels(const SpmmArgs& a, int64_t n32, int64_t row_begin, int64_t row_end) {
  constexpr int V = 4;  // 32 columns
  const SparseView& w = *a.w;
  const Index* idx = static_cast<const Index*>(w.idx);
  const float* val = w.values;
  alignas(32) float part[kPanelRows][8 * V];
  int64_t cur[kPanelRows];
  for (int64_t r0 = row_begin; r0 < row_end; r0 += kPanelRows) {
    const int rc = static_cast<int>(std::min<int64_t>(kPanelRows, row_end - r0));
    for (int64_t j0 = 0; j0 < n32; j0 += 8 * V) {
      const float* x = a.x + j0;
      for (int r = 0; r < rc; ++r) {
        cur[r] = w.ptr[r0 + r];
        const __m256 init = _mm256_set1_ps(a.bias != nullptr ? a.bias[r0 + r] : 0.0f);
        for (int t = 0; t < V; ++t) _mm256_store_ps(&part[r][8 * t], init);
      }
      for (int64_t k0 = 0; k0 < w.cols; k0 += kPanelCols) {
        const int64_t kend = k0 + kPanelCols;
        for (int r = 0; r < rc; ++r) {
          int64_t p = cur[r];
          const int64_t end = w.ptr[r0 + r + 1];
          if (p >= end || static_cast<int64_t>(idx[p]) >= kend) continue;
          __m256 acc[2][V];
          PYSPARSE_UNROLL for (int t = 0; t < V; ++t) {
            acc[0][t] = _mm256_load_ps(&part[r][8 * t]);
            acc[1][t] = _mm256_setzero_ps();
          }
          auto step = [&](int u, int64_t q) {
            const float* xk = x + static_cast<int64_t>(idx[q]) * a.ldx;
            const __m256 wv = _mm256_broadcast_ss(val + q);
            PYSPARSE_UNROLL for (int t = 0; t < V; ++t)
              acc[u][t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xk + 8 * t), acc[u][t]);
          };
          for (; p + 2 <= end && static_cast<int64_t>(idx[p + 1]) < kend; p += 2) {
            step(0, p);
            step(1, p + 1);
          }
          if (p < end && static_cast<int64_t>(idx[p]) < kend) step(0, p++);
          PYSPARSE_UNROLL for (int t = 0; t < V; ++t) _mm256_store_ps(&part[r][8 * t], _mm256_add_ps(acc[0][t], acc[1][t]));
          cur[r] = p;
        }
      }
      write_tile(a, r0, rc, j0, 8 * V, &part[0][0], 8 * V);
    }
  }
}

template <class Index, int R, bool kC1>
void spmm_nx(const SpmmArgs& a) {
  constexpr int RB = R < 8 ? R : 8;
  constexpr int V = 8 / RB;
  auto tiles = [&](int64_t b0, int64_t b1, int64_t j) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t rows_left = a.w->rows - b * R;
      for (int r0 = 0; r0 < R && r0 < rows_left; r0 += RB) {
        const int rows_pass = static_cast<int>(std::min<int64_t>(RB, rows_left - r0));
        columns<Index, R, RB, V, kC1>(a, b, r0, rows_pass, j);
      }
    }
  };
  if constexpr (R == 1 && kC1) {
    const int64_t need = panel_threshold(a);
    if (need > 0) {
      // Runs of consecutive rows on the same side of the gate.
      const int64_t* ptr = a.w->ptr;
      const int64_t n32 = a.n / 32 * 32;
      auto dense = [&](int64_t i) { return ptr[i + 1] - ptr[i] >= need; };
      for (int64_t b0 = a.block_begin; b0 < a.block_end;) {
        const bool d = dense(b0);
        int64_t b1 = b0 + 1;
        while (b1 < a.block_end && dense(b1) == d) ++b1;
        if (d) {
          csr_panels<Index>(a, n32, b0, b1);
          if (n32 < a.n) tiles(b0, b1, n32);
        } else {
          tiles(b0, b1, 0);
        }
        b0 = b1;
      }
      return;
    }
  }
  tiles(a.block_begin, a.block_end, 0);
}

// SELL: each lane of a slice is one CSR-like row at stride 8 (same tiles).
template <class Index>
void sell_nx(const SpmmArgs& a) {
  for (int64_t s = a.block_begin; s < a.block_end; ++s)
    for (int l = 0; l < 8; ++l)
      if (a.w->row_of[s * 8 + l] >= 0) columns<Index, 1, 1, 8, true, true>(a, s, l, 1, 0);
}

template <int R>
void run(const SpmmArgs& a) {
  const bool c1 = a.w->block_c == 1;
  if (a.w->index_width == IndexWidth::u16) {
    c1 ? spmm_nx<uint16_t, R, true>(a) : spmm_nx<uint16_t, R, false>(a);
  } else {
    c1 ? spmm_nx<uint32_t, R, true>(a) : spmm_nx<uint32_t, R, false>(a);
  }
}

}  // namespace

void f32_spmm_csr_nx__avx2(const SpmmArgs& a) { run<1>(a); }
void f32_spmm_sell_nx__avx2(const SpmmArgs& a) {
  a.w->index_width == IndexWidth::u16 ? sell_nx<uint16_t>(a) : sell_nx<uint32_t>(a);
}
void f32_spmm_bsr_1xc_nx__avx2(const SpmmArgs& a) { run<1>(a); }
void f32_spmm_bsr_2xc_nx__avx2(const SpmmArgs& a) { run<2>(a); }
void f32_spmm_bsr_4xc_nx__avx2(const SpmmArgs& a) { run<4>(a); }
void f32_spmm_bsr_8xc_nx__avx2(const SpmmArgs& a) { run<8>(a); }
void f32_spmm_bsr_16xc_nx__avx2(const SpmmArgs& a) { run<16>(a); }

}  // namespace pysparse
