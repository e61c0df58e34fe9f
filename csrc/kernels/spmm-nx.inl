// CSR, BSR and SELL at any batch: the tile engine, written once over vector
// traits S (simd-avx512.h: 16 floats; simd-avx2.h: 8; simd-neon.h: 4). Each ISA's kernel files
// include this after their traits header and define their entry points as
// nx::run<S, R>(args) / nx::sell<S>(args); the code below is compiled once per
// ISA file, with that file's flags.
//
// Each stored weight w multiplies a row of X: Y[i, j..j+W) += w * X[k, j..j+W).
// A register tile covers RB output rows x NV vectors. FMA latency is 4 cycles
// and two issue per cycle, so a tile needs 8 independent accumulator chains to
// run at full rate: when RB * NV < 8 the loop over stored blocks is unrolled
// U = 8 / (RB * NV) times with U separate accumulator sets, summed once at the
// end. Tiles are as wide as the batch allows (NV = S::kTileAcc / RB, then
// halving down to one vector), so batch 32 in CSR on AVX2 is one 1 x 32 tile
// with U = 2, not four passes of one chain each. kTileAcc is 8 where there are
// 16 registers (AVX2, NEON), 16 with AVX-512's 32: a (4, 1) block row at 128
// columns is two passes of 4 x 64 there, not eight of 4 x 16 as on AVX2, so
// each pass over the block row's indices and weights feeds 4x the FMAs. Blocks
// of R = 16 rows take two passes of 8. Per block column a tile does NV loads of X and RB broadcasts of weights
// for RB * NV FMAs, so it is FMA-bound while X's rows stay in L1/L2. The last
// < W columns run as one masked vector where the ISA has masked loads (AVX2's
// vmaskmov, AVX-512's opmasks), scalar otherwise (NEON).
//
// Accumulators live in registers only: the epilogue copies them to a stack
// buffer once per tile and writes Y from there, so no runtime-indexed access to
// the accumulator array can force it into memory inside the hot loop.
//
// Contract: X rows are contiguous along n; any ldx >= 1 (rows may overlap when
// ldx < n: the direct convolution runs these kernels with ldx == 1, indices as
// offsets into one padded image). Y's columns may be strided (y_cs != 1, used
// by `linear`, which writes Y^T straight into the (batch, M) output). Nothing
// is read or written outside n columns. No alignment required.
//
// Needs <algorithm>, <cstdint>, kernels.h and one simd-*.h before it.

namespace nx {

#define PYSPARSE_UNROLL _Pragma("GCC unroll 16")

// Writes rows [0, rows) x cols [0, cols) of out (row stride ldo) to Y at
// (row0, j). Not a template: one copy serves every tile shape.
inline void write_tile(const SpmmArgs& a, int64_t row0, int rows, int64_t j, int64_t cols, const float* out, int ldo) {
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

// kSell: b is a SELL slice and r0 its lane (R == RB == 1, C == 1): the lane's
// row_len weights from slot ptr[b] on, at stride 8; its row is row_of.
template <bool kSell>
inline int64_t first_row(const SparseView& w, int64_t b, int R, int r0) {
  return kSell ? w.row_of[b * 8 + r0] : b * R + r0;
}
template <bool kSell>
inline int64_t block_end(const SparseView& w, int64_t b, int r0) {
  return kSell ? w.ptr[b] + w.row_len[b * 8 + r0] : w.ptr[b + 1];
}

// One register tile: rows [r0, r0 + RB) of block row b, columns [j, j + W NV).
// kMasked: NV == 1 and only `count` (< W) columns exist (S::kMaskedTail only).
template <class S, class Index, int R, int RB, int NV, bool kC1, bool kMasked, bool kSell>
inline void tile(const SpmmArgs& a, int64_t b, int r0, int rows_pass, int64_t j, int64_t count) {
  using V = typename S::V;
  constexpr int W = S::kWidth;
  constexpr int U = (RB * NV >= 8) ? 1 : 8 / (RB * NV);
  constexpr int64_t St = kSell ? 8 : 1;  // stride between a row's stored weights
  const SparseView& w = *a.w;
  const Index* idx = static_cast<const Index*>(w.idx) + (kSell ? r0 : 0);
  const int64_t C = kC1 ? 1 : w.block_c;
  const int64_t ldx = a.ldx;
  const float* x = a.x + j;
  const float* values = w.values + r0;
  const int64_t row0 = first_row<kSell>(w, b, R, r0);
  [[maybe_unused]] const auto mask = [&] {
    if constexpr (kMasked) return S::first(count);
    else return 0;
  }();

  V acc[U][RB][NV];
  PYSPARSE_UNROLL for (int u = 0; u < U; ++u)
    PYSPARSE_UNROLL for (int r = 0; r < RB; ++r)
      PYSPARSE_UNROLL for (int t = 0; t < NV; ++t) acc[u][r][t] = S::zero();

  // acc[u] += block p's columns times X's rows.
  auto step = [&](int u, int64_t p) {
    const float* xk = x + static_cast<int64_t>(idx[p * St]) * ldx;
    const float* vp = values + p * R * C * St;
    for (int64_t c = 0; c < C; ++c, xk += ldx, vp += R) {
      V xv[NV];
      PYSPARSE_UNROLL for (int t = 0; t < NV; ++t) {
        if constexpr (kMasked) xv[t] = S::load_first(xk, mask);
        else xv[t] = S::load(xk + W * t);
      }
      PYSPARSE_UNROLL for (int r = 0; r < RB; ++r) {
        const V wv = S::broadcast(vp + r);
        PYSPARSE_UNROLL for (int t = 0; t < NV; ++t) acc[u][r][t] = S::fma(wv, xv[t], acc[u][r][t]);
      }
    }
  };
  int64_t p = w.ptr[b];
  const int64_t end = block_end<kSell>(w, b, r0);
  for (; p + U <= end; p += U) {
    PYSPARSE_UNROLL for (int u = 0; u < U; ++u) step(u, p + u);
  }
  for (; p < end; ++p) step(0, p);

  alignas(64) float out[RB][W * NV];
  PYSPARSE_UNROLL for (int r = 0; r < RB; ++r) {
    const float bias = (a.bias != nullptr && r < rows_pass) ? a.bias[row0 + r] : 0.0f;
    PYSPARSE_UNROLL for (int t = 0; t < NV; ++t) {
      V s = acc[0][r][t];
      PYSPARSE_UNROLL for (int u = 1; u < U; ++u) s = S::add(s, acc[u][r][t]);
      S::store_aligned(&out[r][W * t], S::add(s, S::set1(bias)));
    }
  }
  if (!kMasked && a.y_cs == 1 && rows_pass == RB) {
    PYSPARSE_UNROLL for (int r = 0; r < RB; ++r)
      PYSPARSE_UNROLL for (int t = 0; t < NV; ++t)
        S::store(a.y + (row0 + r) * a.y_rs + j + W * t, S::load_aligned(&out[r][W * t]));
  } else {
    write_tile(a, row0, rows_pass, j, kMasked ? count : W * NV, &out[0][0], W * NV);
  }
}

// Columns [j, n) scalar: the tail of an ISA without masked loads.
template <class Index, int R, bool kSell>
void scalar_tail(const SpmmArgs& a, int64_t b, int r0, int rows_pass, int64_t j) {
  constexpr int64_t St = kSell ? 8 : 1;
  const SparseView& w = *a.w;
  const Index* idx = static_cast<const Index*>(w.idx) + (kSell ? r0 : 0);
  const int64_t C = w.block_c, end = block_end<kSell>(w, b, r0);
  for (int r = 0; r < rows_pass; ++r) {
    const int64_t i = first_row<kSell>(w, b, R, r0 + r);
    for (int64_t jj = j; jj < a.n; ++jj) {
      float s = a.bias != nullptr ? a.bias[i] : 0.0f;
      for (int64_t p = w.ptr[b]; p < end; ++p)
        for (int64_t c = 0; c < C; ++c)
          s += w.values[((p * C + c) * R + r) * St + r0] * a.x[(static_cast<int64_t>(idx[p * St]) + c) * a.ldx + jj];
      a.y[i * a.y_rs + jj * a.y_cs] = s;
    }
  }
}

// Columns [j, n) of one pass, widest tile first.
template <class S, class Index, int R, int RB, int NV, bool kC1, bool kSell = false>
inline void columns(const SpmmArgs& a, int64_t b, int r0, int rows_pass, int64_t j) {
  constexpr int W = S::kWidth;
  for (; j + W * NV <= a.n; j += W * NV) tile<S, Index, R, RB, NV, kC1, false, kSell>(a, b, r0, rows_pass, j, W * NV);
  if constexpr (NV > 1) {
    columns<S, Index, R, RB, NV / 2, kC1, kSell>(a, b, r0, rows_pass, j);
  } else if (j < a.n) {
    if constexpr (S::kMaskedTail) {
      tile<S, Index, R, RB, 1, kC1, true, kSell>(a, b, r0, rows_pass, j, a.n - j);
    } else {
      scalar_tail<Index, R, kSell>(a, b, r0, rows_pass, j);
    }
  }
}

// Dense-ish CSR rows (about 20% of weights kept or more) at n >= 32 with a
// long K: the tiles above pull a 128-byte row of X from L2 for every weight
// (X^T is K x n floats, 384 KB for K = 3072, n = 32), and L2 -> L1 bandwidth,
// not the FMAs, sets the pace. Here X is taken in panels of kPanelCols rows
// (32 KB at 32 columns, L1-sized) and up to kPanelRows rows of W at a time:
// each row's run of weights inside the panel adds into its 32-column partial
// sums, kept in an L1 tile between panels. Measured at n = 32 on AVX2 (Zen 4,
// same process, interleaved): 768x3072 at 50% 1922 -> 1439 us, 3072x768 at 50%
// 2005 -> 1777 us; at 10% the runs are too short (~25 weights per row and
// panel) and it is 1.2-2x slower, hence the gate on the run length. Only for
// traits with kPanels (not measured on an ARM core yet).
//
// The gate is decided per ROW, from that row's own nonzero count: the two
// paths add a row's products in different orders, so a choice made per thread
// part (as it once was) let the partition, and so the thread count, change a
// row's last bits. Per row, every thread count runs every row the same way.
constexpr int64_t kPanelCols = 256;
constexpr int64_t kPanelRows = 32;
constexpr int64_t kMinPanelRun = 48;

// Nonzeros from which a row runs in panels at this n and K; 0: never.
inline int64_t panel_threshold(const SpmmArgs& a) {
  const SparseView& w = *a.w;
  if (a.n < 32 || w.cols < 2 * kPanelCols) return 0;
  return kMinPanelRun * ((w.cols + kPanelCols - 1) / kPanelCols);
}

// Columns [0, n32) of Y (n32 a multiple of 32) for CSR rows [row_begin, row_end).
template <class S, class Index>
void csr_panels(const SpmmArgs& a, int64_t n32, int64_t row_begin, int64_t row_end) {
  using V = typename S::V;
  constexpr int W = S::kWidth;
  constexpr int NV = 32 / W;  // 32 columns
  const SparseView& w = *a.w;
  const Index* idx = static_cast<const Index*>(w.idx);
  const float* val = w.values;
  alignas(64) float part[kPanelRows][32];
  int64_t cur[kPanelRows];
  for (int64_t r0 = row_begin; r0 < row_end; r0 += kPanelRows) {
    const int rc = static_cast<int>(std::min<int64_t>(kPanelRows, row_end - r0));
    for (int64_t j0 = 0; j0 < n32; j0 += 32) {
      const float* x = a.x + j0;
      for (int r = 0; r < rc; ++r) {
        cur[r] = w.ptr[r0 + r];
        const V init = S::set1(a.bias != nullptr ? a.bias[r0 + r] : 0.0f);
        for (int t = 0; t < NV; ++t) S::store_aligned(&part[r][W * t], init);
      }
      for (int64_t k0 = 0; k0 < w.cols; k0 += kPanelCols) {
        const int64_t kend = k0 + kPanelCols;
        for (int r = 0; r < rc; ++r) {
          int64_t p = cur[r];
          const int64_t end = w.ptr[r0 + r + 1];
          if (p >= end || static_cast<int64_t>(idx[p]) >= kend) continue;
          V acc[2][NV];
          PYSPARSE_UNROLL for (int t = 0; t < NV; ++t) {
            acc[0][t] = S::load_aligned(&part[r][W * t]);
            acc[1][t] = S::zero();
          }
          auto step = [&](int u, int64_t q) {
            const float* xk = x + static_cast<int64_t>(idx[q]) * a.ldx;
            const V wv = S::broadcast(val + q);
            PYSPARSE_UNROLL for (int t = 0; t < NV; ++t) acc[u][t] = S::fma(wv, S::load(xk + W * t), acc[u][t]);
          };
          for (; p + 2 <= end && static_cast<int64_t>(idx[p + 1]) < kend; p += 2) {
            step(0, p);
            step(1, p + 1);
          }
          if (p < end && static_cast<int64_t>(idx[p]) < kend) step(0, p++);
          PYSPARSE_UNROLL for (int t = 0; t < NV; ++t) S::store_aligned(&part[r][W * t], S::add(acc[0][t], acc[1][t]));
          cur[r] = p;
        }
      }
      write_tile(a, r0, rc, j0, 32, &part[0][0], 32);
    }
  }
}

template <class S, class Index, int R, bool kC1>
void spmm_nx(const SpmmArgs& a) {
  constexpr int RB = R < 8 ? R : 8;
  constexpr int NV = S::kTileAcc / RB;
  // linear() splits the batch between threads at multiples of this (spmm.cc: token_quantum).
  static_assert(S::kWidth * NV == widths::widest_tile<typename S::Widths>(R), "simd-widths.h: widest_tile");
  auto tiles = [&](int64_t b0, int64_t b1, int64_t j) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t rows_left = a.w->rows - b * R;
      for (int r0 = 0; r0 < R && r0 < rows_left; r0 += RB) {
        const int rows_pass = static_cast<int>(std::min<int64_t>(RB, rows_left - r0));
        columns<S, Index, R, RB, NV, kC1>(a, b, r0, rows_pass, j);
      }
    }
  };
  if constexpr (R == 1 && kC1 && S::kPanels) {
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
          csr_panels<S, Index>(a, n32, b0, b1);
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

// CSR (R == 1) and BSR (R x C) at any batch.
template <class S, int R>
void run(const SpmmArgs& a) {
  const bool c1 = a.w->block_c == 1;
  with_index(*a.w, [&](auto index) {
    using Index = decltype(index);
    c1 ? spmm_nx<S, Index, R, true>(a) : spmm_nx<S, Index, R, false>(a);
  });
}

// SELL: each lane of a slice is one CSR-like row at stride 8 (same tiles).
template <class S>
void sell(const SpmmArgs& a) {
  with_index(*a.w, [&](auto index) {
    using Index = decltype(index);
    for (int64_t s = a.block_begin; s < a.block_end; ++s)
      for (int l = 0; l < 8; ++l)
        if (a.w->row_of[s * 8 + l] >= 0) columns<S, Index, 1, 1, S::kTileAcc, true, true>(a, s, l, 1, 0);
  static_assert(S::kWidth * S::kTileAcc == widths::widest_tile<typename S::Widths>(1), "simd-widths.h: widest_tile");
  });
}

#undef PYSPARSE_UNROLL

}  // namespace nx
