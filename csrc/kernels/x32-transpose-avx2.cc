// 32-bit transpose, AVX2: 8 x 8 blocks transposed in registers (unpack, shuffle,
// 128-bit lane permute: 24 shuffles for 64 elements), edges scalar.
//
// Contract: as x32_transpose__scalar; no alignment, nothing read or written
// outside the [row_begin, row_end) x [0, cols) source block and its image.
#include <immintrin.h>

#include <algorithm>

#include "kernels.h"

namespace pysparse {
namespace {

inline void transpose8x8(const float* s, int64_t lds, float* d, int64_t ldd) {
  const __m256 r0 = _mm256_loadu_ps(s + 0 * lds), r1 = _mm256_loadu_ps(s + 1 * lds);
  const __m256 r2 = _mm256_loadu_ps(s + 2 * lds), r3 = _mm256_loadu_ps(s + 3 * lds);
  const __m256 r4 = _mm256_loadu_ps(s + 4 * lds), r5 = _mm256_loadu_ps(s + 5 * lds);
  const __m256 r6 = _mm256_loadu_ps(s + 6 * lds), r7 = _mm256_loadu_ps(s + 7 * lds);
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_storeu_ps(d + 0 * ldd, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(d + 1 * ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(d + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(d + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(d + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(d + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(d + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(d + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}

}  // namespace

void x32_transpose__avx2(const TransposeArgs& a) {
  constexpr int64_t kTile = 64;  // 64 x 64 floats: 16 KiB a side, L1-resident
  const float* src = a.src;
  float* dst = a.dst;
  for (int64_t i0 = a.row_begin; i0 < a.row_end; i0 += kTile) {
    const int64_t i1 = std::min(a.row_end, i0 + kTile);
    for (int64_t j0 = 0; j0 < a.cols; j0 += kTile) {
      const int64_t j1 = std::min(a.cols, j0 + kTile);
      int64_t i = i0;
      for (; i + 8 <= i1; i += 8) {
        int64_t j = j0;
        for (; j + 8 <= j1; j += 8) transpose8x8(src + i * a.lds + j, a.lds, dst + j * a.ldd + i, a.ldd);
        for (; j < j1; ++j)
          for (int64_t r = i; r < i + 8; ++r) dst[j * a.ldd + r] = src[r * a.lds + j];
      }
      for (; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j) dst[j * a.ldd + i] = src[i * a.lds + j];
    }
  }
}

}  // namespace pysparse
