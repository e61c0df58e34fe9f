// The epilogue engine over vector traits (vmath-*.h): y = act(y) (+ r) over n
// contiguous floats, one template per activation so the loop has no branch.
//
// Contract: no alignment; reads exactly y[0, n) and r[0, n), writes exactly
// y[0, n). The last n % width elements go through a width-sized stack buffer,
// so the tail runs the same vector code as the body (no masked loads to
// emulate on NEON), as in gelu.inl.
#pragma once

#include <cstdint>
#include <cstring>

#include "epilogue.h"
#include "kernels/vmath.inl"

namespace pysparse {
namespace {

template <class M>
struct ActNone {
  static typename M::V f(typename M::V x) { return x; }
};
template <class M>
struct ActRelu {
  // max(0, x) keeps a NaN x on every ISA (x86 returns the second operand).
  static typename M::V f(typename M::V x) { return M::max(M::zero(), x); }
};
template <class M>
struct ActRelu6 {
  static typename M::V f(typename M::V x) { return M::min(M::set1(6.0f), M::max(M::zero(), x)); }
};
template <class M>
struct ActGeluErf {
  static typename M::V f(typename M::V x) { return gelu_erf<M>(x); }
};
template <class M>
struct ActGeluTanh {
  static typename M::V f(typename M::V x) { return gelu_tanh<M>(x); }
};

template <class M, class Act, bool kResidual>
void epilogue_loop(float* y, const float* r, int64_t n) {
  constexpr int64_t W = M::kWidth;
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    auto v = Act::f(M::load(y + i));
    if (kResidual) v = M::add(v, M::load(r + i));
    M::store(y + i, v);
  }
  if (i < n) {
    float yb[W] = {}, rb[W] = {};
    const size_t rest = static_cast<size_t>(n - i);
    std::memcpy(yb, y + i, rest * sizeof(float));
    if (kResidual) std::memcpy(rb, r + i, rest * sizeof(float));
    auto v = Act::f(M::load(yb));
    if (kResidual) v = M::add(v, M::load(rb));
    M::store(yb, v);
    std::memcpy(y + i, yb, rest * sizeof(float));
  }
}

template <class M, template <class> class Act>
void epilogue_act(const EpilogueArgs& a) {
  if (a.r != nullptr) {
    epilogue_loop<M, Act<M>, true>(a.y, a.r, a.n);
  } else {
    epilogue_loop<M, Act<M>, false>(a.y, nullptr, a.n);
  }
}

template <class M>
void epilogue_engine(const EpilogueArgs& a) {
  switch (a.act) {
    case Activation::none:
      if (a.r != nullptr) epilogue_loop<M, ActNone<M>, true>(a.y, a.r, a.n);
      return;
    case Activation::relu: return epilogue_act<M, ActRelu>(a);
    case Activation::relu6: return epilogue_act<M, ActRelu6>(a);
    case Activation::gelu_erf: return epilogue_act<M, ActGeluErf>(a);
    case Activation::gelu_tanh: return epilogue_act<M, ActGeluTanh>(a);
  }
}

}  // namespace
}  // namespace pysparse

#define PYSPARSE_DEFINE_EPILOGUE_KERNEL(Traits, isa) \
  void f32_epilogue__##isa(const EpilogueArgs& a) { epilogue_engine<Traits>(a); }
