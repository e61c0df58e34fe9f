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
// float range. GELU uses a rational erf of its own (gelu_erf below).
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

// GELU, exact form: x/2 (1 + erf(x / sqrt 2)). The contract is accuracy relative
// to |x| (2.5e-7 |x|, tests/test_transformer_kernels.cc), i.e. erf to an absolute
// 5e-7, so no exp and no tail formula are needed: erf(z) = z P(z^2) / Q(z^2) on
// |z| <= 3.8 (P of degree 5, Q of degree 5 with Q(0) = 1; 1.0e-8 in exact
// arithmetic), +-1 beyond (1 - erf(3.8) = 7.7e-8). 25 operations, one of them a
// division: half of the erfc-and-exp form this replaced, which cost 1 ns per
// element on a Zen 3 core, 11% of the MiniLM forward at 128 tokens. For x in
// (-5.4, -4) GELU is x/2 (1 + erf) with 1 + erf a few ulps of 1: within the
// contract, not relatively accurate. NaN in, NaN out (x carries it); -inf gives
// NaN as torch's -inf * 0.
template <class M>
inline typename M::V gelu_erf(typename M::V x) {
  using V = typename M::V;
  const V c = M::set1(3.8f);
  const V zx = M::mul(x, M::set1(0.7071067811865476f));
  const V nc = M::sub(M::zero(), c);
  const V z = M::min(M::max(zx, nc), c);
  const V t = M::mul(z, z);
  V p = M::set1(2.132284351e-06f);
  p = M::fma(p, t, M::set1(2.879906822e-04f));
  p = M::fma(p, t, M::set1(3.693058451e-03f));
  p = M::fma(p, t, M::set1(5.254564618e-02f));
  p = M::fma(p, t, M::set1(1.881027373e-01f));
  p = M::fma(p, t, M::set1(1.128379075e+00f));
  V q = M::set1(3.909897499e-05f);
  q = M::fma(q, t, M::set1(1.153617386e-03f));
  q = M::fma(q, t, M::set1(1.482181631e-02f));
  q = M::fma(q, t, M::set1(1.132494153e-01f));
  q = M::fma(q, t, M::set1(5.000339701e-01f));
  q = M::fma(q, t, M::set1(1.0f));
  V e = M::div(M::mul(z, p), q);  // erf(z)
  // Past the clamp erf is +-1 exactly: GELU is x and -0 there (not x/2 times erf(3.8)'s 6e-8
  // of rounding: -1e30 would give -6e22), and -inf gives NaN, +inf inf.
  e = M::select(M::gt(zx, c), M::set1(1.0f), M::select(M::lt(zx, nc), M::set1(-1.0f), e));
  const V h = M::mul(x, M::set1(0.5f));
  return M::fma(h, e, h);
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
