// Depthwise convolution of 8 adjacent channels at once over vector traits: the
// "blocked" engine (kernels-dwconv.inc's *_blocked kernels).
//
// Why: the planes engine (dwconv.inl) vectorises along a plane's row, which
// suits 112x112 and 56x56, but MobileNetV2's late layers are 14x14 and 7x7
// planes by the hundreds: one or two vectors a row, partly empty, and per
// plane a fill of ~3 libc calls a row that costs as much as the taps. Here a
// vector holds one pixel of kDwBlock = 8 channels (AVX2: one vector, NEON: two
// of 4, scalar: eight of 1), so every lane is busy whatever the plane size and
// the per-call costs are shared by 8 channels.
//
// Per band of output rows (dwconv_band_rows: tile + outputs in 24 KiB, L1):
//  1. the band's padded input rows go into a tile of pixel vectors, row r
//     holding w_in + 2 pw pixels: the 8 planes (CHW) are read as flat runs of 8
//     pixels, 8 x 8 register transposes (Tr) turn them into 8 pixel vectors,
//     stored at their padded place (through an 8 x 8 bounce block when the run
//     crosses a row end); a run of < 8 pixels at the end goes scalar. Padding
//     columns are zeroed once per call, padding rows per band. The rows a band
//     shares with the next (kh - sh of them) are moved down, not transposed
//     again.
//  2. per output row, OB pixels at a time: acc = bias, then one fma per tap
//     (a, b) in row-major order, then the activation: the planes engine's order
//     per output, so the two engines agree bitwise on an ISA.
//  3. the band's outputs (pixel-major, flat) go back to the 8 output planes by
//     the same transposes: a band of output rows is one flat run of each plane.
// Stride s needs no phase split here: tap (a, b) of output column ow is the
// whole vector at pixel ow * sw + b.
//
// Contract: no alignment; reads x, w, bias of the 8 channels only; writes the 8
// output planes and scratch [0, dwconv_blocked_scratch_floats). Non-finite
// values propagate as in the planes engine (the same operations in the same
// order). 3x3 and 5x5 are compiled with their sizes known.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/dwconv.inl"

namespace pysparse {
namespace {

using DwTransposeFn = void (*)(const float* s, int64_t lds, float* d, int64_t ldd);

// d[j * ldd + i] = s[i * lds + j], i, j < 8: the scalar twin of the register transposes.
inline void dwconv_transpose8x8_scalar(const float* s, int64_t lds, float* d, int64_t ldd) {
  for (int64_t i = 0; i < kDwBlock; ++i)
    for (int64_t j = 0; j < kDwBlock; ++j) d[j * ldd + i] = s[i * lds + j];
}

// M: vector traits; Tr: the 8 x 8 transpose; CB: channels per block (8, or 16 for AVX-512: two
// 8 x 8 transposes per 8 pixels); OB: output pixels per step (independent fma chains).
template <class M, DwTransposeFn Tr, int CB, int OB, int KH, int KW>
void dwconv_blocked_impl(const DwBlockArgs& a) {
  using V = typename M::V;
  constexpr int64_t C = CB, P = kDwBlock, W = M::kWidth;  // P: pixels per transpose
  constexpr int NV = static_cast<int>(C / W);
  static_assert(C % W == 0 && C % P == 0, "a pixel of CB channels is whole vectors and whole transposes");
  const int64_t kh = KH > 0 ? KH : a.kh, kw = KW > 0 ? KW : a.kw, taps = kh * kw;
  const int64_t hw = a.h * a.w_in, ohw = a.ho * a.wo;
  const int64_t wp = a.w_in + 2 * a.pw, row = wp * C;  // tile row: pixels, floats
  const int64_t band = dwconv_band_rows(a.ho, a.wo, a.w_in, kh, a.sh, a.pw, C);
  const int64_t tile_rows = (band - 1) * a.sh + kh;
  float* tile = a.scratch;
  float* out = tile + tile_rows * row;
  float* wt = out + band * a.wo * C;  // wt[t * C + k]: tap t of channel k
  float* bias = wt + taps * C;
  float* bounce = bias + C;
  for (int64_t t = 0; t < taps; ++t)
    for (int64_t k = 0; k < C; ++k) wt[t * C + k] = a.w[k * taps + t];
  for (int64_t k = 0; k < C; ++k) bias[k] = a.bias ? a.bias[k] : 0.0f;
  for (int64_t r = 0; r < tile_rows; ++r) {
    std::memset(tile + r * row, 0, sizeof(float) * static_cast<size_t>(a.pw * C));
    std::memset(tile + r * row + (a.pw + a.w_in) * C, 0, sizeof(float) * static_cast<size_t>(a.pw * C));
  }
  V bv[NV];
  for (int v = 0; v < NV; ++v) bv[v] = M::load(bias + v * W);
  constexpr int kMaxTaps = KH > 0 ? KH * KW : 1;
  V wv[kMaxTaps][NV];
  if constexpr (KH > 0) {
    for (int t = 0; t < kMaxTaps; ++t)
      for (int v = 0; v < NV; ++v) wv[t][v] = M::load(wt + t * C + v * W);
  }
  // Input rows [ih0, ih1) into the tile, whose row 0 is padded row r0.
  auto fill = [&](int64_t ih0, int64_t ih1, int64_t r0) {
    const int64_t p1 = ih1 * a.w_in;
    int64_t p = ih0 * a.w_in, ih = ih0, iw = 0;
    auto dst = [&]() { return tile + (ih + a.ph - r0) * row + (a.pw + iw) * C; };
    auto next = [&]() {
      if (++iw == a.w_in) iw = 0, ++ih;
    };
    for (; p + P <= p1; p += P) {
      if (iw + P <= a.w_in) {
        for (int64_t c = 0; c < C; c += P) Tr(a.x + c * hw + p, hw, dst() + c, C);
        iw += P;
        if (iw == a.w_in) iw = 0, ++ih;
        continue;
      }
      for (int64_t c = 0; c < C; c += P) Tr(a.x + c * hw + p, hw, bounce + c, C);
      for (int64_t q = 0; q < P; ++q, next()) std::memcpy(dst(), bounce + q * C, sizeof(float) * C);
    }
    for (; p < p1; ++p, next()) {
      float* d = dst();
      for (int64_t k = 0; k < C; ++k) d[k] = a.x[k * hw + p];
    }
  };
  int64_t have = 0, r0 = 0;  // the tile holds padded rows [r0, have)
  const float* rp[KH > 0 ? KH : 16];  // kh <= 16 (bindings/dwconv.cc's kMaxKernel)
  for (int64_t oh0 = 0; oh0 < a.ho; oh0 += band) {
    const int64_t oh1 = oh0 + band < a.ho ? oh0 + band : a.ho;
    const int64_t b0 = oh0 * a.sh, b1 = (oh1 - 1) * a.sh + kh;  // padded rows of this band
    int64_t from = b0;
    if (have > b0) {  // rows shared with the previous band: move them down
      std::memmove(tile, tile + (b0 - r0) * row, sizeof(float) * static_cast<size_t>((have - b0) * row));
      from = have;
    }
    r0 = b0;
    for (int64_t r = from; r < b1; ++r) {
      if (r < a.ph || r >= a.ph + a.h) std::memset(tile + (r - r0) * row, 0, sizeof(float) * static_cast<size_t>(row));
    }
    const int64_t lo = from - a.ph > 0 ? from - a.ph : 0, hi = b1 - a.ph < a.h ? b1 - a.ph : a.h;
    if (lo < hi) fill(lo, hi, r0);
    have = b1;
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      for (int64_t i = 0; i < kh; ++i) rp[i] = tile + (oh * a.sh + i - r0) * row;
      float* o = out + (oh - oh0) * a.wo * C;
      auto step = [&](int64_t ow, auto nout) {
        constexpr int N = decltype(nout)::value;
        V acc[N][NV];
        for (int n = 0; n < N; ++n)
          for (int v = 0; v < NV; ++v) acc[n][v] = bv[v];
        for (int64_t i = 0; i < kh; ++i) {
          for (int64_t j = 0; j < kw; ++j) {
            const float* px = rp[i] + (ow * a.sw + j) * C;
            for (int v = 0; v < NV; ++v) {
              const V wtv = KH > 0 ? wv[i * kw + j][v] : M::load(wt + (i * kw + j) * C + v * W);
              for (int n = 0; n < N; ++n) acc[n][v] = M::fma(M::load(px + n * a.sw * C + v * W), wtv, acc[n][v]);
            }
          }
        }
        for (int n = 0; n < N; ++n)
          for (int v = 0; v < NV; ++v) M::store(o + (ow + n) * C + v * W, dwconv_act<M>(acc[n][v], a.act));
      };
      int64_t ow = 0;
      for (; ow + OB <= a.wo; ow += OB) step(ow, std::integral_constant<int, OB>{});
      for (; ow < a.wo; ++ow) step(ow, std::integral_constant<int, 1>{});
    }
    // the band's outputs: flat pixels [oh0 * wo, oh1 * wo) of each output plane
    const int64_t n = (oh1 - oh0) * a.wo;
    float* y = a.y + oh0 * a.wo;
    int64_t q = 0;
    for (; q + P <= n; q += P)
      for (int64_t c = 0; c < C; c += P) Tr(out + q * C + c, C, y + c * ohw + q, ohw);
    for (; q < n; ++q)
      for (int64_t k = 0; k < C; ++k) y[k * ohw + q] = out[q * C + k];
  }
}

template <class M, DwTransposeFn Tr, int CB, int OB>
void dwconv_blocked(const DwBlockArgs& a) {
  if (a.kh == 3 && a.kw == 3) return dwconv_blocked_impl<M, Tr, CB, OB, 3, 3>(a);
  if (a.kh == 5 && a.kw == 5) return dwconv_blocked_impl<M, Tr, CB, OB, 5, 5>(a);
  dwconv_blocked_impl<M, Tr, CB, OB, 0, 0>(a);
}

}  // namespace
}  // namespace pysparse
