// CSR, AVX2 + FMA. Batch 1 here: y[i] = sum_p values[p] * x[idx[p]] (+ bias[i]);
// any batch: the shared tile engine (spmm-nx.inl), entry point at the end.
//
// Unstructured sparsity leaves a row nothing to reuse, so the kernel is a
// stream of (index, value) pairs and the question is how cheaply eight x[idx]
// become one vector: eight scalar loads, not a gather (gather-avx2.h says why).
//
// A row's last (< 8) nonzeros run as one more group of 8 whose extra lanes are
// zeroed in both vectors: in x, because the next row's columns may point at an
// inf or NaN input; in the values, because the next row's weights may be inf
// or NaN themselves (masking x alone turned them into 0 * inf = NaN in this
// row). One more AND per row; a row's result then depends only on its own
// products. Rows go eight at a time so their horizontal sums collapse in one
// hadd tree and one store.
//
// Contract: ldx == 1 (x is one contiguous column). Reads up to 7 entries of idx
// and values past a row's end: inside the next row, or inside the kIndexPad /
// kValuePad padding after the last one (formats.h); those indices are in range
// (validated, or zero padding) so every x load is in bounds. No alignment
// required.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels.h"
#include "kernels/gather-avx2.h"
#include "kernels/simd-avx2.h"

namespace pysparse {
namespace {

// The 8 partial sums of row i's dot product.
template <class Index>
inline __m256 row_dot(const int64_t* ptr, const Index* idx, const float* val, const float* x, int64_t i) {
  int64_t p = ptr[i];
  const int64_t end = ptr[i + 1];
  __m256 acc0 = _mm256_setzero_ps();
  __m256 acc1 = _mm256_setzero_ps();
  for (; p + 16 <= end; p += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(val + p), load8(x, idx + p), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(val + p + 8), load8(x, idx + p + 8), acc1);
  }
  if (p + 8 <= end) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(val + p), load8(x, idx + p), acc0);
    p += 8;
  }
  if (p < end) {
    const __m256 keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(
        _mm256_set1_epi32(static_cast<int>(end - p)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
    acc1 = _mm256_fmadd_ps(_mm256_and_ps(_mm256_loadu_ps(val + p), keep), _mm256_and_ps(load8(x, idx + p), keep),
                           acc1);
  }
  return _mm256_add_ps(acc0, acc1);
}

// Both reductions add in the same order, ((e0+e1)+(e2+e3)) + ((e4+e5)+(e6+e7)),
// so a row's result does not depend on whether it fell in a group of 8: results
// are bitwise identical for every thread count (tested).
inline float hsum(__m256 v) {
  const __m256 t = _mm256_hadd_ps(v, v);
  const __m256 u = _mm256_hadd_ps(t, t);
  return _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1)));
}

// [hsum(v0), ..., hsum(v7)]
inline __m256 hsum8(__m256 v0, __m256 v1, __m256 v2, __m256 v3, __m256 v4, __m256 v5, __m256 v6, __m256 v7) {
  const __m256 t0 = _mm256_hadd_ps(v0, v1), t1 = _mm256_hadd_ps(v2, v3);
  const __m256 t2 = _mm256_hadd_ps(v4, v5), t3 = _mm256_hadd_ps(v6, v7);
  const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

template <class Index>
void csr_n1(const SpmmArgs& a) {
  const SparseView& w = *a.w;
  const Index* idx = static_cast<const Index*>(w.idx);
  const float* val = w.values;
  const float* x = a.x;
  int64_t i = a.block_begin;
  for (; i + 8 <= a.block_end; i += 8) {
    const __m256 d0 = row_dot(w.ptr, idx, val, x, i + 0), d1 = row_dot(w.ptr, idx, val, x, i + 1);
    const __m256 d2 = row_dot(w.ptr, idx, val, x, i + 2), d3 = row_dot(w.ptr, idx, val, x, i + 3);
    const __m256 d4 = row_dot(w.ptr, idx, val, x, i + 4), d5 = row_dot(w.ptr, idx, val, x, i + 5);
    const __m256 d6 = row_dot(w.ptr, idx, val, x, i + 6), d7 = row_dot(w.ptr, idx, val, x, i + 7);
    __m256 s = hsum8(d0, d1, d2, d3, d4, d5, d6, d7);
    if (a.bias != nullptr) s = _mm256_add_ps(s, _mm256_loadu_ps(a.bias + i));
    if (a.y_rs == 1) {
      _mm256_storeu_ps(a.y + i, s);
    } else {
      alignas(32) float out[8];
      _mm256_store_ps(out, s);
      for (int r = 0; r < 8; ++r) a.y[(i + r) * a.y_rs] = out[r];
    }
  }
  for (; i < a.block_end; ++i) {
    float s = hsum(row_dot(w.ptr, idx, val, x, i));
    if (a.bias != nullptr) s += a.bias[i];
    a.y[i * a.y_rs] = s;
  }
}

#include "kernels/spmm-nx.inl"

}  // namespace

void f32_spmm_csr_n1__avx2(const SpmmArgs& a) {
  with_index(*a.w, [&](auto index) { csr_n1<decltype(index)>(a); });
}

void f32_spmm_csr_nx__avx2(const SpmmArgs& a) { nx::run<Avx2, 1>(a); }

}  // namespace pysparse
