// Portable 32-bit transpose: dst[c * ldd + r] = src[r * lds + c] for rows
// [r0, r1) and all cols. Cache-blocked 32 x 32 so both sides stay in L1. The
// fallback and the oracle of the SIMD twins.
#include <algorithm>

#include "kernels.h"

namespace pysparse {

void x32_transpose__scalar(const TransposeArgs& a) {
  constexpr int64_t kTile = 32;
  for (int64_t i0 = a.row_begin; i0 < a.row_end; i0 += kTile) {
    const int64_t i1 = std::min(a.row_end, i0 + kTile);
    for (int64_t j0 = 0; j0 < a.cols; j0 += kTile) {
      const int64_t j1 = std::min(a.cols, j0 + kTile);
      for (int64_t j = j0; j < j1; ++j)
        for (int64_t i = i0; i < i1; ++i) a.dst[j * a.ldd + i] = a.src[i * a.lds + j];
    }
  }
}

}  // namespace pysparse
