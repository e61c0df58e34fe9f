// CSR and BSR, any batch, AVX2 + FMA: vectorised across the columns of X.
//
// Each stored weight w multiplies a whole row of X: Y[i, j..j+8) += w * X[k, j..j+8).
// A register tile holds RB output rows x V vectors of 8 columns, always 8
// accumulators (RB * V == 8): 1 x 64, 2 x 32, 4 x 16 or 8 x 8. Per block column
// that is V loads of X and RB broadcasts of weights feeding 8 FMAs, so the tile
// is FMA-bound while X's rows stay in L1/L2. Blocks of R = 16 rows take two
// passes of 8. Columns left over after the wide tile go 8 at a time, then one
// masked vector.
//
// Contract: X rows are contiguous along n (ldx >= n). Y's columns may be strided
// (y_cs != 1 stores through a scratch vector, used by `linear`, which wants
// Y^T). Masked tails never touch X or Y outside n columns. No alignment required.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels.h"

namespace pysparse {
namespace {

inline __m256i tail_mask(int64_t count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// One register tile: rows [r0, r0 + RB) of block row b, columns [j, j + 8 V).
// kMasked: V == 1 and only `count` (< 8) columns exist.
template <class Index, int R, int RB, int V, bool kC1, bool kMasked>
inline void tile(const SpmmArgs& a, int64_t b, int r0, int rows_pass, int64_t j, int64_t count) {
  const SparseView& w = *a.w;
  const Index* idx = static_cast<const Index*>(w.idx);
  const int64_t C = kC1 ? 1 : w.block_c;
  const int64_t row0 = b * R + r0;
  const __m256i mask = kMasked ? tail_mask(count) : _mm256_setzero_si256();

  __m256 acc[RB][V];
  for (int r = 0; r < RB; ++r) {
    const float init = (a.bias != nullptr && r < rows_pass) ? a.bias[row0 + r] : 0.0f;
    for (int t = 0; t < V; ++t) acc[r][t] = _mm256_set1_ps(init);
  }
  const int64_t end = w.ptr[b + 1];
  for (int64_t p = w.ptr[b]; p < end; ++p) {
    const float* xk = a.x + static_cast<int64_t>(idx[p]) * a.ldx + j;
    const float* vp = w.values + p * R * C + r0;
    for (int64_t c = 0; c < C; ++c, xk += a.ldx, vp += R) {
      __m256 xv[V];
      for (int t = 0; t < V; ++t) xv[t] = kMasked ? _mm256_maskload_ps(xk, mask) : _mm256_loadu_ps(xk + 8 * t);
      for (int r = 0; r < RB; ++r) {
        const __m256 wv = _mm256_broadcast_ss(vp + r);
        for (int t = 0; t < V; ++t) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
      }
    }
  }
  for (int r = 0; r < RB; ++r) {
    if (r >= rows_pass) break;
    float* yr = a.y + (row0 + r) * a.y_rs + j * a.y_cs;
    for (int t = 0; t < V; ++t) {
      if (a.y_cs == 1) {
        if (kMasked) {
          _mm256_maskstore_ps(yr, mask, acc[r][t]);
        } else {
          _mm256_storeu_ps(yr + 8 * t, acc[r][t]);
        }
      } else {
        alignas(32) float tmp[8];
        _mm256_store_ps(tmp, acc[r][t]);
        const int64_t m = kMasked ? count : 8;
        for (int64_t u = 0; u < m; ++u) yr[(8 * t + u) * a.y_cs] = tmp[u];
      }
    }
  }
}

template <class Index, int R, bool kC1>
void spmm_nx(const SpmmArgs& a) {
  constexpr int RB = R < 8 ? R : 8;
  constexpr int V = 8 / RB;
  const int64_t n = a.n;
  for (int64_t b = a.block_begin; b < a.block_end; ++b) {
    const int64_t rows_left = a.w->rows - b * R;
    for (int r0 = 0; r0 < R && r0 < rows_left; r0 += RB) {
      const int rows_pass = static_cast<int>(std::min<int64_t>(RB, rows_left - r0));
      int64_t j = 0;
      if (V > 1) {
        for (; j + 8 * V <= n; j += 8 * V) tile<Index, R, RB, V, kC1, false>(a, b, r0, rows_pass, j, 8 * V);
      }
      for (; j + 8 <= n; j += 8) tile<Index, R, RB, 1, kC1, false>(a, b, r0, rows_pass, j, 8);
      if (j < n) tile<Index, R, RB, 1, kC1, true>(a, b, r0, rows_pass, j, n - j);
    }
  }
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
void f32_spmm_bsr_1xc_nx__avx2(const SpmmArgs& a) { run<1>(a); }
void f32_spmm_bsr_2xc_nx__avx2(const SpmmArgs& a) { run<2>(a); }
void f32_spmm_bsr_4xc_nx__avx2(const SpmmArgs& a) { run<4>(a); }
void f32_spmm_bsr_8xc_nx__avx2(const SpmmArgs& a) { run<8>(a); }
void f32_spmm_bsr_16xc_nx__avx2(const SpmmArgs& a) { run<16>(a); }

}  // namespace pysparse
