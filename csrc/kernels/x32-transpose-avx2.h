// The AVX2 8 x 8 register transpose of 32-bit values: d[j * ldd + i] = s[i * lds + j], i, j < 8
// (128-bit inserts from memory, unpack, shuffle: 16 shuffles for 64 elements). Shared by
// x32_transpose__avx2 and the channel-blocked depthwise engine (dwconv-blocked.inl).
// Include only from files compiled with -mavx2.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace pysparse {
namespace {

inline void transpose8x8(const float* s, int64_t lds, float* d, int64_t ldd) {
  // r[i] = row i's columns 0-3 | row i + 4's, r[4 + i] the same for columns 4-7: the 128-bit lane
  // mixing done by vinsertf128 from memory (load ports and any ALU), so only the unpacks and
  // shuffles use the shuffle port (one port on Intel): 16 shuffles for 64 elements, not 24.
  __m256 r[8];
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(s + i * lds)), _mm_loadu_ps(s + (i + 4) * lds), 1);
    r[4 + i] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(s + i * lds + 4)),
                                    _mm_loadu_ps(s + (i + 4) * lds + 4), 1);
  }
  // per 128-bit half, a 4 x 4 transpose: column j of the 8 rows is [rows 0-3 | rows 4-7]
  for (int h = 0; h < 8; h += 4) {
    const __m256 u0 = _mm256_unpacklo_ps(r[h], r[h + 1]), u1 = _mm256_unpackhi_ps(r[h], r[h + 1]);
    const __m256 u2 = _mm256_unpacklo_ps(r[h + 2], r[h + 3]), u3 = _mm256_unpackhi_ps(r[h + 2], r[h + 3]);
    _mm256_storeu_ps(d + (h + 0) * ldd, _mm256_shuffle_ps(u0, u2, 0x44));
    _mm256_storeu_ps(d + (h + 1) * ldd, _mm256_shuffle_ps(u0, u2, 0xEE));
    _mm256_storeu_ps(d + (h + 2) * ldd, _mm256_shuffle_ps(u1, u3, 0x44));
    _mm256_storeu_ps(d + (h + 3) * ldd, _mm256_shuffle_ps(u1, u3, 0xEE));
  }
}

}  // namespace
}  // namespace pysparse
