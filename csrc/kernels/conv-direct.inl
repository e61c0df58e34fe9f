// Direct dense convolution of a block of output channels over vector traits.
//
// The input planes arrive padded and split into stride phases (dwconv.inl's
// fill): tap (a, b) of output column ow reads phase b % sw of padded row
// oh * sh + a at ow + b / sw, one contiguous vector load for any stride. Per
// output row, per two vectors of W output columns, the block's OC x 2
// accumulators start at the bias; each tap (ci, a, b), in that order, loads
// two input vectors and broadcasts OC weights for 2 * OC fmas. With Cin = 3
// and a 3x3 kernel that is 27 * 6 loads for 27 * 8 fmas; an im2col would first
// copy 27 rows of the output's size. The last, partial vector of
// a row is computed like the others into a temporary (the phase rows are
// padded to whole vectors, dwconv_phase_len) and its valid lanes copied: no
// scalar tail, and every output sums bias, then the taps in order, on every
// ISA.
//
// Contract: no alignment; reads scratch [0, cin * plane), w [0, oc * k),
// bias [0, oc); writes y's rows [oh0, oh1) of the block's oc planes only.
// Non-finite values propagate as in the arithmetic (relu6 keeps a NaN).
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/dwconv.inl"

namespace pysparse {
namespace {

// NV vectors of output columns [ow, ow + NV * W) of row oh for the block's OC channels; `valid`
// of the last vector's lanes are stored (W: all).
template <class M, int OC, int NV>
inline void conv_direct_cols(const ConvDirectArgs& a, const float* rows, float* y, int64_t ow, int64_t valid,
                             const typename M::V* bias) {
  using V = typename M::V;
  constexpr int64_t W = M::kWidth;
  const int64_t kh = a.kh, kw = a.kw, sw = a.sw, L = a.L, RS = sw * L;
  const int64_t k = a.cin * kh * kw, ohw = a.ho * a.wo;
  V acc[OC][NV];
  for (int o = 0; o < OC; ++o)
    for (int v = 0; v < NV; ++v) acc[o][v] = bias[o];
  const float* wt = a.w;
  for (int64_t ci = 0; ci < a.cin; ++ci) {
    const float* plane = rows + ci * a.plane;
    for (int64_t i = 0; i < kh; ++i) {
      const float* r = plane + i * RS;
      for (int64_t j = 0; j < kw; ++j, ++wt) {
        const float* src = r + (j % sw) * L + ow + j / sw;
        V xv[NV];
        for (int v = 0; v < NV; ++v) xv[v] = M::load(src + v * W);
        for (int o = 0; o < OC; ++o) {
          const V wb = M::set1(wt[o * k]);  // one broadcast feeds NV fmas
          for (int v = 0; v < NV; ++v) acc[o][v] = M::fma(xv[v], wb, acc[o][v]);
        }
      }
    }
  }
  alignas(64) float tmp[kDwPad];
  for (int o = 0; o < OC; ++o) {
    for (int v = 0; v < NV; ++v) {
      const V out = dwconv_act<M>(acc[o][v], a.act);
      float* dst = y + o * ohw + v * W;
      if (v < NV - 1 || valid == W) {
        M::store(dst, out);
      } else {
        M::store(tmp, out);
        std::memcpy(dst, tmp, sizeof(float) * static_cast<size_t>(valid));
      }
    }
  }
}

template <class M, int OC>
void conv_direct_block(const ConvDirectArgs& a) {
  using V = typename M::V;
  constexpr int64_t W = M::kWidth;
  // Two vectors of columns per step: each tap's input loads and weight broadcasts feed 2 * OC fmas
  // (one vector per step was load-bound: 0.68 ms for MobileNetV2's stem on Zen 4).
  constexpr int NV = W > 1 ? 2 : 1;
  const int64_t RS = a.sw * a.L;
  const int64_t full = a.wo - a.wo % W;
  V bias[OC];
  for (int o = 0; o < OC; ++o) bias[o] = M::set1(a.bias ? a.bias[o] : 0.0f);
  for (int64_t oh = a.oh0; oh < a.oh1; ++oh) {
    const float* rows = a.scratch + oh * a.sh * RS;
    float* y = a.y + oh * a.wo;
    int64_t ow = 0;
    for (; ow + NV * W <= full; ow += NV * W) conv_direct_cols<M, OC, NV>(a, rows, y + ow, ow, W, bias);
    for (; ow < a.wo; ow += W) conv_direct_cols<M, OC, 1>(a, rows, y + ow, ow, ow < full ? W : a.wo - ow, bias);
  }
}

template <class M>
void conv_direct(const ConvDirectArgs& a) {
  static_assert(kConvOcBlock == 4, "conv_direct dispatches blocks of 1..4 output channels");
  switch (a.oc) {
    case 4: return conv_direct_block<M, 4>(a);
    case 3: return conv_direct_block<M, 3>(a);
    case 2: return conv_direct_block<M, 2>(a);
    default: return conv_direct_block<M, 1>(a);
  }
}

}  // namespace
}  // namespace pysparse
