// 32-bit transpose, AVX2: 8 x 8 blocks transposed in registers (x32-transpose-avx2.h:
// 16 shuffles for 64 elements), edges scalar.
//
// Contract: as x32_transpose__scalar; no alignment, nothing read or written
// outside the [row_begin, row_end) x [0, cols) source block and its image.
#include <algorithm>

#include "kernels.h"
#include "kernels/x32-transpose-avx2.h"

namespace pysparse {

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
