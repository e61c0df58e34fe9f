// AVX-512 (F/BW/DQ/VL) traits for the transformer engines: the names of
// vmath-scalar.h over 16-float vectors (on top of simd-avx512.h's loads,
// stores and fma). Comparisons give an opmask (__mmask16) and select is a
// masked blend, so no compare-to-vector and no blendv as on AVX2.
// Include only from files compiled with PYSPARSE_AVX512_SOURCES' flags
// (CMakeLists.txt); they run only where dispatch.cc found the instructions.
#pragma once

// GCC 12 reports -Wmaybe-uninitialized inside its own AVX-512 intrinsics (the
// `__m512 __Y = __Y` of _mm512_undefined_ps, GCC bug 105593, fixed in 13) at
// every inlined max / round / convert / extract: silenced for the files that
// include this header (the AVX-512 transformer kernels) and nothing else.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>

#include "kernels/simd-avx512.h"
#include "kernels/vmath-avx2.h"

namespace pysparse {
namespace {

struct Avx512Math : Avx512 {
  using B = __mmask16;  // a comparison result: one bit per lane

  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  // x86 semantics, as vmaxps ymm: b when either is NaN.
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V min(V a, V b) { return _mm512_min_ps(a, b); }
  static V abs(V a) { return _mm512_andnot_ps(_mm512_set1_ps(-0.0f), a); }
  static V copysign(V mag, V sgn) {
    const V sign = _mm512_set1_ps(-0.0f);
    return _mm512_or_ps(_mm512_andnot_ps(sign, mag), _mm512_and_ps(sign, sgn));
  }
  static B lt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static B gt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static B ge(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
  // a where m is set, else b.
  static V select(B m, V a, V b) { return _mm512_mask_blend_ps(m, b, a); }
  static V round(V a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  // 2**n for integral n in [-126, 127] (exponent bits, as vmath-avx2.h, so both
  // ISAs give the same bits); garbage for NaN (callers multiply by the NaN).
  static V pow2i(V n) {
    const __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
  }
  // The two 256-bit halves folded, then vmath-avx2.h's reduction of one __m256
  // (these files are compiled with AVX2 too): a fixed order, as on AVX2.
  static float hsum(V a) { return Avx2Math::hsum(_mm256_add_ps(lo(a), hi(a))); }
  static float hmax(V a) { return Avx2Math::hmax(_mm256_max_ps(lo(a), hi(a))); }

 private:
  static __m256 lo(V a) { return _mm512_castps512_ps256(a); }
  static __m256 hi(V a) { return _mm512_extractf32x8_ps(a, 1); }
};

}  // namespace
}  // namespace pysparse
