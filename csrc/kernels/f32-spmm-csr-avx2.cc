// CSR, batch 1, AVX2 + FMA: y[i] = sum_p values[p] * x[idx[p]] (+ bias[i]).
//
// Unstructured sparsity leaves a row nothing to reuse, so the kernel is a
// stream of (index, value) pairs and the question is how cheaply eight x[idx]
// become one vector. vgatherdps is the obvious answer and the wrong one here:
// on Zen 3 it costs ~16 cycles per 8 lanes, measured 1.4-1.5x slower than
// building the vector from eight scalar loads folded into vinsertps. The load
// ports are then the limit, so indices are fetched four at a time (one 64-bit
// load of uint16s, split by shifts on the otherwise idle integer ALUs): per 8
// nonzeros, 2 index loads + 8 x loads + 1 value load.
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
#include <cstring>

#include "kernels.h"

namespace pysparse {
namespace {

// x[ip[0..8)] as one vector from eight scalar loads. The kernel is bound by
// micro-ops, not by memory (it streams ~24 GB/s where L3 gives ~100 here), so
// each index costs one integer op: the low field by a zero-extending move, the
// top one by a shift, the middle two by BMI1 bextr (shift + mask in one op; a
// shift and a movzx before: 3-12% slower, measured on Zen 4).
inline __m256 load8(const float* x, const uint16_t* ip) {
  uint64_t a, b;
  std::memcpy(&a, ip, 8);
  std::memcpy(&b, ip + 4, 8);
  __m128 lo = _mm_load_ss(x + static_cast<uint16_t>(a));
  __m128 hi = _mm_load_ss(x + static_cast<uint16_t>(b));
  lo = _mm_insert_ps(lo, _mm_load_ss(x + _bextr_u64(a, 16, 16)), 0x10);
  hi = _mm_insert_ps(hi, _mm_load_ss(x + _bextr_u64(b, 16, 16)), 0x10);
  lo = _mm_insert_ps(lo, _mm_load_ss(x + _bextr_u64(a, 32, 16)), 0x20);
  hi = _mm_insert_ps(hi, _mm_load_ss(x + _bextr_u64(b, 32, 16)), 0x20);
  lo = _mm_insert_ps(lo, _mm_load_ss(x + (a >> 48)), 0x30);
  hi = _mm_insert_ps(hi, _mm_load_ss(x + (b >> 48)), 0x30);
  return _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
}

inline __m256 load8(const float* x, const uint32_t* ip) {
  uint64_t a, b, c, d;
  std::memcpy(&a, ip, 8);
  std::memcpy(&b, ip + 2, 8);
  std::memcpy(&c, ip + 4, 8);
  std::memcpy(&d, ip + 6, 8);
  __m128 lo = _mm_load_ss(x + (a & 0xFFFFFFFF));
  __m128 hi = _mm_load_ss(x + (c & 0xFFFFFFFF));
  lo = _mm_insert_ps(lo, _mm_load_ss(x + (a >> 32)), 0x10);
  hi = _mm_insert_ps(hi, _mm_load_ss(x + (c >> 32)), 0x10);
  lo = _mm_insert_ps(lo, _mm_load_ss(x + (b & 0xFFFFFFFF)), 0x20);
  hi = _mm_insert_ps(hi, _mm_load_ss(x + (d & 0xFFFFFFFF)), 0x20);
  lo = _mm_insert_ps(lo, _mm_load_ss(x + (b >> 32)), 0x30);
  hi = _mm_insert_ps(hi, _mm_load_ss(x + (d >> 32)), 0x30);
  return _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
}

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

// SELL-8-sigma (formats.h), batch 1: slot q feeds the slice's 8 rows with one
// value load, one 16-byte index load (as two 64-bit halves) and one FMA. What
// CSR pays per row -- a trip count that differs row to row (a mispredicted
// loop exit), a masked tail, a horizontal sum -- is gone: the 8 lanes share
// the slice's trip count, and sorting makes the next slice's nearly the same.
// Slots up to the shortest lane run unmasked in two accumulator chains; the
// rest (lanes already finished hold zeros at column 0) zero those lanes' x,
// so an inf at column 0 cannot leak into a row as 0 * inf.
// Measured against the CSR kernel above (same matrices, Zen 4, 1 thread, 90%
// random): 3072x768 58 -> 50 us, 768x3072 50 -> 45 us.
//
// Contract: ldx == 1. Reads exactly the slice's slots (padding included: zero
// values at column 0, in range). Writes y[row_of[lane] * y_rs] for the lanes
// that are rows. No alignment required.
template <class Index>
void sell_n1(const SpmmArgs& a) {
  const SparseView& w = *a.w;
  const Index* idx = static_cast<const Index*>(w.idx);
  const float* val = w.values;
  const float* x = a.x;
  const __m256i one = _mm256_set1_epi32(1);
  for (int64_t s = a.block_begin; s < a.block_end; ++s) {
    const int32_t* len = w.row_len + s * 8;
    int32_t shortest = len[0];
    for (int l = 1; l < 8; ++l) shortest = std::min(shortest, len[l]);
    int64_t p = w.ptr[s];
    const int64_t end = w.ptr[s + 1], full = p + shortest;
    __m256 acc0 = _mm256_setzero_ps();
    __m256 acc1 = _mm256_setzero_ps();
    for (; p + 2 <= full; p += 2) {
      acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(val + 8 * p), load8(x, idx + 8 * p), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(val + 8 * p + 8), load8(x, idx + 8 * p + 8), acc1);
    }
    if (p < full) {
      acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(val + 8 * p), load8(x, idx + 8 * p), acc0);
      ++p;
    }
    const __m256i lens = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(len));
    __m256i q = _mm256_set1_epi32(static_cast<int>(p - w.ptr[s]));
    for (; p < end; ++p, q = _mm256_add_epi32(q, one)) {
      const __m256 keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(lens, q));
      acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(val + 8 * p), _mm256_and_ps(load8(x, idx + 8 * p), keep), acc1);
    }
    alignas(32) float out[8];
    _mm256_store_ps(out, _mm256_add_ps(acc0, acc1));
    sell_store_slice(a, s, out);
  }
}

}  // namespace

void f32_spmm_sell_n1__avx2(const SpmmArgs& a) {
  if (a.w->index_width == IndexWidth::u16) {
    sell_n1<uint16_t>(a);
  } else {
    sell_n1<uint32_t>(a);
  }
}

void f32_spmm_csr_n1__avx2(const SpmmArgs& a) {
  if (a.w->index_width == IndexWidth::u16) {
    csr_n1<uint16_t>(a);
  } else {
    csr_n1<uint32_t>(a);
  }
}

}  // namespace pysparse
