// Depthwise convolution of one channel plane over vector traits.
//
// Pass 1 copies the rows the outputs read into scratch, zero padded and split
// into `sw` phases: phase q of a padded row holds xpad[r, q + sw * j]. Tap
// (a, b) of output column ow then reads phase b % sw at j = ow + b / sw, so
// every tap of a stride-2 conv is one contiguous vector load, like stride 1.
// The copy costs about one float per input pixel, against kh * kw multiply-adds
// per output; it also removes every bounds check from pass 2.
// Pass 2: per output row, per vector of W output columns, acc = bias, then one
// fma per tap (a, b) in row-major order, then the activation, stored. The
// phase rows are padded to whole vectors (dwconv_phase_len), so the last,
// partial vector is computed like the others into a temporary and its wo % W
// valid lanes copied out: no scalar tail, and every output element sums in the
// same order on every ISA (bias, then the taps in order).
//
// Contract: no alignment; reads x [0, h * w) and w [0, kh * kw) only; writes
// y [0, ho * wo) and scratch [0, dwconv_scratch_floats). Non-finite values
// propagate as in the arithmetic (relu/relu6 keep a NaN: max(0, NaN) is NaN,
// as in torch). 3x3 and 5x5 are compiled with their sizes known.
#pragma once

#include <cstdint>
#include <cstring>

namespace pysparse {
namespace {

// d[j] = s[stride * j], j < n; S > 0: the stride known at compile time (S = 2 vectorises: the
// compiler's strided loads, where the generic loop goes one float at a time, which made the fill
// of a stride-2 plane cost more than its taps: MobileNetV2's 96-channel 112x112 layer, 0.75 ms).
template <int S>
inline void dwconv_gather(float* d, const float* s, int64_t n, int64_t stride) {
  const int64_t st = S > 0 ? S : stride;
  for (int64_t j = 0; j < n; ++j) d[j] = s[st * j];
}

inline void dwconv_fill(const DwConvArgs& a, int64_t L) {
  const int64_t rows = (a.ho - 1) * a.sh + a.kh;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t ih = r - a.ph;
    float* dst = a.scratch + r * a.sw * L;
    if (ih < 0 || ih >= a.h) {
      std::memset(dst, 0, sizeof(float) * static_cast<size_t>(a.sw * L));
      continue;
    }
    const float* src = a.x + ih * a.w_in;
    if (a.sw == 1) {
      // [0, pw) zero, [pw, pw + w) the row, the rest zero
      const int64_t lo = a.pw < L ? a.pw : L;
      const int64_t n = a.w_in < L - lo ? a.w_in : L - lo;
      std::memset(dst, 0, sizeof(float) * static_cast<size_t>(lo));
      std::memcpy(dst + lo, src, sizeof(float) * static_cast<size_t>(n));
      std::memset(dst + lo + n, 0, sizeof(float) * static_cast<size_t>(L - lo - n));
      continue;
    }
    for (int64_t q = 0; q < a.sw; ++q) {
      // phase q, j in [j0, j1) reads src[q + sw * j - pw]; the rest is padding
      float* d = dst + q * L;
      const int64_t first = a.pw - q;  // iw >= 0  <=>  sw * j >= pw - q
      int64_t j0 = first <= 0 ? 0 : (first + a.sw - 1) / a.sw;
      int64_t j1 = a.w_in + a.pw - q <= 0 ? 0 : (a.w_in + a.pw - q + a.sw - 1) / a.sw;  // iw < w
      j0 = j0 < L ? j0 : L;
      j1 = j1 < L ? (j1 > j0 ? j1 : j0) : L;
      for (int64_t j = 0; j < j0; ++j) d[j] = 0.0f;
      const float* s = src + q + a.sw * j0 - a.pw;
      if (a.sw == 2) {
        dwconv_gather<2>(d + j0, s, j1 - j0, 2);
      } else {
        dwconv_gather<0>(d + j0, s, j1 - j0, a.sw);
      }
      for (int64_t j = j1; j < L; ++j) d[j] = 0.0f;
    }
  }
}

template <class M>
inline typename M::V dwconv_act(typename M::V v, DwAct act) {
  if (act == DwAct::none) return v;
  v = M::max(M::zero(), v);  // max(0, NaN) = NaN on every ISA (vmath-scalar.h's NaN rule)
  if (act == DwAct::relu6) v = M::min(M::set1(6.0f), v);
  return v;
}

// KH, KW > 0: the kernel size known at compile time; 0: a.kh, a.kw.
template <class M, int KH, int KW>
void dwconv_plane(const DwConvArgs& a) {
  using V = typename M::V;
  constexpr int64_t W = M::kWidth;
  const int64_t kh = KH > 0 ? KH : a.kh, kw = KW > 0 ? KW : a.kw;
  const int64_t sw = a.sw;
  const int64_t L = dwconv_phase_len(a.wo, kw, sw);
  const int64_t RS = sw * L;
  dwconv_fill(a, L);
  const V bias = M::set1(a.bias);
  // The taps broadcast once per plane: 3x3 stays in registers, 5x5 spills to
  // the stack, where each fma reads its weight as a memory operand.
  constexpr int kMaxTaps = KH > 0 ? KH * KW : 1;
  V wv[kMaxTaps];
  if constexpr (KH > 0) {
    for (int t = 0; t < kMaxTaps; ++t) wv[t] = M::set1(a.w[t]);
  }
  const int64_t full = a.wo - a.wo % W;
  alignas(64) float tmp[kDwPad];
  for (int64_t oh = 0; oh < a.ho; ++oh) {
    const float* rows = a.scratch + oh * a.sh * RS;
    float* y = a.y + oh * a.wo;
    auto at = [&](int64_t ow) {
      V acc = bias;
      for (int64_t i = 0; i < kh; ++i) {
        const float* r = rows + i * RS;
        for (int64_t j = 0; j < kw; ++j) {
          const V wt = KH > 0 ? wv[i * kw + j] : M::set1(a.w[i * kw + j]);
          acc = M::fma(M::load(r + (j % sw) * L + ow + j / sw), wt, acc);
        }
      }
      return dwconv_act<M>(acc, a.act);
    };
    // Two vectors at a time: two independent fma chains hide the fma latency (each output still
    // sums bias, then the taps in order, so the result is the same as one vector at a time).
    auto at2 = [&](int64_t ow) {
      V acc0 = bias, acc1 = bias;
      for (int64_t i = 0; i < kh; ++i) {
        const float* r = rows + i * RS;
        for (int64_t j = 0; j < kw; ++j) {
          const V wt = KH > 0 ? wv[i * kw + j] : M::set1(a.w[i * kw + j]);
          const float* p = r + (j % sw) * L + ow + j / sw;
          acc0 = M::fma(M::load(p), wt, acc0);
          acc1 = M::fma(M::load(p + W), wt, acc1);
        }
      }
      M::store(y + ow, dwconv_act<M>(acc0, a.act));
      M::store(y + ow + W, dwconv_act<M>(acc1, a.act));
    };
    int64_t ow = 0;
    for (; ow + 2 * W <= full; ow += 2 * W) at2(ow);
    if (full < 2 * W && oh + 1 < a.ho) {
      // Narrow planes (14x14, 7x7: one or two vectors a row): two rows at a time instead, for the
      // same two independent chains; the same sums in the same order.
      const float* rows1 = rows + a.sh * RS;
      float* y1 = y + a.wo;
      for (; ow < a.wo; ow += W) {
        V acc0 = bias, acc1 = bias;
        for (int64_t i = 0; i < kh; ++i) {
          const float* r0 = rows + i * RS;
          const float* r1 = rows1 + i * RS;
          for (int64_t j = 0; j < kw; ++j) {
            const V wt = KH > 0 ? wv[i * kw + j] : M::set1(a.w[i * kw + j]);
            const int64_t off = (j % sw) * L + ow + j / sw;
            acc0 = M::fma(M::load(r0 + off), wt, acc0);
            acc1 = M::fma(M::load(r1 + off), wt, acc1);
          }
        }
        acc0 = dwconv_act<M>(acc0, a.act);
        acc1 = dwconv_act<M>(acc1, a.act);
        if (ow < full) {
          M::store(y + ow, acc0);
          M::store(y1 + ow, acc1);
        } else {
          M::store(tmp, acc0);
          std::memcpy(y + ow, tmp, sizeof(float) * static_cast<size_t>(a.wo - ow));
          M::store(tmp, acc1);
          std::memcpy(y1 + ow, tmp, sizeof(float) * static_cast<size_t>(a.wo - ow));
        }
      }
      ++oh;  // row oh + 1 is done too
      continue;
    }
    for (; ow < full; ow += W) M::store(y + ow, at(ow));
    if (ow < a.wo) {
      M::store(tmp, at(ow));
      std::memcpy(y + ow, tmp, sizeof(float) * static_cast<size_t>(a.wo - ow));
    }
  }
}

template <class M>
void dwconv(const DwConvArgs& a) {
  if (a.kh == 3 && a.kw == 3) return dwconv_plane<M, 3, 3>(a);
  if (a.kh == 5 && a.kw == 5) return dwconv_plane<M, 5, 5>(a);
  dwconv_plane<M, 0, 0>(a);
}

}  // namespace
}  // namespace pysparse
