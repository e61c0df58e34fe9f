// NEON traits for the transformer engines: the names of vmath-scalar.h over
// 4-float vectors (on top of simd-neon.h's loads, stores and fma).
#pragma once

#include <arm_neon.h>

#include "kernels/simd-neon.h"

namespace pysparse {
namespace {

struct NeonMath : Neon {
  using B = uint32x4_t;

  static V sub(V a, V b) { return vsubq_f32(a, b); }
  static V mul(V a, V b) { return vmulq_f32(a, b); }
  static V div(V a, V b) { return vdivq_f32(a, b); }
  // NEON's fmax/fmin return NaN when either is NaN: a NaN in b is kept as on
  // x86, a NaN in a is kept too (callers never rely on dropping one).
  static V max(V a, V b) { return vmaxq_f32(a, b); }
  static V min(V a, V b) { return vminq_f32(a, b); }
  static V abs(V a) { return vabsq_f32(a); }
  static V copysign(V mag, V sgn) { return vbslq_f32(vdupq_n_u32(0x80000000u), sgn, mag); }
  static B lt(V a, V b) { return vcltq_f32(a, b); }
  static B gt(V a, V b) { return vcgtq_f32(a, b); }
  static B ge(V a, V b) { return vcgeq_f32(a, b); }
  static V select(B m, V a, V b) { return vbslq_f32(m, a, b); }
  static V round(V a) { return vrndnq_f32(a); }
  static V pow2i(V n) {
    const int32x4_t e = vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127));
    return vreinterpretq_f32_s32(vshlq_n_s32(e, 23));
  }
  static float hsum(V a) { return vaddvq_f32(a); }
  static float hmax(V a) { return vmaxvq_f32(a); }
};

}  // namespace
}  // namespace pysparse
