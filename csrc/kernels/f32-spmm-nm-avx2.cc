// N:M SpMM, AVX2 + FMA (layout in formats.h: 8 rows interleaved, N slots per
// group of M <= 8 inputs, uint8 offsets inside the group).
//
// Batch 1 is where N:M pays: a group's M inputs fit in one register, so the 8
// rows' inputs for a slot come from one vpermps (offsets widened from 8 bytes)
// instead of eight scalar loads. Per slot: 8-byte offset load, value load,
// permute, FMA for 8 nonzeros, no gather, no horizontal sum, no row tails. At
// 2:4 a weight costs 2.5 bytes (4-byte value + 1-byte offset, half of them
// kept) against dense's 4, so the layer beats dense even at 50% sparsity.
//
// Wider batches broadcast each kept weight against a row of X, like CSR, with
// tiles of 32/16/8 columns, U-way unrolled so there are 8 FMA chains.
//
// Contract: ldx == 1 for n1. The last group, when M does not divide K, is read
// with a masked load; every x load is within [0, K). Zero slots (offset 0)
// multiply x[g * M] by 0 like a dense product. Nothing written past row M.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels.h"

namespace pysparse {
namespace {

inline __m256i lanes_below(int64_t count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Inputs of one full group in the low M lanes (the rest are never selected).
template <int M>
inline __m256 load_group(const float* p) {
  if constexpr (M == 8) {
    return _mm256_loadu_ps(p);
  } else if constexpr (M == 4) {
    return _mm256_castps128_ps256(_mm_loadu_ps(p));
  } else {
    return _mm256_castps128_ps256(_mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(p))));
  }
}

template <int M>
void nm_n1(const SpmmArgs& a) {
  const SparseView& w = *a.w;
  const int64_t G = w.nm_groups(), N = w.nm_n, K = w.cols;
  const int64_t full = K / M;  // groups with all M inputs present
  const float* x = a.x;
  for (int64_t b = a.block_begin; b < a.block_end; ++b) {
    const float* v = w.values + b * G * N * 8;
    const uint8_t* o = w.idx8() + b * G * N * 8;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (int64_t g = 0; g < G; ++g) {
      const __m256 xg = g < full ? load_group<M>(x + g * M) : _mm256_maskload_ps(x + g * M, lanes_below(K - g * M));
      int64_t s = 0;
      for (; s + 2 <= N; s += 2, v += 16, o += 16) {
        const __m256i i0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(o)));
        const __m256i i1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(o + 8)));
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(v), _mm256_permutevar8x32_ps(xg, i0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(v + 8), _mm256_permutevar8x32_ps(xg, i1), acc1);
      }
      if (s < N) {
        const __m256i i0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(o)));
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(v), _mm256_permutevar8x32_ps(xg, i0), acc0);
        v += 8;
        o += 8;
      }
    }
    const int64_t row0 = b * 8;
    const int64_t rows_here = std::min<int64_t>(8, w.rows - row0);
    const __m256i keep = lanes_below(rows_here);
    __m256 s = _mm256_add_ps(acc0, acc1);
    if (a.bias != nullptr) s = _mm256_add_ps(s, _mm256_maskload_ps(a.bias + row0, keep));
    if (a.y_rs == 1) {
      _mm256_maskstore_ps(a.y + row0, keep, s);
    } else {
      alignas(32) float out[8];
      _mm256_store_ps(out, s);
      for (int64_t r = 0; r < rows_here; ++r) a.y[(row0 + r) * a.y_rs] = out[r];
    }
  }
}

// Row `i` (lane `lane` of block row b), columns [j, j + 8 V) (or `count` < 8
// columns when kMasked).
template <int V, bool kMasked>
inline void nm_tile(const SpmmArgs& a, int64_t b, int lane, int64_t j, int64_t count) {
  constexpr int U = 8 / V;
  const SparseView& w = *a.w;
  const int64_t G = w.nm_groups(), N = w.nm_n, M = w.nm_m();
  const int64_t i = b * 8 + lane;
  const __m256i mask = kMasked ? lanes_below(count) : _mm256_setzero_si256();
  __m256 acc[U][V];
  for (int u = 0; u < U; ++u)
    for (int t = 0; t < V; ++t) acc[u][t] = _mm256_setzero_ps();
  const int64_t slots = G * N;
  const float* v = w.values + b * slots * 8 + lane;
  const uint8_t* o = w.idx8() + b * slots * 8 + lane;
  const float* x = a.x + j;
  int64_t g = 0, s = 0;  // group and slot of q, stepped along (no division)
  auto step = [&](int u, int64_t q) {
    const float* xk = x + (g * M + o[q * 8]) * a.ldx;
    const __m256 wv = _mm256_set1_ps(v[q * 8]);
    for (int t = 0; t < V; ++t) {
      const __m256 xv = kMasked ? _mm256_maskload_ps(xk, mask) : _mm256_loadu_ps(xk + 8 * t);
      acc[u][t] = _mm256_fmadd_ps(wv, xv, acc[u][t]);
    }
    if (++s == N) {
      s = 0;
      ++g;
    }
  };
  int64_t q = 0;
  for (; q + U <= slots; q += U)
    for (int u = 0; u < U; ++u) step(u, q + u);
  for (; q < slots; ++q) step(0, q);
  const float bias = a.bias != nullptr ? a.bias[i] : 0.0f;
  alignas(32) float out[8 * V];
  for (int t = 0; t < V; ++t) {
    __m256 s = acc[0][t];
    for (int u = 1; u < U; ++u) s = _mm256_add_ps(s, acc[u][t]);
    _mm256_store_ps(out + 8 * t, _mm256_add_ps(s, _mm256_set1_ps(bias)));
  }
  float* yr = a.y + i * a.y_rs + j * a.y_cs;
  const int64_t cols = kMasked ? count : 8 * V;
  for (int64_t u = 0; u < cols; ++u) yr[u * a.y_cs] = out[u];
}

void nm_nx(const SpmmArgs& a) {
  const SparseView& w = *a.w;
  for (int64_t b = a.block_begin; b < a.block_end; ++b) {
    const int rows_here = static_cast<int>(std::min<int64_t>(8, w.rows - b * 8));
    for (int lane = 0; lane < rows_here; ++lane) {
      int64_t j = 0;
      // Widest tile first, then at most one of each narrower width: 16 columns are
      // one pass over the row's weights, not two (2x faster at 16 tokens).
      for (; j + 32 <= a.n; j += 32) nm_tile<4, false>(a, b, lane, j, 32);
      if (j + 16 <= a.n) {
        nm_tile<2, false>(a, b, lane, j, 16);
        j += 16;
      }
      if (j + 8 <= a.n) {
        nm_tile<1, false>(a, b, lane, j, 8);
        j += 8;
      }
      if (j < a.n) nm_tile<1, true>(a, b, lane, j, a.n - j);
    }
  }
}

}  // namespace

void f32_spmm_nm_8xm_n1__avx2(const SpmmArgs& a) {
  switch (a.w->nm_m()) {
    case 2: nm_n1<2>(a); break;
    case 4: nm_n1<4>(a); break;
    default: nm_n1<8>(a); break;
  }
}

void f32_spmm_nm_8xm_nx__avx2(const SpmmArgs& a) { nm_nx(a); }

}  // namespace pysparse
