// Kernel tests without a framework: every kernel of one family in kernels.inc
// that this CPU runs, against its scalar twin and against a double-precision
// product of the dense matrix. Built once per family (PYSPARSE_TEST_FAMILY =
// csr | bsr | nm) and run by CTest, natively and under qemu-aarch64 for cross
// builds. Prints "N passed, M failed" and exits non-zero on any failure.
//
// Sizes follow ruy/XNNPACK practice: 1-10, tile-1 / tile / tile+1 around 4, 8
// and 64, odd primes; densities empty to fully dense; empty rows; uint16 and
// uint32 indices; n = 1 and batches around the vector width.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "dispatch.h"
#include "tests/expect.h"
#include "kernels.h"
#include "matrix-bsr.h"
#include "matrix-nm.h"
#include "matrix-sell.h"

using namespace pysparse;

namespace {

// Tolerances, relative to the largest sum of |terms| of one result: the scale
// float32 rounding error grows with (|reference| itself can cancel to ~0).
constexpr double kVsFloat64 = 2e-5;  // float32 sums vs double
constexpr double kVsTwin = 2 * kVsFloat64;  // two paths, each within kVsFloat64 of the truth

using test::expect;
using test::failed;
using test::passed;

// max |y - ref| / max(scale), scale[i] = |bias| + sum |a_ik x_kj|.
double relerr(const std::vector<float>& y, const std::vector<double>& ref, const std::vector<double>& scale) {
  double err = 0, s = 1e-30;
  for (size_t i = 0; i < ref.size(); ++i) {
    err = std::max(err, std::fabs(y[i] - ref[i]));
    s = std::max(s, scale[i]);
  }
  return err / s;
}

double relerr(const std::vector<float>& y, const std::vector<float>& ref, const std::vector<double>& scale) {
  return relerr(y, std::vector<double>(ref.begin(), ref.end()), scale);
}

// Dense M x K with the requested structure; density is the share of kept
// (blocks | N:M slots | weights).
std::vector<float> make_dense(std::mt19937& rng, int64_t M, int64_t K, double density, Format f, int R, int C,
                              int n, int m, int empty_rows) {
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<double> uni;
  std::vector<float> a(static_cast<size_t>(M * K), 0.0f);
  if (f == Format::nm) {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t g = 0; g < K; g += m) {
        const int64_t width = std::min<int64_t>(m, K - g);
        std::vector<int64_t> cols(static_cast<size_t>(width));
        for (int64_t c = 0; c < width; ++c) cols[c] = g + c;
        std::shuffle(cols.begin(), cols.end(), rng);
        for (int64_t s = 0; s < std::min<int64_t>(n, width); ++s)
          if (uni(rng) < density * 2) a[i * K + cols[s]] = normal(rng);
      }
  } else {
    for (int64_t b = 0; b < (M + R - 1) / R; ++b)
      for (int64_t jb = 0; jb < (K + C - 1) / C; ++jb) {
        if (!(uni(rng) < density)) continue;
        for (int64_t i = b * R; i < std::min<int64_t>(M, (b + 1) * R); ++i)
          for (int64_t k = jb * C; k < std::min<int64_t>(K, (jb + 1) * C); ++k) a[i * K + k] = normal(rng);
      }
  }
  for (int e = 0; e < empty_rows && M > 0; ++e) {
    const int64_t i = static_cast<int64_t>(rng() % M);
    std::fill(a.begin() + i * K, a.begin() + (i + 1) * K, 0.0f);
  }
  return a;
}

// ref = a X + bias in double, X[k, j] = x[k * ldx + j]; scale = the same sum of |terms|.
void reference(const std::vector<float>& a, int64_t M, int64_t K, const std::vector<float>& x, int64_t ldx, int64_t n,
               const std::vector<float>& bias, std::vector<double>& ref, std::vector<double>& scale) {
  ref.assign(static_cast<size_t>(M * n), 0.0);
  scale.assign(static_cast<size_t>(M * n), 0.0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = bias[i], sa = std::fabs(bias[i]);
      for (int64_t kk = 0; kk < K; ++kk) {
        const double t = static_cast<double>(a[i * K + kk]) * x[kk * ldx + j];
        s += t;
        sa += std::fabs(t);
      }
      ref[i * n + j] = s;
      scale[i * n + j] = sa;
    }
}

std::vector<float> run(const KernelInfo& k, const SparseMatrix& w, const std::vector<float>& x, int64_t n,
                       const std::vector<float>& bias) {
  std::vector<float> y(static_cast<size_t>(w.rows() * n), -12345.0f);
  const SpmmArgs args{&w.view(), 0, w.block_rows(), n, x.data(), n, y.data(), n, 1, bias.data()};
  k.fn(args);
  return y;
}

const KernelInfo* twin(const KernelInfo& k) {
  for (const KernelInfo& s : all_kernels())
    if (s.isa == Isa::scalar && s.format == k.format && s.block_r == k.block_r && s.batch == k.batch) return &s;
  return nullptr;
}

void test_kernel(const KernelInfo& k, std::mt19937& rng) {
  const KernelInfo* scalar = twin(k);
  expect(scalar != nullptr, std::string(k.name) + " has a scalar twin");
  if (scalar == nullptr) return;
  std::vector<int64_t> rows = {1, 2, 7, 8, 9, 17, 65};
  if (k.format == Format::sell) rows.push_back(kSellWindow * 2 + 13);  // several sort windows
  // 700: several 256-column panels, which dense-ish CSR at n >= 32 runs in (spmm-nx.inl).
  const std::vector<int64_t> cols = {1, 4, 5, 8, 13, 67, 700, 70001};
  std::vector<int64_t> batches = {1};
  // Around 8 (AVX2), 16 (AVX-512) and the tile widths (32 ... 256 columns): every
  // tail of 1-15 columns under a mask, after full tiles and alone.
  if (k.batch == Batch::nx) batches = {2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 16, 17, 24, 31, 33, 47, 48, 64, 65, 129, 271};
  std::vector<std::pair<int, int>> shapes;  // (C, 0) for bsr/csr; (n, m) for nm
  if (k.format == Format::csr || k.format == Format::sell) shapes = {{1, 0}};
  if (k.format == Format::bsr) shapes = {{1, 0}, {2, 0}, {5, 0}};
  if (k.format == Format::nm) shapes = {{1, 2}, {2, 2}, {1, 4}, {2, 4}, {3, 4}, {1, 8}, {2, 8}, {8, 8}};
  std::normal_distribution<float> normal;
  for (int64_t M : rows)
    for (int64_t K : cols) {
      const bool wide = K > 65536;  // uint32 indices: a few rows, batches, densities suffice
      if (wide && M > 9) continue;
      for (auto [p, q] : shapes)
        for (double density : {0.0, 0.05, 0.4, 1.0}) {
          if (wide && density > 0.05) continue;
          if (K == 700 && (density < 0.4 || (M != 9 && M != 65))) continue;
          const bool nm = k.format == Format::nm;
          const int C = nm ? 1 : p;
          if (!nm && C > K) continue;
          const bool sell = k.format == Format::sell;
          const std::vector<float> a = make_dense(rng, M, K, density, k.format, nm || sell ? 1 : k.block_r, C, p, q,
                                                  static_cast<int>(M / 4));
          const SparseMatrix w = nm     ? pysparse::nm::from_dense(a.data(), M, K, K, p, q)
                                 : sell ? pysparse::sell::from_csr(bsr::from_dense(a.data(), M, K, K, 1, 1))
                                        : bsr::from_dense(a.data(), M, K, K, k.block_r, C);
          for (int64_t n : batches) {
            if (wide && n > 5) continue;
            if (n > 65 && (K > 67 || M > 17 || density == 0.05)) continue;  // the widest tiles: a few shapes suffice
            std::vector<float> x(static_cast<size_t>(K * n)), bias(static_cast<size_t>(M));
            for (float& v : x) v = normal(rng);
            for (float& v : bias) v = normal(rng);
            std::vector<double> ref, scale;
            reference(a, M, K, x, n, n, bias, ref, scale);
            const std::vector<float> y = run(k, w, x, n, bias);
            const std::vector<float> y0 = run(*scalar, w, x, n, bias);
            char what[256];
            std::snprintf(what, sizeof what, "%s M=%lld K=%lld %d:%d density=%.2f n=%lld", k.name,
                          static_cast<long long>(M), static_cast<long long>(K), p, q, density,
                          static_cast<long long>(n));
            expect(relerr(y, ref, scale) <= kVsFloat64, std::string(what) + " vs float64");
            expect(relerr(y, y0, scale) <= kVsTwin, std::string(what) + " vs scalar twin");
          }
        }
    }
}

// ldx == 1 < n: X's rows overlap (row k is x[k .. k + n)), as the direct
// convolution (bindings/testing.cc, spmm_shifted) runs the nx kernels. x holds exactly
// K - 1 + n floats, so a read past the last row's n columns would show under
// ASan / valgrind, and a wrong result here.
void test_overlapping_rows(const KernelInfo& k, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  for (int64_t M : {1, 7, 9, 17})
    for (int64_t K : {1, 5, 67, 70001})
      for (double density : {0.0, 0.3, 1.0}) {
        if (K > 65536 && M > 7) continue;  // uint32 indices: a few rows suffice
        const bool sell = k.format == Format::sell;
        const std::vector<float> a = make_dense(rng, M, K, density, k.format, sell ? 1 : k.block_r, 1, 0, 0, 1);
        const SparseMatrix w = sell ? pysparse::sell::from_csr(bsr::from_dense(a.data(), M, K, K, 1, 1))
                                    : bsr::from_dense(a.data(), M, K, K, k.block_r, 1);
        for (int64_t n : {2, 7, 8, 9, 15, 16, 17, 64, 65}) {
          std::vector<float> x(static_cast<size_t>(K - 1 + n)), bias(static_cast<size_t>(M));
          for (float& v : x) v = normal(rng);
          for (float& v : bias) v = normal(rng);
          std::vector<double> ref, scale;
          reference(a, M, K, x, 1, n, bias, ref, scale);
          std::vector<float> y(static_cast<size_t>(M * n), -12345.0f);
          k.fn(SpmmArgs{&w.view(), 0, w.block_rows(), n, x.data(), 1, y.data(), n, 1, bias.data()});
          char what[256];
          std::snprintf(what, sizeof what, "%s ldx=1 M=%lld K=%lld density=%.2f n=%lld", k.name,
                        static_cast<long long>(M), static_cast<long long>(K), density, static_cast<long long>(n));
          expect(relerr(y, ref, scale) <= kVsFloat64, what);
        }
      }
}

// Unstructured formats store no zeros a row does not have, so an inf in a row
// of X that no weight uses must not reach Y. SELL pads finished lanes with
// zeros at column 0 and the CSR n1 kernels over-read past a row's end: both
// must mask, not multiply 0 * inf. Column 0 of W is empty, row 0 of X is inf.
void test_inf_in_unused_column(const KernelInfo& k, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  const float inf = std::numeric_limits<float>::infinity();
  const bool sell = k.format == Format::sell;
  for (int64_t M : {int64_t{9}, int64_t{17}, int64_t{65}, kSellWindow + 13})
    for (int64_t K : {5, 67})
      for (double density : {0.05, 0.3, 1.0}) {
        std::vector<float> a = make_dense(rng, M, K, density, k.format, 1, 1, 0, 0, static_cast<int>(M / 4));
        for (int64_t i = 0; i < M; ++i) a[i * K] = 0.0f;
        const SparseMatrix w = sell ? pysparse::sell::from_csr(bsr::from_dense(a.data(), M, K, K, 1, 1))
                                    : bsr::from_dense(a.data(), M, K, K, 1, 1);
        for (int64_t n : k.batch == Batch::n1 ? std::vector<int64_t>{1} : std::vector<int64_t>{9, 16, 43}) {
          std::vector<float> x(static_cast<size_t>(K * n)), bias(static_cast<size_t>(M));
          for (float& v : x) v = normal(rng);
          for (float& v : bias) v = normal(rng);
          std::vector<double> ref, scale;
          reference(a, M, K, x, n, n, bias, ref, scale);  // x's row 0 still finite here
          for (int64_t j = 0; j < n; ++j) x[j] = inf;
          const std::vector<float> y = run(k, w, x, n, bias);
          bool finite = true;
          for (float v : y) finite = finite && std::isfinite(v);
          char what[256];
          std::snprintf(what, sizeof what, "%s inf in unused column 0, M=%lld K=%lld density=%.2f n=%lld", k.name,
                        static_cast<long long>(M), static_cast<long long>(K), density, static_cast<long long>(n));
          expect(finite && relerr(y, ref, scale) <= kVsFloat64, what);
        }
      }
}

bool family_is(Format f) {
  const std::string fam = PYSPARSE_TEST_FAMILY;
  // SELL is CSR rearranged: tested with the csr family.
  return (fam == "csr" && (f == Format::csr || f == Format::sell)) || (fam == "bsr" && f == Format::bsr) || (fam == "nm" && f == Format::nm);
}

void test_transposes(std::mt19937& rng) {
  std::normal_distribution<float> normal;
  for (Isa isa : runnable_isas()) {
    const TransposeFn fn = select_transpose(isa);
    for (int64_t rows : {1, 3, 8, 9, 33, 130})
      for (int64_t cols : {1, 4, 7, 8, 17, 64, 65}) {
        std::vector<float> src(static_cast<size_t>(rows * cols)), dst(static_cast<size_t>(rows * cols), -1.0f);
        for (float& v : src) v = normal(rng);
        fn(TransposeArgs{src.data(), cols, 0, rows, cols, dst.data(), rows});
        bool ok = true;
        for (int64_t i = 0; i < rows; ++i)
          for (int64_t j = 0; j < cols; ++j) ok = ok && dst[j * rows + i] == src[i * cols + j];
        expect(ok, std::string("transpose ") + isa_name(isa) + " " + std::to_string(rows) + "x" + std::to_string(cols));
      }
  }
}

}  // namespace

int main() {
  std::mt19937 rng(20261124);
  std::printf("family %s, cpu %s, runnable:", PYSPARSE_TEST_FAMILY, cpu_features().arch.c_str());
  for (Isa isa : runnable_isas()) std::printf(" %s", isa_name(isa));
  std::printf("\n");
  int tested = 0;
  for (const KernelInfo& k : all_kernels()) {
    if (!family_is(k.format) || !isa_supported(k.isa)) continue;
    test_kernel(k, rng);
    if (k.format != Format::nm && k.batch == Batch::nx) test_overlapping_rows(k, rng);
    if (k.format == Format::csr || k.format == Format::sell) test_inf_in_unused_column(k, rng);
    std::printf("tested %s\n", k.name);
    ++tested;
  }
  expect(tested > 0, "at least one kernel of the family runs here");
  if (std::string(PYSPARSE_TEST_FAMILY) == "csr") test_transposes(rng);
  std::printf("%d kernels: %d passed, %d failed\n", tested, passed, failed);
  return failed == 0 ? 0 : 1;
}
