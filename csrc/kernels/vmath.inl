// exp and erf written once over vector traits (vmath-scalar.h, vmath-avx2.h,
// vmath-neon.h): the softmax's exp, GELU's erf and tanh.
//
// exp_nonpositive(x), x <= 0 (or NaN): every caller passes such x (softmax
// after subtracting the row maximum, exp(-a^2) in erf, exp(-2|u|) in tanh), so
// there is no overflow branch. x = n ln2 + r with n = round(x / ln2), |r| <=
// ln2 / 2, ln2 split Cody-Waite style (the high part has 9 significant bits,
// so n * ln2_hi is exact without an FMA and the scalar twin agrees); exp(r) =
// 1 + r + r^2 Q(r), Q of degree 4 fitted (iterated weighted least squares,
// toward minimax relative error) on [-ln2/2, ln2/2]: 3e-9 relative in exact
// arithmetic, about 1.5 ulp in float32. 2**n goes into the exponent bits.
// Below -87 (where 2**n would go subnormal) the result is 0: a softmax weight
// of e^-87 is 0 in float32 sums anyway. NaN stays NaN, -inf gives 0.
//
// erf: |z| < 0.921875: z P(z^2), P of degree 6 (4e-10 relative in exact
// arithmetic). Beyond: erfc(a) = exp(-a^2) R(t), t = 1 / (1 + a/2), R of degree
// 8 in t fitted on [0.921875, 10] for relative error (8e-9), so the tails keep
// relative accuracy; a is clamped to 10 (erfc(10) = 2e-45 is below float32's
// range: exp flushes it to 0). The measured float32 error
// (tests/test_transformer_kernels.cc) is under 1.3e-7 absolute over the whole
// float range. GELU uses a one-piece erfc instead (gelu_erf below).
// Coefficients: scripts/fit_vmath.py (numpy least squares on Chebyshev nodes,
// reweighted toward minimax) prints every one of them.
#pragma once

namespace pysparse {
namespace {

template <class M>
inline typename M::V exp_nonpositive(typename M::V x) {
  using V = typename M::V;
  const V lo = M::set1(-87.0f);
  const V xc = M::max(lo, x);  // a NaN x is kept (max returns its second operand)
  const V n = M::round(M::mul(xc, M::set1(1.44269504089f)));
  V r = M::fma(n, M::set1(-0.693359375f), xc);
  r = M::fma(n, M::set1(2.12194440e-4f), r);
  V q = M::set1(1.381459126e-03f);
  q = M::fma(q, r, M::set1(8.368712014e-03f));
  q = M::fma(q, r, M::set1(4.166838782e-02f));
  q = M::fma(q, r, M::set1(1.666652067e-01f));
  q = M::fma(q, r, M::set1(4.999999345e-01f));
  const V p = M::add(M::fma(M::mul(r, r), q, r), M::set1(1.0f));
  return M::select(M::lt(x, lo), M::zero(), M::mul(p, M::pow2i(n)));
}

inline constexpr float kErfSplit = 0.921875f;

// The two halves of erf(z): small = z P(z^2) (right for |z| < kErfSplit) and
// tail = erfc(|z|) (right for |z| >= kErfSplit); a = |z|.
template <class M>
struct ErfParts {
  typename M::V a, small, tail;
};

template <class M>
inline ErfParts<M> erf_parts(typename M::V z) {
  using V = typename M::V;
  ErfParts<M> out;
  out.a = M::abs(z);
  const V z2 = M::mul(z, z);
  V p = M::set1(8.398392405e-05f);
  p = M::fma(p, z2, M::set1(-8.149969409e-04f));
  p = M::fma(p, z2, M::set1(5.201733252e-03f));
  p = M::fma(p, z2, M::set1(-2.685971090e-02f));
  p = M::fma(p, z2, M::set1(1.128370183e-01f));
  p = M::fma(p, z2, M::set1(-3.761263421e-01f));
  p = M::fma(p, z2, M::set1(1.128379167e+00f));
  out.small = M::mul(z, p);
  const V one = M::set1(1.0f);
  const V a = M::min(out.a, M::set1(10.0f));  // NaN -> 10 on x86: the caller picks `small` for NaN
  const V t = M::div(one, M::fma(a, M::set1(0.5f), one));
  V r = M::set1(7.574746467e-02f);
  r = M::fma(r, t, M::set1(-1.689812895e-01f));
  r = M::fma(r, t, M::set1(3.736055353e-03f));
  r = M::fma(r, t, M::set1(1.210456040e-01f));
  r = M::fma(r, t, M::set1(1.510375532e-01f));
  r = M::fma(r, t, M::set1(2.549025740e-01f));
  r = M::fma(r, t, M::set1(2.806675264e-01f));
  r = M::fma(r, t, M::set1(2.822292419e-01f));
  r = M::fma(r, t, M::set1(-5.268791635e-06f));
  const V minus_a2 = M::sub(M::zero(), M::mul(a, a));
  out.tail = M::mul(exp_nonpositive<M>(minus_a2), r);
  return out;
}

// erf(z); NaN in, NaN out (ge is false for NaN, so the NaN `small` half is taken).
template <class M>
inline typename M::V erf(typename M::V z) {
  const ErfParts<M> e = erf_parts<M>(z);
  const typename M::V big = M::copysign(M::sub(M::set1(1.0f), e.tail), z);
  return M::select(M::ge(e.a, M::set1(kErfSplit)), big, e.small);
}

// GELU, exact form: x/2 (1 + erf(x / sqrt 2)) = x/2 (2 - erfc(z)) for z > 0 and
// x/2 erfc(|z|) otherwise: no cancellation, relative accuracy for negative x.
// GELU needs 1 + erf, never erf's relative accuracy near 0, so one formula
// serves the whole range: erfc(a) = exp(-a^2) R(t), t = 1 / (1 + 0.47 a), R of
// degree 9 fitted on [0, 9.5] for relative error (7e-9): a third fewer
// operations than erf's two halves, no blend between them.
template <class M>
inline typename M::V gelu_erf(typename M::V x) {
  using V = typename M::V;
  const V z = M::mul(x, M::set1(0.7071067811865476f));
  const V one = M::set1(1.0f);
  const V a = M::min(M::abs(z), M::set1(10.0f));  // NaN -> 10 on x86, but x itself carries the NaN
  const V t = M::div(one, M::fma(a, M::set1(0.47f), one));
  V r = M::set1(-5.475600719e-02f);
  r = M::fma(r, t, M::set1(3.075776524e-01f));
  r = M::fma(r, t, M::set1(-6.529484005e-01f));
  r = M::fma(r, t, M::set1(5.780822325e-01f));
  r = M::fma(r, t, M::set1(-2.110667977e-01f));
  r = M::fma(r, t, M::set1(2.900155765e-01f));
  r = M::fma(r, t, M::set1(2.090636713e-01f));
  r = M::fma(r, t, M::set1(2.691957127e-01f));
  r = M::fma(r, t, M::set1(2.648234574e-01f));
  r = M::fma(r, t, M::set1(1.290492077e-05f));
  const V c = M::mul(exp_nonpositive<M>(M::sub(M::zero(), M::mul(a, a))), r);  // erfc(|z|)
  const V g = M::select(M::gt(z, M::zero()), M::sub(M::set1(2.0f), c), c);
  return M::mul(M::mul(x, M::set1(0.5f)), g);
}

// GELU, tanh form: x/2 (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3). With
// e = exp(-2|u|): (1 + tanh u) / 2 is 1 / (1 + e) for u >= 0 and e / (1 + e)
// for u < 0, so no cancellation either way and exp sees only x <= 0.
template <class M>
inline typename M::V gelu_tanh(typename M::V x) {
  using V = typename M::V;
  const V k0 = M::set1(0.7978845608028654f);
  const V k1 = M::set1(0.7978845608028654f * 0.044715f);
  const V u = M::mul(x, M::fma(k1, M::mul(x, x), k0));
  const V e = exp_nonpositive<M>(M::mul(M::abs(u), M::set1(-2.0f)));
  const V one = M::set1(1.0f);
  const V num = M::select(M::lt(u, M::zero()), e, one);
  return M::mul(x, M::div(num, M::add(one, e)));
}

}  // namespace
}  // namespace pysparse
