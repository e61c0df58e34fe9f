// 32-bit transpose, NEON: 4 x 4 blocks transposed in registers (two vtrnq and
// four half-combines per block), edges scalar.
//
// Contract: as x32_transpose__scalar; no alignment, nothing read or written
// outside the [row_begin, row_end) x [0, cols) source block and its image.
#include <algorithm>

#include "kernels.h"
#include "kernels/x32-transpose-neon.h"

namespace pysparse {

void x32_transpose__neon(const TransposeArgs& a) {
  constexpr int64_t kTile = 64;
  const float* src = a.src;
  float* dst = a.dst;
  for (int64_t i0 = a.row_begin; i0 < a.row_end; i0 += kTile) {
    const int64_t i1 = std::min(a.row_end, i0 + kTile);
    for (int64_t j0 = 0; j0 < a.cols; j0 += kTile) {
      const int64_t j1 = std::min(a.cols, j0 + kTile);
      int64_t i = i0;
      for (; i + 4 <= i1; i += 4) {
        int64_t j = j0;
        for (; j + 4 <= j1; j += 4) transpose4x4(src + i * a.lds + j, a.lds, dst + j * a.ldd + i, a.ldd);
        for (; j < j1; ++j)
          for (int64_t r = i; r < i + 4; ++r) dst[j * a.ldd + r] = src[r * a.lds + j];
      }
      for (; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j) dst[j * a.ldd + i] = src[i * a.lds + j];
    }
  }
}

}  // namespace pysparse
