// Layer norm with the residual add fused, over vector traits.
//
// Per row: pass 1 reads x and res once (the only passes over memory the caller
// owns) and writes z = x + res into y while summing z; m = sum / C. Pass 2
// reads z back from y (the row is in L1: 384 floats for MiniLM) and sums d =
// z - m and d^2; the mean is then m + sum(d) / C and the variance sum(d^2) / C
// - (sum(d) / C)^2 (z - mean is taken as (z - m) - sum(d) / C): the corrected two-pass algorithm (Chan, Golub and LeVeque),
// whose correction term removes the rounding error of m to first order, so a
// row with a large mean and a small spread keeps its variance (float32 only,
// no float64). Pass 3 writes (z - mean) * (rstd * weight) + bias. Sums run in
// four vector accumulators (4 * width partial sums): error ~ (C / (4 width) +
// log2(4 width)) ulp instead of C ulp.
//
// Contract: no alignment; reads x, res (if any) exactly once per element, and
// weight/bias [0, C); writes y [0, C) per row; y may be x or res. Non-finite
// values: a NaN or inf anywhere in a row gives NaN for the whole row, as torch.
#pragma once

#include <cmath>
#include <cstdint>

namespace pysparse {
namespace {

template <class M>
void layernorm(const LayerNormArgs& a) {
  using V = typename M::V;
  constexpr int64_t W = M::kWidth;
  const int64_t C = a.cols;
  const int64_t body = C - C % (4 * W);
  const int64_t vec = C - C % W;
  const float inv_c = 1.0f / static_cast<float>(C);
  for (int64_t row = 0; row < a.rows; ++row) {
    const float* x = a.x + row * a.ldx;
    const float* r = a.res != nullptr ? a.res + row * a.ldr : nullptr;
    float* y = a.y + row * a.ldy;
    // pass 1: z = x + res into y, sum z
    V s0 = M::zero(), s1 = M::zero(), s2 = M::zero(), s3 = M::zero();
    auto z_at = [&](int64_t j) {
      V z = M::load(x + j);
      if (r != nullptr) z = M::add(z, M::load(r + j));
      M::store(y + j, z);
      return z;
    };
    int64_t j = 0;
    for (; j < body; j += 4 * W) {
      s0 = M::add(s0, z_at(j));
      s1 = M::add(s1, z_at(j + W));
      s2 = M::add(s2, z_at(j + 2 * W));
      s3 = M::add(s3, z_at(j + 3 * W));
    }
    for (; j < vec; j += W) s0 = M::add(s0, z_at(j));
    float tail = 0.0f;
    for (; j < C; ++j) {
      y[j] = r != nullptr ? x[j] + r[j] : x[j];
      tail += y[j];
    }
    const float m = (M::hsum(M::add(M::add(s0, s1), M::add(s2, s3))) + tail) * inv_c;
    // pass 2: sum d and d^2, d = z - m
    const V mv = M::set1(m);
    V d0 = M::zero(), d1 = M::zero(), q0 = M::zero(), q1 = M::zero();
    for (j = 0; j + 2 * W <= vec; j += 2 * W) {
      const V a0 = M::sub(M::load(y + j), mv), a1 = M::sub(M::load(y + j + W), mv);
      d0 = M::add(d0, a0);
      d1 = M::add(d1, a1);
      q0 = M::fma(a0, a0, q0);
      q1 = M::fma(a1, a1, q1);
    }
    for (; j < vec; j += W) {
      const V a0 = M::sub(M::load(y + j), mv);
      d0 = M::add(d0, a0);
      q0 = M::fma(a0, a0, q0);
    }
    float dt = 0.0f, qt = 0.0f;
    for (; j < C; ++j) {
      const float d = y[j] - m;
      dt += d;
      qt += d * d;
    }
    const float sd = (M::hsum(M::add(d0, d1)) + dt) * inv_c;
    float var = (M::hsum(M::add(q0, q1)) + qt) * inv_c - sd * sd;
    if (var < 0.0f) var = 0.0f;  // rounding only; a NaN stays NaN
    const float rstd = 1.0f / std::sqrt(var + a.eps);
    // pass 3: y = (z - mean) * rstd * weight + bias, z - mean as (z - m) - sd: m + sd
    // rounded to float32 would cost half an ulp of the mean (1000 -> 3e-5) per element
    const V sdv = M::set1(sd), rv = M::set1(rstd);
    for (j = 0; j < vec; j += W) {
      const V d = M::sub(M::sub(M::load(y + j), mv), sdv);
      const V g = a.weight != nullptr ? M::mul(rv, M::load(a.weight + j)) : rv;
      const V b = a.bias != nullptr ? M::load(a.bias + j) : M::zero();
      M::store(y + j, M::fma(d, g, b));
    }
    for (; j < C; ++j) {
      const float g = a.weight != nullptr ? rstd * a.weight[j] : rstd;
      const float b = a.bias != nullptr ? a.bias[j] : 0.0f;
      y[j] = ((y[j] - m) - sd) * g + b;
    }
  }
}

}  // namespace
}  // namespace pysparse
