// BSR (R x C blocks), AVX2 + FMA. Batch 1 here, vectorised across output rows;
// any batch: the shared tile engine (spmm-nx.inl), entry points at the end.
//
// The R weights of one block column share one input, so a block costs one
// broadcast of x[k] and one R-wide FMA: no gathers and no horizontal sums. This
// is the layout the (R, 1) pruning pattern exists for; at batch 1 it streams
// 4 bytes per weight plus 2 per block of index.
//
// C == 1 blocks are unrolled by 4 with independent accumulators so FMA latency
// is hidden; C > 1 walks the block's columns in order.
//
// Contract: ldx == 1. Reads values of stored blocks only (the zero rows of an
// overhanging last block row are stored, never written to y). y is written with
// a full vector store only when all R rows exist and y_rs == 1; otherwise row by
// row. No alignment required.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels.h"
#include "kernels/simd-avx2.h"

namespace pysparse {
namespace {

// NV 8-float vectors per block column (R = 8 * NV).
template <class Index, int NV, bool kC1>
void bsr_n1_ymm(const SpmmArgs& a) {
  constexpr int R = 8 * NV;
  const SparseView& w = *a.w;
  const Index* idx = static_cast<const Index*>(w.idx);
  const float* x = a.x;
  const int64_t C = kC1 ? 1 : w.block_c;
  for (int64_t b = a.block_begin; b < a.block_end; ++b) {
    const int64_t row0 = b * R;
    const int rows_here = static_cast<int>(std::min<int64_t>(R, w.rows - row0));
    __m256 acc[4][NV];
    for (int u = 0; u < 4; ++u)
      for (int v = 0; v < NV; ++v) acc[u][v] = _mm256_setzero_ps();
    int64_t p = w.ptr[b];
    const int64_t end = w.ptr[b + 1];
    const float* val = w.values + p * R * C;
    if (kC1) {
      for (; p + 4 <= end; p += 4, val += 4 * R) {
        for (int u = 0; u < 4; ++u) {
          const __m256 xv = _mm256_broadcast_ss(x + idx[p + u]);
          for (int v = 0; v < NV; ++v)
            acc[u][v] = _mm256_fmadd_ps(_mm256_loadu_ps(val + u * R + 8 * v), xv, acc[u][v]);
        }
      }
    }
    for (; p < end; ++p) {
      const int64_t col = idx[p];
      for (int64_t c = 0; c < C; ++c, val += R) {
        const __m256 xv = _mm256_broadcast_ss(x + col + c);
        for (int v = 0; v < NV; ++v)
          acc[0][v] = _mm256_fmadd_ps(_mm256_loadu_ps(val + 8 * v), xv, acc[0][v]);
      }
    }
    float out[R];
    for (int v = 0; v < NV; ++v) {
      __m256 s = _mm256_add_ps(_mm256_add_ps(acc[0][v], acc[1][v]), _mm256_add_ps(acc[2][v], acc[3][v]));
      if (a.bias != nullptr && rows_here == R) s = _mm256_add_ps(s, _mm256_loadu_ps(a.bias + row0 + 8 * v));
      if (rows_here == R && a.y_rs == 1) {
        _mm256_storeu_ps(a.y + row0 + 8 * v, s);
      } else {
        _mm256_storeu_ps(out + 8 * v, s);
      }
    }
    if (rows_here != R || a.y_rs != 1) {
      const bool add_bias = a.bias != nullptr && rows_here != R;
      for (int r = 0; r < rows_here; ++r) a.y[(row0 + r) * a.y_rs] = out[r] + (add_bias ? a.bias[row0 + r] : 0.0f);
    }
  }
}

template <class Index, bool kC1>
void bsr4_n1(const SpmmArgs& a) {
  constexpr int R = 4;
  const SparseView& w = *a.w;
  const Index* idx = static_cast<const Index*>(w.idx);
  const float* x = a.x;
  const int64_t C = kC1 ? 1 : w.block_c;
  for (int64_t b = a.block_begin; b < a.block_end; ++b) {
    const int64_t row0 = b * R;
    const int rows_here = static_cast<int>(std::min<int64_t>(R, w.rows - row0));
    __m128 acc0 = _mm_setzero_ps(), acc1 = _mm_setzero_ps(), acc2 = _mm_setzero_ps(), acc3 = _mm_setzero_ps();
    int64_t p = w.ptr[b];
    const int64_t end = w.ptr[b + 1];
    const float* val = w.values + p * R * C;
    if (kC1) {
      for (; p + 4 <= end; p += 4, val += 16) {
        acc0 = _mm_fmadd_ps(_mm_loadu_ps(val + 0), _mm_broadcast_ss(x + idx[p + 0]), acc0);
        acc1 = _mm_fmadd_ps(_mm_loadu_ps(val + 4), _mm_broadcast_ss(x + idx[p + 1]), acc1);
        acc2 = _mm_fmadd_ps(_mm_loadu_ps(val + 8), _mm_broadcast_ss(x + idx[p + 2]), acc2);
        acc3 = _mm_fmadd_ps(_mm_loadu_ps(val + 12), _mm_broadcast_ss(x + idx[p + 3]), acc3);
      }
    }
    for (; p < end; ++p) {
      const int64_t col = idx[p];
      for (int64_t c = 0; c < C; ++c, val += R)
        acc0 = _mm_fmadd_ps(_mm_loadu_ps(val), _mm_broadcast_ss(x + col + c), acc0);
    }
    __m128 s = _mm_add_ps(_mm_add_ps(acc0, acc1), _mm_add_ps(acc2, acc3));
    float out[R];
    _mm_storeu_ps(out, s);
    for (int r = 0; r < rows_here; ++r)
      a.y[(row0 + r) * a.y_rs] = out[r] + (a.bias != nullptr ? a.bias[row0 + r] : 0.0f);
  }
}


template <int NV>
void run_ymm(const SpmmArgs& a) {
  const bool c1 = a.w->block_c == 1;
  with_index(*a.w, [&](auto index) {
    using Index = decltype(index);
    c1 ? bsr_n1_ymm<Index, NV, true>(a) : bsr_n1_ymm<Index, NV, false>(a);
  });
}

#include "kernels/spmm-nx.inl"

}  // namespace

void f32_spmm_bsr_4xc_n1__avx2(const SpmmArgs& a) {
  const bool c1 = a.w->block_c == 1;
  with_index(*a.w, [&](auto index) {
    using Index = decltype(index);
    c1 ? bsr4_n1<Index, true>(a) : bsr4_n1<Index, false>(a);
  });
}
void f32_spmm_bsr_8xc_n1__avx2(const SpmmArgs& a) { run_ymm<1>(a); }
void f32_spmm_bsr_16xc_n1__avx2(const SpmmArgs& a) { run_ymm<2>(a); }

void f32_spmm_bsr_1xc_nx__avx2(const SpmmArgs& a) { nx::run<Avx2, 1>(a); }
void f32_spmm_bsr_2xc_nx__avx2(const SpmmArgs& a) { nx::run<Avx2, 2>(a); }
void f32_spmm_bsr_4xc_nx__avx2(const SpmmArgs& a) { nx::run<Avx2, 4>(a); }
void f32_spmm_bsr_8xc_nx__avx2(const SpmmArgs& a) { nx::run<Avx2, 8>(a); }
void f32_spmm_bsr_16xc_nx__avx2(const SpmmArgs& a) { nx::run<Avx2, 16>(a); }

}  // namespace pysparse
