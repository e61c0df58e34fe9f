// Depthwise convolution kernel tests without a framework: every kernel of
// kernels-dwconv.inc that this CPU runs, against a double-precision reference
// and bitwise against its scalar twin (same summation order), over random odd
// shapes, kernel sizes 1..5 (3x3 and 5x5 unrolled, the rest generic), strides
// 1..3, paddings 0..3, every activation, non-finite inputs, and the driver on
// 1..4 threads (bitwise the same). Each blocked kernel (8 channels at a time)
// must equal the planes kernel of its ISA bitwise (the same fma order per
// output), over channel counts below, at and above multiples of 8 (the C % 8
// channels left over run as planes). Run by CTest (test_kernels_dwconv),
// natively and under qemu-aarch64 for NEON; well under a second natively.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "dwconv.h"
#include "parallel.h"
#include "tests/expect.h"

using namespace pysparse;

namespace {

constexpr double kDwAtol = 1e-5;  // per unit of sum |w x| + |b|, float32 vs double (the Python tests' kDwAtol)

using test::expect;

bool same(float a, float b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

struct Case {
  int64_t n, c, h, w, kh, kw, sh, sw, ph, pw;
  DwAct act;
  int64_t ho() const { return (h + 2 * ph - kh) / sh + 1; }
  int64_t wo() const { return (w + 2 * pw - kw) / sw + 1; }
};

// y and the scale sum |w x| + |b| per output, in double.
void reference(const Case& k, const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& b,
               std::vector<double>& y, std::vector<double>& scale) {
  const int64_t ho = k.ho(), wo = k.wo();
  y.assign(k.n * k.c * ho * wo, 0.0);
  scale.assign(y.size(), 0.0);
  for (int64_t i = 0; i < k.n * k.c; ++i) {
    const int64_t ch = i % k.c;
    for (int64_t oh = 0; oh < ho; ++oh)
      for (int64_t ow = 0; ow < wo; ++ow) {
        double s = b[ch], a = std::fabs(b[ch]);
        for (int64_t p = 0; p < k.kh; ++p)
          for (int64_t q = 0; q < k.kw; ++q) {
            const int64_t ih = oh * k.sh + p - k.ph, iw = ow * k.sw + q - k.pw;
            const double xv = (ih >= 0 && ih < k.h && iw >= 0 && iw < k.w) ? x[(i * k.h + ih) * k.w + iw] : 0.0;
            s += double(w[ch * k.kh * k.kw + p * k.kw + q]) * xv;
            a += std::fabs(double(w[ch * k.kh * k.kw + p * k.kw + q]) * xv);
          }
        if (k.act != DwAct::none) s = std::isnan(s) ? s : std::max(0.0, s);
        if (k.act == DwAct::relu6) s = std::isnan(s) ? s : std::min(6.0, s);
        y[(i * ho + oh) * wo + ow] = s;
        scale[(i * ho + oh) * wo + ow] = a;
      }
  }
}

std::vector<float> run(const Case& k, const std::vector<float>& x, const std::vector<float>& w,
                       const std::vector<float>& b, const DwKernelInfo& kern, int threads) {
  std::vector<float> y(k.n * k.c * k.ho() * k.wo(), -12345.0f);
  dwconv2d(DwConvProblem{x.data(), w.data(), b.data(), y.data(), k.n, k.c, k.h, k.w, k.ho(), k.wo(), k.kh, k.kw,
                         k.sh, k.sw, k.ph, k.pw, k.act},
           threads, &kern);
  return y;
}

std::string name(const Case& k, const DwKernelInfo& kern) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "%s n%lld c%lld %lldx%lld k%lldx%lld s%lldx%lld p%lldx%lld act%d", kern.name,
                (long long)k.n, (long long)k.c, (long long)k.h, (long long)k.w, (long long)k.kh, (long long)k.kw,
                (long long)k.sh, (long long)k.sw, (long long)k.ph, (long long)k.pw, int(k.act));
  return buf;
}

}  // namespace

int main() {
  std::mt19937 rng(15);
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const DwKernelInfo& scalar = select_dw_kernel(Isa::scalar);
  for (int trial = 0; trial < 300; ++trial) {
    Case k{};
    const int ks[] = {1, 2, 3, 3, 3, 4, 5, 5};
    k.kh = ks[uni(0, 7)];
    k.kw = trial % 3 == 0 ? ks[uni(0, 7)] : k.kh;
    k.sh = uni(1, 3), k.sw = trial % 4 == 0 ? uni(1, 3) : k.sh;
    k.ph = uni(0, 3), k.pw = uni(0, 3);
    k.h = uni(std::max<int64_t>(1, k.kh - 2 * k.ph), 20), k.w = uni(std::max<int64_t>(1, k.kw - 2 * k.pw), 23);
    const int channels[] = {1, 2, 5, 7, 8, 9, 15, 16, 17, 24, 31};
    k.n = uni(1, 3), k.c = trial % 2 ? uni(1, 9) : channels[uni(0, 10)];
    if (trial % 10 == 0) k.h = uni(20, 40), k.w = uni(60, 130);  // several bands of output rows
    k.act = static_cast<DwAct>(uni(0, 2));
    std::vector<float> x(k.n * k.c * k.h * k.w), w(k.c * k.kh * k.kw), b(k.c);
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
    for (const DwKernelInfo& kern : all_dw_kernels()) {
      if (!isa_supported(kern.isa)) continue;
      const std::vector<float> y = run(k, x, w, b, kern, 1);
      bool ok_ref = true, ok_twin = true;
      for (size_t i = 0; i < y.size(); ++i) {
        if (std::isfinite(ref[i])) {
          ok_ref = ok_ref && std::fabs(y[i] - ref[i]) <= kDwAtol * (scale[i] + 1e-30);
        } else if (!nonfinite || std::isfinite(scale[i])) {
          ok_ref = ok_ref && same(y[i], float(ref[i]));
        } else {
          // inf - inf in a different order: NaN or inf either way, never finite
          ok_ref = ok_ref && !std::isfinite(y[i]);
        }
        // FMA contraction may differ from the scalar twin's a * b + c by an ulp; NaN positions must match
        ok_twin = ok_twin && (std::isnan(y[i]) == std::isnan(twin[i])) &&
                  (!std::isfinite(twin[i]) || std::fabs(y[i] - twin[i]) <= kDwAtol * (scale[i] + 1e-30));
      }
      if (kern.engine == DwEngine::blocked) {
        const std::vector<float> yp = run(k, x, w, b, select_dw_kernel(kern.isa, DwEngine::planes), 1);
        bool eq = true;
        for (size_t i = 0; i < y.size(); ++i) eq = eq && same(y[i], yp[i]);
        expect(eq, name(k, kern) + " bitwise equal to the planes kernel of its ISA");
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
