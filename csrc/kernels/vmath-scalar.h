// Scalar "vector" traits (width 1) for the transformer engines (vmath.inl,
// layernorm.inl, gelu.inl, attention.inl): the portable twin of vmath-avx2.h
// and vmath-neon.h, compiled for the baseline ISA. Same names, same meanings,
// so the one engine source is the scalar fallback and the SIMD kernels at once.
// NaN rules follow x86 where they matter: max(a, b) and min(a, b) return b when
// either is NaN (so max(lo, x) keeps a NaN x).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace pysparse {
namespace {

struct ScalarMath {
  using V = float;
  using B = bool;
  static constexpr int kWidth = 1;

  static V zero() { return 0.0f; }
  static V load(const float* p) { return *p; }
  static void store(float* p, V v) { *p = v; }
  static V broadcast(const float* p) { return *p; }
  static V set1(float v) { return v; }
  static V add(V a, V b) { return a + b; }
  static V sub(V a, V b) { return a - b; }
  static V mul(V a, V b) { return a * b; }
  static V div(V a, V b) { return a / b; }
  static V fma(V a, V b, V acc) { return a * b + acc; }
  static V max(V a, V b) { return a > b ? a : b; }
  static V min(V a, V b) { return a < b ? a : b; }
  static V abs(V a) { return std::fabs(a); }
  static V copysign(V mag, V sgn) { return std::copysign(mag, sgn); }
  static B lt(V a, V b) { return a < b; }
  static B gt(V a, V b) { return a > b; }
  static B ge(V a, V b) { return a >= b; }
  static V select(B m, V a, V b) { return m ? a : b; }
  // Round to nearest (even) for |a| < 2**22, NaN kept: the 1.5 * 2**23 trick
  // needs no libm call and no SSE4.1 in the baseline build.
  static V round(V a) { return (a + 12582912.0f) - 12582912.0f; }
  // 2**n for an integral n in [-126, 127] (exponent bits); NaN for NaN.
  static V pow2i(V n) {
    if (!(n == n)) return n;
    const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
    float out;
    std::memcpy(&out, &bits, sizeof out);
    return out;
  }
  static float hsum(V a) { return a; }
  static float hmax(V a) { return a; }
};

}  // namespace
}  // namespace pysparse
