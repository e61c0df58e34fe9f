// The NEON 4 x 4 register transpose of 32-bit values: d[j * ldd + i] = s[i * lds + j], i, j < 4
// (two vtrnq and four half-combines). Shared by x32_transpose__neon and the channel-blocked
// depthwise engine (dwconv-blocked.inl, four of these per 8 x 8 block).
#pragma once

#include <arm_neon.h>

#include <cstdint>

namespace pysparse {
namespace {

inline void transpose4x4(const float* s, int64_t lds, float* d, int64_t ldd) {
  const float32x4x2_t t01 = vtrnq_f32(vld1q_f32(s), vld1q_f32(s + lds));
  const float32x4x2_t t23 = vtrnq_f32(vld1q_f32(s + 2 * lds), vld1q_f32(s + 3 * lds));
  vst1q_f32(d, vcombine_f32(vget_low_f32(t01.val[0]), vget_low_f32(t23.val[0])));
  vst1q_f32(d + ldd, vcombine_f32(vget_low_f32(t01.val[1]), vget_low_f32(t23.val[1])));
  vst1q_f32(d + 2 * ldd, vcombine_f32(vget_high_f32(t01.val[0]), vget_high_f32(t23.val[0])));
  vst1q_f32(d + 3 * ldd, vcombine_f32(vget_high_f32(t01.val[1]), vget_high_f32(t23.val[1])));
}

}  // namespace
}  // namespace pysparse
