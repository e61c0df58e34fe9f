// Transformer kernel tests without a framework: every kernel of
// kernels-transformer.inc that this CPU runs, against a double-precision
// reference and against its scalar twin. Run by CTest (test_kernels_transformer),
// natively and under qemu-aarch64 (Cortex-A72, A76) for the NEON kernels; a few
// seconds natively. Prints "N passed, M failed", exits non-zero on a failure.
//
// erf is swept over float bit patterns (every 1999th of [0, 8], then its negation)
// against std::erf in double; GELU likewise over [-30, 30]; layer norm and
// attention over odd shapes, head dims 1..64, strides, masks and non-finite values;
// the sparse products' epilogue (epilogue.h) against the same ISA's GELU kernel.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "dispatch.h"
#include "epilogue.h"
#include "tests/expect.h"
#include "transformer.h"

using namespace pysparse;

namespace {

// Tolerances, named once (the Python tests use the same names and values).
constexpr double kErfAtol = 2e-7;        // |erf - erf_double|, whole float range
constexpr double kGeluRtolOfX = 2.5e-7;  // |gelu - gelu_double| <= this * |x| (+ 1e-37 for subnormals)
constexpr double kLayerNormAtol = 2e-6;  // per unit of max(|weight|) + |bias|, float32 vs double
constexpr double kAttentionAtol = 2e-6;  // relative to max |v| of the head, float32 vs double
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

using test::expect;
using test::failed;
using test::passed;

// Same value, NaN equal to NaN.
bool same(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

const TfKernelInfo* twin(const TfKernelInfo& k) {
  for (const TfKernelInfo& s : all_tf_kernels())
    if (s.isa == Isa::scalar && s.op == k.op) return &s;
  return nullptr;
}

double gelu_ref(double x, TfOp op) {
  if (op == TfOp::gelu_tanh) return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
  if (x < -5) return 0.5 * x * std::erfc(-x / std::sqrt(2.0));  // no cancellation in the reference
  return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
}

std::vector<float> run_elementwise(const TfKernelInfo& k, const std::vector<float>& x) {
  std::vector<float> y(x.size(), -12345.0f);
  tf_kernel<TfOp::erf>(k)(ElementwiseArgs{x.data(), y.data(), static_cast<int64_t>(x.size())});
  return y;
}

std::vector<float> sweep(float lo, float hi, uint32_t step) {
  std::vector<float> xs;
  uint32_t b0, b1;
  const float z = 0.0f;
  std::memcpy(&b0, &z, 4);
  std::memcpy(&b1, &hi, 4);
  for (uint32_t b = b0; b <= b1; b += step) {
    float v;
    std::memcpy(&v, &b, 4);
    if (v >= lo || -v >= lo) xs.push_back(v);
    if (-v <= hi && -v >= lo) xs.push_back(-v);
  }
  for (float v : {0.0f, -0.0f, 1e-45f, -1e-45f, 1e-38f, 0.921875f, -0.921875f, 0.92187494f, 3.9f, 4.0f, 10.0f, 30.0f})
    if (v >= lo && v <= hi) xs.push_back(v);
  return xs;
}

void test_elementwise(const TfKernelInfo& k) {
  const TfKernelInfo* s = twin(k);
  expect(s != nullptr, std::string(k.name) + " has a scalar twin");
  if (s == nullptr) return;
  const bool is_erf = k.op == TfOp::erf;
  const std::vector<float> xs = is_erf ? sweep(-8.0f, 8.0f, 1999) : sweep(-30.0f, 30.0f, 1999);
  const std::vector<float> y = run_elementwise(k, xs), y0 = run_elementwise(*s, xs);
  double worst = 0, worst_x = 0, worst_twin = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const double x = xs[i];
    const double ref = is_erf ? std::erf(x) : gelu_ref(x, k.op);
    const double err = std::fabs(y[i] - ref), bound = is_erf ? kErfAtol : kGeluRtolOfX * std::fabs(x) + 1e-37;
    if (err / bound > worst) worst = err / bound, worst_x = x;
    const double twin_bound = is_erf ? 2 * kErfAtol : 2 * bound;
    worst_twin = std::max(worst_twin, std::fabs(y[i] - y0[i]) / twin_bound);
  }
  char what[256];
  std::snprintf(what, sizeof what, "%s: %zu points, worst error %.3g of the bound at x=%.9g", k.name, xs.size(), worst,
                worst_x);
  expect(worst <= 1.0, what);
  std::printf("  %s\n", what);
  expect(worst_twin <= 1.0, std::string(k.name) + " vs scalar twin");
  // Beyond the sweep, non-finite values, odd lengths (the tail buffer), in place.
  const std::vector<float> special = {kNaN, kInf, -kInf, 1e30f, -1e30f, 3e38f, -3e38f, 60.0f, -60.0f};
  const std::vector<float> ys = run_elementwise(k, special);
  for (size_t i = 0; i < special.size(); ++i) {
    const double x = special[i];
    double ref;
    if (is_erf) {
      ref = std::erf(x);
    } else if (std::isnan(x)) {
      ref = x;
    } else if (std::isinf(x)) {
      ref = x > 0 ? x : kNaN;  // x/2 (1 + f(x)) taken literally: -inf * 0
    } else {
      ref = x > 0 ? x : -0.0;
    }
    char w[128];
    std::snprintf(w, sizeof w, "%s(%g) = %g, expected %g", k.name, x, ys[i], ref);
    expect(same(ys[i], ref) || (!std::isnan(ref) && std::fabs(ys[i] - ref) <= 1e-7 * std::fabs(ref)), w);
  }
  for (int64_t n : {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47}) {  // tails of 4, 8 and 16 lanes
    std::vector<float> x(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) x[i] = 0.37f * static_cast<float>(i) - 2.0f;
    std::vector<float> inplace = x;
    tf_kernel<TfOp::erf>(k)(ElementwiseArgs{inplace.data(), inplace.data(), n});
    const std::vector<float> out = run_elementwise(k, x), out0 = run_elementwise(*s, x);
    bool ok = true;
    for (int64_t i = 0; i < n; ++i) ok = ok && inplace[i] == out[i] && std::fabs(out[i] - out0[i]) <= 1e-6;
    expect(ok, std::string(k.name) + " n=" + std::to_string(n) + " in place and tail");
  }
}

void test_layernorm(const TfKernelInfo& k, std::mt19937& rng) {
  const TfKernelInfo* s = twin(k);
  if (s == nullptr) return expect(false, std::string(k.name) + " has a scalar twin");
  std::normal_distribution<float> normal;
  for (int64_t C : {1, 2, 3, 7, 8, 9, 31, 32, 33, 65, 384, 1000})
    for (int64_t rows : {1, 3, 8})
      for (int variant = 0; variant < 4; ++variant) {
        const bool res = variant & 1, affine = variant & 2;
        const float offset = variant == 3 ? 1000.0f : 0.0f;  // large mean, small spread
        const int64_t ld = C + 5;                             // strided rows
        std::vector<float> x(static_cast<size_t>(rows * ld)), r(x.size()), w(C), b(C);
        for (float& v : x) v = normal(rng) + offset;
        for (float& v : r) v = normal(rng);
        for (float& v : w) v = normal(rng);
        for (float& v : b) v = normal(rng);
        LayerNormArgs a{x.data(), ld, res ? r.data() : nullptr, ld, affine ? w.data() : nullptr,
                        affine ? b.data() : nullptr, nullptr, C, rows, C, 1e-5f};
        std::vector<float> y(static_cast<size_t>(rows * C)), y0(y.size());
        a.y = y.data();
        tf_kernel<TfOp::layernorm>(k)(a);
        a.y = y0.data();
        tf_kernel<TfOp::layernorm>(*s)(a);
        double err = 0, err_twin = 0, scale = 1e-30;
        for (int64_t i = 0; i < rows; ++i) {
          double mean = 0, var = 0;
          std::vector<double> z(C);
          // z = x + res rounded to float32 first, as any float32 layer norm (torch's too) sees it
          for (int64_t j = 0; j < C; ++j) z[j] = res ? x[i * ld + j] + r[i * ld + j] : x[i * ld + j];
          for (double v : z) mean += v;
          mean /= C;
          for (double v : z) var += (v - mean) * (v - mean);
          var /= C;
          for (int64_t j = 0; j < C; ++j) {
            const double ref = (z[j] - mean) / std::sqrt(var + 1e-5) * (affine ? w[j] : 1.0) + (affine ? b[j] : 0.0);
            err = std::max(err, std::fabs(y[i * C + j] - ref));
            err_twin = std::max(err_twin, std::fabs(static_cast<double>(y[i * C + j]) - y0[i * C + j]));
            scale = std::max(scale, affine ? std::fabs(w[j]) * std::fabs((z[j] - mean) / std::sqrt(var + 1e-5)) +
                                                 std::fabs(b[j])
                                           : std::fabs((z[j] - mean) / std::sqrt(var + 1e-5)));
          }
        }
        const double tol = kLayerNormAtol;
        char what[200];
        std::snprintf(what, sizeof what, "%s C=%lld rows=%lld res=%d affine=%d offset=%g", k.name,
                      static_cast<long long>(C), static_cast<long long>(rows), res, affine, offset);
        expect(err / scale <= tol, std::string(what) + " vs float64");
        expect(err_twin / scale <= 2 * tol, std::string(what) + " vs scalar twin");
      }
  // In place (y == x), a NaN row, an inf row: only those rows are NaN.
  const int64_t C = 37;
  std::vector<float> x(3 * C);
  for (float& v : x) v = normal(rng);
  std::vector<float> ref(x.size());
  tf_kernel<TfOp::layernorm>(*s)(LayerNormArgs{x.data(), C, nullptr, 0, nullptr, nullptr, ref.data(), C, 3, C, 1e-12f});
  x[C + 5] = kNaN;
  x[2 * C + 7] = kInf;
  tf_kernel<TfOp::layernorm>(k)(LayerNormArgs{x.data(), C, nullptr, 0, nullptr, nullptr, x.data(), C, 3, C, 1e-12f});
  bool ok = true;
  for (int64_t j = 0; j < C; ++j) ok = ok && std::fabs(x[j] - ref[j]) <= 1e-5 && std::isnan(x[C + j]) && std::isnan(x[2 * C + j]);
  expect(ok, std::string(k.name) + " in place; NaN and inf rows are NaN, the others unchanged");
}

// Attention of one head: q (S, D), k, v (T, D) with row strides, mask (T) or null.
void attention_ref(const float* q, int64_t ldq, const float* kk, int64_t ldk, const float* v, int64_t ldv,
                   const float* mask, int64_t S, int64_t T, int64_t D, double scale, std::vector<double>& out) {
  out.assign(static_cast<size_t>(S * D), 0.0);
  std::vector<double> s(T);
  for (int64_t i = 0; i < S; ++i) {
    double mx = -INFINITY;
    for (int64_t j = 0; j < T; ++j) {
      double dot = 0;
      for (int64_t d = 0; d < D; ++d) dot += static_cast<double>(q[i * ldq + d]) * kk[j * ldk + d];
      s[j] = dot * scale + (mask ? mask[j] : 0.0f);
      mx = std::max(mx, s[j]);
    }
    double sum = 0;
    for (int64_t j = 0; j < T; ++j) sum += (s[j] = std::exp(s[j] - mx));
    for (int64_t j = 0; j < T; ++j)
      for (int64_t d = 0; d < D; ++d) out[i * D + d] += s[j] / sum * v[j * ldv + d];
  }
}

void test_attention(const TfKernelInfo& k, std::mt19937& rng) {
  const TfKernelInfo* s = twin(k);
  if (s == nullptr) return expect(false, std::string(k.name) + " has a scalar twin");
  std::normal_distribution<float> normal;
  std::vector<float> scratch_a, scratch_b;
  auto run = [&](const TfKernelInfo& kern, AttentionArgs a, std::vector<float>& scratch) {
    scratch.assign(static_cast<size_t>(attention_scratch_floats(a.keys, a.dim)), kNaN);  // must not be read unwritten
    a.scratch = scratch.data();
    tf_kernel<TfOp::attention>(kern)(a);
  };
  // Head dims and keys on both sides of every vector width (4, 8, 16) and of
  // kAttentionPad (16): 8 and 17 take the padded copy of V, 16, 32, 64 read it in place.
  for (int64_t D : {1, 3, 8, 16, 17, 32, 64})
    for (int64_t T : {1, 2, 7, 9, 15, 16, 17, 33, 130})
      for (int64_t S : {1, 3, 4, 5, 32})
        for (int masked = 0; masked < 2; ++masked) {
          if (D == 64 && T == 130 && S != 5) continue;  // keeps qemu fast
          // V packed (ldv == D) in the masked runs: read in place when D is whole vectors of 16
          const int64_t ldq = 3 * D + 1, ldk = 3 * D + 1, ldv = masked ? D : 3 * D + 1, ldo = D + 2;
          std::vector<float> q(S * ldq), kk(T * ldk), v(T * ldv), mask(T, 0.0f);
          for (float& x : q) x = normal(rng);
          for (float& x : kk) x = normal(rng);
          for (float& x : v) x = normal(rng);
          if (masked)
            for (int64_t j = 0; j < T; ++j) mask[j] = (j % 3 == 1) ? -3.4028235e38f : 0.0f;
          const float scale = 1.0f / std::sqrt(static_cast<float>(D));
          std::vector<float> out(S * ldo, -7.0f), out0(S * ldo, -7.0f);
          AttentionArgs a{q.data(), ldq, kk.data(), ldk, v.data(), ldv, masked ? mask.data() : nullptr,
                          out.data(), ldo, S, T, D, scale, nullptr};
          run(k, a, scratch_a);
          a.out = out0.data();
          run(*s, a, scratch_b);
          std::vector<double> ref;
          attention_ref(q.data(), ldq, kk.data(), ldk, v.data(), ldv, masked ? mask.data() : nullptr, S, T, D, scale, ref);
          double err = 0, err_twin = 0, vmax = 1e-30;
          bool untouched = true;
          for (float x : v) vmax = std::max<double>(vmax, std::fabs(x));
          for (int64_t i = 0; i < S; ++i) {
            for (int64_t d = 0; d < D; ++d) {
              err = std::max(err, std::fabs(out[i * ldo + d] - ref[i * D + d]));
              err_twin = std::max(err_twin, std::fabs(static_cast<double>(out[i * ldo + d]) - out0[i * ldo + d]));
            }
            untouched = untouched && out[i * ldo + D] == -7.0f && out[i * ldo + D + 1] == -7.0f;
          }
          char what[200];
          std::snprintf(what, sizeof what, "%s S=%lld T=%lld D=%lld masked=%d", k.name, static_cast<long long>(S),
                        static_cast<long long>(T), static_cast<long long>(D), masked);
          expect(err / vmax <= kAttentionAtol, std::string(what) + " vs float64");
          expect(err_twin / vmax <= 2 * kAttentionAtol, std::string(what) + " vs scalar twin");
          expect(untouched, std::string(what) + " writes only dim columns per row");
        }
  // Fully masked rows: finite finfo.min -> the mean of v; -inf -> zeros; NaN in q -> its row only.
  const int64_t S = 3, T = 11, D = 5;
  std::vector<float> q(S * D), kk(T * D), v(T * D), out(S * D);
  for (float& x : q) x = normal(rng);
  for (float& x : kk) x = normal(rng);
  for (float& x : v) x = normal(rng);
  std::vector<float> mask(T, -3.4028235e38f);
  AttentionArgs a{q.data(), D, kk.data(), D, v.data(), D, mask.data(), out.data(), D, S, T, D, 0.5f, nullptr};
  run(k, a, scratch_a);
  bool uniform = true;
  for (int64_t d = 0; d < D; ++d) {
    double mean = 0;
    for (int64_t j = 0; j < T; ++j) mean += v[j * D + d];
    mean /= T;
    for (int64_t i = 0; i < S; ++i) uniform = uniform && std::fabs(out[i * D + d] - mean) <= 1e-6;
  }
  expect(uniform, std::string(k.name) + " finite mask on every key: uniform weights");
  std::fill(mask.begin(), mask.end(), -kInf);
  run(k, a, scratch_a);
  bool zeros = true;
  for (float x : out) zeros = zeros && x == 0.0f;
  expect(zeros, std::string(k.name) + " -inf mask on every key: zeros, no NaN");
  std::fill(mask.begin(), mask.end(), 0.0f);
  q[1 * D + 2] = kNaN;
  run(k, a, scratch_a);
  bool nan_row = true;
  for (int64_t d = 0; d < D; ++d) nan_row = nan_row && std::isnan(out[D + d]) && std::isfinite(out[d]) && std::isfinite(out[2 * D + d]);
  expect(nan_row, std::string(k.name) + " NaN in one query: exactly that row is NaN");
}

// The sparse products' epilogue (epilogue.h) of one ISA: act(y) (+ r) over n
// floats against the same ISA's GELU kernel and plain relu / relu6, every
// length around the vector width (tails), NaN / inf, and nothing written past n.
void test_epilogue(Isa isa, std::mt19937& rng) {
  const EpilogueFn fn = select_epilogue(isa);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  const Activation acts[] = {Activation::none, Activation::relu, Activation::relu6, Activation::gelu_erf,
                             Activation::gelu_tanh};
  const float specials[] = {kNaN, kInf, -kInf, 0.0f, -0.0f, 6.0f, 1e30f, -1e30f, 1e-40f};
  for (Activation act : acts) {
    bool ok = true;
    for (int64_t n : {0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100}) {
      for (bool with_r : {false, true}) {
        std::vector<float> x(n + 4), r(n), y;
        for (auto& v : x) v = normal(rng);
        for (auto& v : r) v = normal(rng);
        for (int64_t i = 0; i < n && i < 9; ++i) x[(i * 5) % n] = specials[i];
        y = x;
        fn(EpilogueArgs{y.data(), with_r ? r.data() : nullptr, n, act});
        std::vector<float> a(x.begin(), x.begin() + n);
        if (act == Activation::gelu_erf || act == Activation::gelu_tanh) {
          const TfKernelInfo& g = select_tf_kernel(isa, act == Activation::gelu_erf ? TfOp::gelu_erf : TfOp::gelu_tanh);
          tf_kernel<TfOp::gelu_erf>(g)(ElementwiseArgs{x.data(), a.data(), n});
        }
        for (int64_t i = 0; i < n; ++i) {
          double want = a[i];
          if (act == Activation::relu) want = std::isnan(x[i]) ? x[i] : std::max(0.0f, x[i]);
          if (act == Activation::relu6) want = std::isnan(x[i]) ? x[i] : std::min(6.0f, std::max(0.0f, x[i]));
          const double bound = with_r ? 1.2e-7 * (std::fabs(want) + std::fabs(r[i])) : 0.0;
          if (with_r) want = static_cast<float>(want) + static_cast<double>(r[i]);
          const double got = y[i];
          if (!(same(got, want) || (std::isfinite(want) && std::fabs(got - want) <= bound))) ok = false;
        }
        for (int64_t i = n; i < n + 4; ++i) ok = ok && same(y[i], x[i]);  // nothing past n
      }
    }
    expect(ok, std::string("f32_epilogue__") + isa_name(isa) + " " + activation_name(act));
  }
}

}  // namespace

int main() {
  std::mt19937 rng(20261202);
  std::printf("transformer kernels, cpu %s, runnable:", cpu_features().arch.c_str());
  for (Isa isa : runnable_isas()) std::printf(" %s", isa_name(isa));
  std::printf("\n");
  int tested = 0;
  for (const TfKernelInfo& k : all_tf_kernels()) {
    if (!isa_supported(k.isa)) continue;
    switch (k.op) {
      case TfOp::erf:
      case TfOp::gelu_erf:
      case TfOp::gelu_tanh: test_elementwise(k); break;
      case TfOp::layernorm: test_layernorm(k, rng); break;
      case TfOp::attention: test_attention(k, rng); break;
    }
    std::printf("tested %s\n", k.name);
    ++tested;
  }
  expect(tested >= 5, "every op has a kernel that runs here");
  for (Isa isa : runnable_isas()) {
    test_epilogue(isa, rng);
    std::printf("tested f32_epilogue__%s\n", isa_name(isa));
  }
  std::printf("%d kernels: %d passed, %d failed\n", tested, passed, failed);
  return failed == 0 ? 0 : 1;
}
