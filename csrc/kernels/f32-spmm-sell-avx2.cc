// SELL-8-sigma (formats.h), AVX2 + FMA: batch 1 below; any batch through the
// shared tile engine (spmm-nx.inl), each lane of a slice a CSR row at stride 8.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels.h"
#include "kernels/gather-avx2.h"
#include "kernels/sell-epilogue.h"
#include "kernels/simd-avx2.h"

namespace pysparse {
namespace {

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

#include "kernels/spmm-nx.inl"

}  // namespace

void f32_spmm_sell_n1__avx2(const SpmmArgs& a) {
  with_index(*a.w, [&](auto index) { sell_n1<decltype(index)>(a); });
}

void f32_spmm_sell_nx__avx2(const SpmmArgs& a) { nx::sell<Avx2>(a); }

}  // namespace pysparse
