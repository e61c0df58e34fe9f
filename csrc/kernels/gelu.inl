// The elementwise engine over vector traits: y[i] = f(x[i]) for n contiguous
// floats, f one of vmath.inl's gelu_erf, gelu_tanh, erf.
//
// Contract: no alignment; reads exactly x[0, n), writes exactly y[0, n); y may
// be x (each element is read before it is written, one vector at a time). The
// last n % width elements go through a width-sized stack buffer, so the tail
// runs the same vector code as the body (and the scalar twin's result is the
// same function), with no masked loads to emulate on NEON.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/vmath.inl"

namespace pysparse {
namespace {

template <class M, typename M::V (*f)(typename M::V)>
void elementwise(const ElementwiseArgs& a) {
  constexpr int64_t W = M::kWidth;
  const float* x = a.x;
  float* y = a.y;
  int64_t i = 0;
  for (; i + 2 * W <= a.n; i += 2 * W) {  // two independent chains per iteration
    const auto v0 = M::load(x + i), v1 = M::load(x + i + W);
    M::store(y + i, f(v0));
    M::store(y + i + W, f(v1));
  }
  for (; i + W <= a.n; i += W) M::store(y + i, f(M::load(x + i)));
  if (i < a.n) {
    float buf[W] = {};
    const size_t rest = static_cast<size_t>(a.n - i);
    std::memcpy(buf, x + i, rest * sizeof(float));
    M::store(buf, f(M::load(buf)));
    std::memcpy(y + i, buf, rest * sizeof(float));
  }
}

}  // namespace
}  // namespace pysparse

// One ISA's three elementwise kernels, from its traits struct.
#define PYSPARSE_DEFINE_GELU_KERNELS(Traits, isa)                                                           \
  void f32_gelu_erf__##isa(const ElementwiseArgs& a) { elementwise<Traits, &gelu_erf<Traits>>(a); }   \
  void f32_gelu_tanh__##isa(const ElementwiseArgs& a) { elementwise<Traits, &gelu_tanh<Traits>>(a); } \
  void f32_erf__##isa(const ElementwiseArgs& a) { elementwise<Traits, &erf<Traits>>(a); }
