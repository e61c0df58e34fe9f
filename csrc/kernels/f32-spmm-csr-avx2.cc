// CSR, batch 1, AVX2 + FMA: y[i] = sum_p values[p] * x[idx[p]] (+ bias[i]).
//
// Unstructured sparsity gives a row no reuse to exploit, so the kernel walks a
// row 8 nonzeros at a time: 8 column indices widened to int32, one vgatherdps of
// x, one FMA against 8 contiguous values. Two accumulators alternate so the FMA
// latency does not serialise a row; a row's tail (< 8) uses a masked gather and a
// masked load, so a row of any length costs ceil(len / 8) gathers and one
// horizontal sum.
//
// Contract: ldx == 1 (x is one contiguous column). Reads up to 7 entries of idx
// past a row's end (kIndexPad covers the last row); those lanes are masked out of
// the gather, so x is only read at validated indices. values are read with a
// masked load at the tail, never past the end. No alignment required.
#include <immintrin.h>

#include <cstdint>

#include "kernels.h"

namespace pysparse {
namespace {

inline __m256i load_idx8(const uint16_t* p) {
  return _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256i load_idx8(const uint32_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <class Index>
void csr_n1(const SpmmArgs& a) {
  const SparseView& w = *a.w;
  const Index* idx = static_cast<const Index*>(w.idx);
  const float* val = w.values;
  const float* x = a.x;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t i = a.block_begin; i < a.block_end; ++i) {
    int64_t p = w.ptr[i];
    const int64_t end = w.ptr[i + 1];
    __m256 acc0 = _mm256_setzero_ps();
    __m256 acc1 = _mm256_setzero_ps();
    for (; p + 16 <= end; p += 16) {
      const __m256 x0 = _mm256_i32gather_ps(x, load_idx8(idx + p), 4);
      const __m256 x1 = _mm256_i32gather_ps(x, load_idx8(idx + p + 8), 4);
      acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(val + p), x0, acc0);
      acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(val + p + 8), x1, acc1);
    }
    if (p + 8 <= end) {
      const __m256 x0 = _mm256_i32gather_ps(x, load_idx8(idx + p), 4);
      acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(val + p), x0, acc0);
      p += 8;
    }
    if (p < end) {
      const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(end - p)), lane);
      const __m256 x0 = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), x, load_idx8(idx + p),
                                                 _mm256_castsi256_ps(mask), 4);
      acc1 = _mm256_fmadd_ps(_mm256_maskload_ps(val + p, mask), x0, acc1);
    }
    float s = hsum(_mm256_add_ps(acc0, acc1));
    if (a.bias != nullptr) s += a.bias[i];
    a.y[i * a.y_rs] = s;
  }
}

}  // namespace

void f32_spmm_csr_n1__avx2(const SpmmArgs& a) {
  if (a.w->index_width == IndexWidth::u16) {
    csr_n1<uint16_t>(a);
  } else {
    csr_n1<uint32_t>(a);
  }
}

}  // namespace pysparse
