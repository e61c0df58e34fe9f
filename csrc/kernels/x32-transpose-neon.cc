// 32-bit transpose, NEON: 4 x 4 blocks transposed in registers (two vtrnq and
// four half-combines per block), edges scalar.
//
// Contract: as x32_transpose__scalar; no alignment, nothing read or written
// outside the [row_begin, row_end) x [0, cols) source block and its image.
#include <arm_neon.h>

#include <algorithm>

#include "kernels.h"

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
        for (; j + 4 <= j1; j += 4) {
          const float* s = src + i * a.lds + j;
          const float32x4x2_t t01 = vtrnq_f32(vld1q_f32(s), vld1q_f32(s + a.lds));
          const float32x4x2_t t23 = vtrnq_f32(vld1q_f32(s + 2 * a.lds), vld1q_f32(s + 3 * a.lds));
          float* d = dst + j * a.ldd + i;
          vst1q_f32(d, vcombine_f32(vget_low_f32(t01.val[0]), vget_low_f32(t23.val[0])));
          vst1q_f32(d + a.ldd, vcombine_f32(vget_low_f32(t01.val[1]), vget_low_f32(t23.val[1])));
          vst1q_f32(d + 2 * a.ldd, vcombine_f32(vget_high_f32(t01.val[0]), vget_high_f32(t23.val[0])));
          vst1q_f32(d + 3 * a.ldd, vcombine_f32(vget_high_f32(t01.val[1]), vget_high_f32(t23.val[1])));
        }
        for (; j < j1; ++j)
          for (int64_t r = i; r < i + 4; ++r) dst[j * a.ldd + r] = src[r * a.lds + j];
      }
      for (; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j) dst[j * a.ldd + i] = src[i * a.lds + j];
    }
  }
}

}  // namespace pysparse
