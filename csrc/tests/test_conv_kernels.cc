// Direct dense convolution kernel tests without a framework: every kernel of
// kernels-conv.inc that this CPU runs, against a double-precision reference
// and against its scalar twin (same summation order), over random odd shapes,
// 1..4 input channels, output channels not a multiple of the block, kernel
// sizes 1..7, strides 1..3, paddings 0..3, every activation, non-finite
// inputs, and the driver on 1..4 threads (bitwise the same). Run by CTest
// (test_kernels_conv), natively and under qemu-aarch64 for NEON.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "conv.h"
#include "parallel.h"
#include "tests/expect.h"

using namespace pysparse;

namespace {

constexpr double kAtol = 1e-5;  // per unit of sum |w x| + |b|, float32 vs double (the Python tests' ATOL)

using test::expect;

bool same(float a, float b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

struct Case {
  int64_t n, c, cout, h, w, kh, kw, sh, sw, ph, pw;
  DwAct act;
  int64_t ho() const { return (h + 2 * ph - kh) / sh + 1; }
  int64_t wo() const { return (w + 2 * pw - kw) / sw + 1; }
};

void reference(const Case& k, const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& b,
               std::vector<double>& y, std::vector<double>& scale) {
  const int64_t ho = k.ho(), wo = k.wo(), kk = k.c * k.kh * k.kw;
  y.assign(k.n * k.cout * ho * wo, 0.0);
  scale.assign(y.size(), 0.0);
  for (int64_t img = 0; img < k.n; ++img)
    for (int64_t o = 0; o < k.cout; ++o)
      for (int64_t oh = 0; oh < ho; ++oh)
        for (int64_t ow = 0; ow < wo; ++ow) {
          double s = b[o], a = std::fabs(b[o]);
          for (int64_t ci = 0; ci < k.c; ++ci)
            for (int64_t p = 0; p < k.kh; ++p)
              for (int64_t q = 0; q < k.kw; ++q) {
                const int64_t ih = oh * k.sh + p - k.ph, iw = ow * k.sw + q - k.pw;
                const double xv =
                    (ih >= 0 && ih < k.h && iw >= 0 && iw < k.w) ? x[((img * k.c + ci) * k.h + ih) * k.w + iw] : 0.0;
                const double t = double(w[o * kk + (ci * k.kh + p) * k.kw + q]) * xv;
                s += t;
                a += std::fabs(t);
              }
          if (k.act != DwAct::none) s = std::isnan(s) ? s : std::max(0.0, s);
          if (k.act == DwAct::relu6) s = std::isnan(s) ? s : std::min(6.0, s);
          const int64_t i = ((img * k.cout + o) * ho + oh) * wo + ow;
          y[i] = s;
          scale[i] = a;
        }
}

std::vector<float> run(const Case& k, const std::vector<float>& x, const std::vector<float>& w,
                       const std::vector<float>& b, const ConvKernelInfo& kern, int threads) {
  std::vector<float> y(k.n * k.cout * k.ho() * k.wo(), -12345.0f);
  conv2d_direct(ConvDirectProblem{x.data(), w.data(), b.data(), y.data(), k.n, k.c, k.cout, k.h, k.w, k.ho(), k.wo(),
                                  k.kh, k.kw, k.sh, k.sw, k.ph, k.pw, k.act},
                threads, &kern);
  return y;
}

std::string name(const Case& k, const ConvKernelInfo& kern) {
  char buf[220];
  std::snprintf(buf, sizeof buf, "%s n%lld c%lld->%lld %lldx%lld k%lldx%lld s%lldx%lld p%lldx%lld act%d", kern.name,
                (long long)k.n, (long long)k.c, (long long)k.cout, (long long)k.h, (long long)k.w, (long long)k.kh,
                (long long)k.kw, (long long)k.sh, (long long)k.sw, (long long)k.ph, (long long)k.pw, int(k.act));
  return buf;
}

}  // namespace

int main() {
  std::mt19937 rng(15);
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const ConvKernelInfo& scalar = select_conv_kernel(Isa::scalar);
  for (int trial = 0; trial < 200; ++trial) {
    Case k{};
    const int ks[] = {1, 2, 3, 3, 3, 4, 5, 7};
    k.kh = ks[uni(0, 7)];
    k.kw = trial % 3 == 0 ? ks[uni(0, 7)] : k.kh;
    k.sh = uni(1, 3), k.sw = trial % 4 == 0 ? uni(1, 3) : k.sh;
    k.ph = uni(0, 3), k.pw = uni(0, 3);
    k.h = uni(std::max<int64_t>(1, k.kh - 2 * k.ph), 19), k.w = uni(std::max<int64_t>(1, k.kw - 2 * k.pw), 23);
    k.n = uni(1, 2), k.c = uni(1, 4), k.cout = uni(1, 11);
    k.act = static_cast<DwAct>(uni(0, 2));
    std::vector<float> x(k.n * k.c * k.h * k.w), w(k.cout * k.c * k.kh * k.kw), b(k.cout);
    for (float& v : x) v = normal(rng) * 3.0f;
    for (float& v : w) v = normal(rng);
    for (float& v : b) v = normal(rng);
    const bool nonfinite = trial % 5 == 0;
    if (nonfinite) {
      const float specials[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                                -std::numeric_limits<float>::infinity()};
      for (int j = 0; j < 3; ++j) x[uni(0, int(x.size()) - 1)] = specials[uni(0, 2)];
    }
    std::vector<double> ref, scale;
    reference(k, x, w, b, ref, scale);
    const std::vector<float> twin = run(k, x, w, b, scalar, 1);
    for (const ConvKernelInfo& kern : all_conv_kernels()) {
      if (!isa_supported(kern.isa)) continue;
      const std::vector<float> y = run(k, x, w, b, kern, 1);
      bool ok_ref = true, ok_twin = true;
      for (size_t i = 0; i < y.size(); ++i) {
        if (std::isfinite(ref[i])) {
          ok_ref = ok_ref && std::fabs(y[i] - ref[i]) <= kAtol * (scale[i] + 1e-30);
        } else if (!nonfinite || std::isfinite(scale[i])) {
          ok_ref = ok_ref && same(y[i], float(ref[i]));
        } else {
          ok_ref = ok_ref && !std::isfinite(y[i]);  // inf - inf in a different order: never finite
        }
        ok_twin = ok_twin && (std::isnan(y[i]) == std::isnan(twin[i])) &&
                  (!std::isfinite(twin[i]) || std::fabs(y[i] - twin[i]) <= kAtol * (scale[i] + 1e-30));
      }
      expect(ok_ref, name(k, kern) + " vs double reference");
      expect(ok_twin, name(k, kern) + " vs scalar twin");
      for (int threads = 2; threads <= 4; ++threads) {
        const std::vector<float> yt = run(k, x, w, b, kern, threads);
        bool eq = true;
        for (size_t i = 0; i < y.size(); ++i) eq = eq && same(y[i], yt[i]);
        expect(eq, name(k, kern) + " threads " + std::to_string(threads) + " bitwise equal to 1 thread");
      }
    }
  }
  std::printf("%d passed, %d failed\n", test::passed, test::failed);
  return test::failed == 0 ? 0 : 1;
}
