// What every qs8 kernel file shares: the scalar reading of the contract in
// qformats.h (the epilogue, the activation scale), so the SIMD files and the
// scalar twin cannot drift apart. Plain inline functions, no ISA flags: they
// are called per row, not per weight.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "qformats.h"

namespace pysparse::qs8 {

// One row's activation scale: what the prologue multiplies by (inv) and what
// the epilogue multiplies with (scale). zero: the row quantizes to all zeros.
struct RowScale {
  float scale;
  float inv;
  bool zero;
};

// amax = max |x| over the row (any order: max is exact), bad = the row holds a
// NaN or an infinity.
inline RowScale row_scale(float amax, bool bad) {
  if (bad) return {std::nanf(""), 0.0f, true};
  if (!(amax >= kQTinyRow)) return {0.0f, 0.0f, true};
  return {amax / 127.0f, 127.0f / amax, false};
}

// round half to even (the default rounding mode, as cvtps2dq and fcvtns), clamped.
inline int8_t quantize_one(float v, float inv) {
  float r = std::nearbyint(v * inv);
  r = r > 127.0f ? 127.0f : (r < -127.0f ? -127.0f : r);
  return static_cast<int8_t>(static_cast<int32_t>(r));
}

inline float epilogue(int32_t acc, float w_scale, float x_scale, float bias, bool relu) {
  const float y = std::fma(static_cast<float>(acc) * w_scale, x_scale, bias);
  return relu && y < 0.0f ? 0.0f : y;
}

inline int32_t load_word(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// The prologue's scalar pieces, shared by every ISA's version. A row's max over
// inputs [k, cols) folded into (amax, bad):
inline void row_max_tail(const float* x, int64_t k, int64_t cols, float& amax, bool& bad) {
  for (; k < cols; ++k) {
    const float v = std::fabs(x[k]);
    bad |= !(v <= 3.4028234663852886e38f);
    amax = v > amax ? v : amax;
  }
}

// Row bytes: q0 is the row's group 0, step the bytes from one group to the next.
inline void write_zero_row(int8_t* q0, int64_t groups, int64_t step, int32_t flip) {
  for (int64_t g = 0; g < groups; ++g) std::memset(q0 + g * step, flip, 4);
}

// Inputs [k, 4 * groups): quantized below cols, zero padding past it.
inline void write_tail(int8_t* q0, int64_t step, int64_t k, int64_t cols, int64_t groups, const float* x, float inv,
                       int32_t flip) {
  for (; k < groups * 4; ++k)
    q0[(k >> 2) * step + (k & 3)] = static_cast<int8_t>((k < cols ? quantize_one(x[k], inv) : 0) ^ flip);
}

// Where the prologue writes input k of row j (qformats.h, QArgs): tiles of
// `rows` rows, each `groups` * rows * 4 bytes (one tile when j < rows).
inline int64_t xq_offset(int64_t j, int64_t k, int64_t rows, int64_t groups = 0) {
  return (j / rows) * groups * rows * 4 + ((k >> 2) * rows + j % rows) * 4 + (k & 3);
}
// Group 0 of row j: the first byte the prologue writes for it.
inline int64_t xq_row(int64_t j, int64_t rows, int64_t groups) { return (j / rows) * groups * rows * 4 + (j % rows) * 4; }

}  // namespace pysparse::qs8
