// Int8 kernel tests (CTest family "qs8"): every kernel of kernels-qs8.inc this
// CPU runs against an exact int64 reference of the integer sums followed by the
// contract's epilogue (qformats.h), bit for bit, and against its scalar twin;
// every prologue against the scalar one, bit for bit, on rows with outliers,
// zeros, tiny values, NaN and infinity. Prints "N passed, M failed".
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "epilogue.h"
#include "kernels/qs8-common.h"
#include "parallel.h"
#include "qdispatch.h"
#include "qkernels.h"
#include "qlinear.h"
#include "qmatrix.h"

using namespace pysparse;

namespace {

int passed = 0, failed = 0;

void expect(bool ok, const std::string& what) {
  if (ok) {
    ++passed;
  } else {
    ++failed;
    if (failed < 30) std::printf("FAIL %s\n", what.c_str());
  }
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::vector<float> activations(std::mt19937& rng, int64_t n, int64_t K, int mode) {
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<size_t>(n * K));
  for (float& v : x) v = normal(rng);
  if (mode == 1 && !x.empty()) x[rng() % x.size()] = 1e30f;                  // a huge outlier
  if (mode == 2 && n > 1) std::fill(x.begin(), x.begin() + K, 0.0f);          // an all-zero row
  if (mode == 3 && !x.empty()) x[rng() % x.size()] = std::numeric_limits<float>::quiet_NaN();
  if (mode == 4 && !x.empty()) x[rng() % x.size()] = -std::numeric_limits<float>::infinity();
  if (mode == 5) for (float& v : x) v *= 1e-35f;                               // below kQTinyRow
  if (mode == 6) for (size_t i = 0; i < x.size(); ++i) x[i] = (i % 3 == 0) ? 0.5f : -2.5f;  // ties at .5
  return x;
}

void test_quantize(std::mt19937& rng) {
  for (QIsa isa : runnable_qisas())
    for (int64_t batch : {1, 3, 8, 9, 17, 33})
      for (int64_t K : {0, 1, 3, 4, 7, 8, 9, 31, 64, 101})
        for (int mode = 0; mode < 7; ++mode) {
          const std::vector<float> x = activations(rng, batch, K, mode);
          // batch > 16: tiles of kQTile rows (the nt layout), else one tile of the padded batch (nx)
          const int64_t stride = batch == 1 ? 1 : batch > kQTile ? kQTile : (batch + 7) / 8 * 8, G = (K + 3) / 4;
          const int64_t npad = (batch + stride - 1) / stride * stride;
          std::vector<int8_t> q0(static_cast<size_t>(G * npad * 4 + 64), 7), q1 = q0;
          std::vector<float> s0(static_cast<size_t>(batch)), s1 = s0;
          qs8_quantize(x.data(), K, batch, K, stride, q0.data(), s0.data(), QIsa::scalar);
          qs8_quantize(x.data(), K, batch, K, stride, q1.data(), s1.data(), isa);
          // The scalar prologue against the contract itself.
          bool ok = true;
          for (int64_t j = 0; j < batch; ++j) {
            float amax = 0;
            bool bad = false;
            for (int64_t k = 0; k < K; ++k) {
              const float v = std::fabs(x[j * K + k]);
              bad |= !std::isfinite(v);
              amax = std::max(amax, v);
            }
            if (bad) ok &= std::isnan(s0[j]);
            else if (amax < kQTinyRow) ok &= s0[j] == 0.0f;
            else ok &= s0[j] == amax / 127.0f;
            for (int64_t k = 0; k < G * 4; ++k) {
              const int8_t q = q0[qs8::xq_offset(j, k, stride, G)];
              int want = 0;
              if (k < K && !bad && amax >= kQTinyRow) want = static_cast<int>(std::nearbyint(x[j * K + k] * (127.0f / amax)));
              ok &= q == want && q >= -127;
            }
          }
          const std::string what = std::string("quantize ") + qisa_name(isa) + " batch " + std::to_string(batch) +
                                   " K " + std::to_string(K) + " mode " + std::to_string(mode);
          expect(ok, what + " (scalar vs contract)");
          expect(q0 == q1 && std::memcmp(s0.data(), s1.data(), s0.size() * 4) == 0, what + " (vs scalar)");
          // flipped (the VNNI input): every byte of the scalar result xor 0x80
          std::vector<int8_t> q2(q0.size(), 7);
          qs8_quantize(x.data(), K, batch, K, stride, q2.data(), s1.data(), isa, 0x80);
          bool flipped = true;
          for (int64_t j = 0; j < batch; ++j)
            for (int64_t k = 0; k < G * 4; ++k) {
              const int64_t o = qs8::xq_offset(j, k, stride, G);
              flipped &= q2[o] == static_cast<int8_t>(q0[o] ^ 0x80);
            }
          expect(flipped, what + " (flipped)");
        }
}

const QKernelInfo* twin(const QKernelInfo& k) {
  for (const QKernelInfo& s : all_qkernels())
    if (s.isa == QIsa::scalar && s.format == k.format && s.block_r == k.block_r && s.batch == k.batch) return &s;
  return nullptr;
}

void test_kernel(const QKernelInfo& k, std::mt19937& rng) {
  const QKernelInfo* scalar = twin(k);
  expect(scalar != nullptr, std::string(k.name) + " has a scalar twin");
  if (scalar == nullptr) return;
  std::uniform_real_distribution<double> uni;
  std::uniform_int_distribution<int> w8(-128, 127);
  const std::vector<int64_t> batches = k.batch == QBatch::n1   ? std::vector<int64_t>{1}
                                      : k.batch == QBatch::nx ? std::vector<int64_t>{8, 16, 24}
                                                              : std::vector<int64_t>{1, 3, 8, 9, 16, 17, 33};
  const int R = k.block_r;
  for (int64_t M : {1, 3, 4, 7, 8, 9, 17, 33})
    for (int64_t K : {1, 2, 3, 4, 5, 7, 8, 13, 64, 67, 301})
      for (double density : {0.0, 0.15, 0.6, 1.0})
        for (int64_t n : batches)
          for (int mode : {0, 1, 3}) {
            if (mode != 0 && (K != 13 || M != 9)) continue;
            std::vector<int8_t> q(static_cast<size_t>(M * K), 0);
            for (int64_t b = 0; b < (M + R - 1) / R; ++b)
              for (int64_t g = 0; g < (K + 3) / 4; ++g) {
                if (!(uni(rng) < density)) continue;
                for (int64_t i = b * R; i < std::min<int64_t>(M, b * R + R); ++i)
                  for (int64_t c = g * 4; c < std::min<int64_t>(K, g * 4 + 4); ++c) q[i * K + c] = static_cast<int8_t>(w8(rng));
              }
            if (M > 2) std::fill(q.begin() + K, q.begin() + 2 * K, int8_t{-128});  // row 1: all -128
            std::vector<float> scales(static_cast<size_t>(M));
            for (int64_t i = 0; i < M; ++i) scales[i] = i == 0 ? 0.0f : static_cast<float>(uni(rng) * 0.02);
            const QMatrix w = QMatrix::from_int8(q.data(), M, K, K, scales.data(), M, R, k.format);
            const std::vector<float> x = activations(rng, n, K, mode);
            // nt: tiles of kQTile tokens, the last one padded with zero tokens (the flip byte)
            const bool tiles = k.batch == QBatch::nt;
            const int64_t stride = tiles ? kQTile : n, G = (K + 3) / 4;
            const int64_t npad = (n + stride - 1) / stride * stride;
            std::vector<int8_t> xq(static_cast<size_t>(G * npad * 4 + kQValuePad), 0);
            std::vector<float> xs(static_cast<size_t>(n));
            qs8_quantize(x.data(), K, n, K, stride, xq.data(), xs.data(), QIsa::scalar);
            std::vector<int8_t> xk = xq;  // what this kernel reads: the VNNI ones q + 128
            if (qisa_flips_input(k.isa)) {
              if (tiles) std::fill(xk.begin(), xk.end() - kQValuePad, static_cast<int8_t>(0x80));
              qs8_quantize(x.data(), K, n, K, stride, xk.data(), xs.data(), QIsa::scalar, 0x80);
            }
            std::vector<float> bias(static_cast<size_t>(M));
            for (float& b : bias) b = static_cast<float>(uni(rng) - 0.5);
            for (int relu = 0; relu < 2; ++relu)
              for (int with_bias = 0; with_bias < 2; ++with_bias)
                for (int token_major = 0; token_major < (tiles ? 2 : 1); ++token_major) {
                const float* bp = with_bias ? bias.data() : nullptr;
                // y[i * y_rs + j * y_cs]: feature-major (y_rs n) or, for nt, token-major (y_cs M) too
                std::vector<float> y(static_cast<size_t>(M * n), -7.0f), y0 = y, ref = y;
                const int64_t y_rs = token_major ? 1 : n, y_cs = token_major ? M : 1;
                const QArgs args{&w.view(), 0, w.block_rows(), n, xk.data(), xs.data(), y.data(), y_rs, y_cs, bp, relu, 0};
                k.fn(args);
                QArgs args0 = args;
                args0.xq = xq.data();
                args0.y = y0.data();
                scalar->fn(args0);
                // The exact reference: int64 sums of the int8 values, then the epilogue.
                for (int64_t i = 0; i < M; ++i)
                  for (int64_t j = 0; j < n; ++j) {
                    int64_t s = 0;
                    for (int64_t c = 0; c < K; ++c) s += int64_t{q[i * K + c]} * xq[qs8::xq_offset(j, c, stride, G)];
                    ref[i * y_rs + j * y_cs] = qs8::epilogue(static_cast<int32_t>(s), scales[i], xs[j], bp ? bp[i] : 0.0f, relu != 0);
                  }
                const std::string what = std::string(k.name) + " M " + std::to_string(M) + " K " + std::to_string(K) +
                                         " density " + std::to_string(density) + " n " + std::to_string(n) + " mode " +
                                         std::to_string(mode) + " relu " + std::to_string(relu) + " bias " +
                                         std::to_string(with_bias) + " token-major " + std::to_string(token_major);
                expect(same_bits(y, ref), what + " (vs exact reference)");
                expect(same_bits(y, y0), what + " (vs scalar twin)");
              }
          }
}

// The driver with every thread count and every int8 ISA gives the scalar ISA's
// bits (its split never changes a sum; the nt and nx paths compute the same),
// and its fused epilogue (GELU + residual) what the epilogue kernel gives on
// the plain output.
void test_driver(std::mt19937& rng) {
  std::uniform_int_distribution<int> w8(-127, 127);
  std::normal_distribution<float> normal;
  const QIsa saved = active_qisa();
  for (int64_t batch : {1, 5, 16, 32, 50})
    for (int f = 0; f < 3; ++f) {
      const int64_t M = 77, K = 131;
      const int R = f == 1 ? 4 : 8;
      const QFormat format = f == 2 ? QFormat::qdense : QFormat::qbsr;
      std::vector<int8_t> q(static_cast<size_t>(M * K));
      for (auto& v : q) v = rng() % 4 == 0 ? static_cast<int8_t>(w8(rng)) : 0;
      std::vector<float> scales(static_cast<size_t>(M), 0.01f), bias(static_cast<size_t>(M));
      for (float& b : bias) b = normal(rng);
      const QMatrix w = QMatrix::from_int8(q.data(), M, K, K, scales.data(), M, R, format);
      const std::vector<float> x = activations(rng, batch, K, 0);
      std::vector<float> res(static_cast<size_t>(batch * M));
      for (float& r : res) r = normal(rng);
      std::vector<float> y1(static_cast<size_t>(batch * M)), yt = y1;
      set_active_qisa(QIsa::scalar);
      qlinear(w, x.data(), K, batch, y1.data(), bias.data(), false, 1);
      const std::string what = " batch " + std::to_string(batch) + " format " + std::to_string(f);
      for (QIsa isa : runnable_qisas()) {
        set_active_qisa(isa);
        for (int t = 1; t <= 4; ++t) {
          set_num_threads(t);
          std::fill(yt.begin(), yt.end(), -1.0f);
          qlinear(w, x.data(), K, batch, yt.data(), bias.data(), false, t);
          expect(same_bits(y1, yt), std::string("qlinear ") + qisa_name(isa) + " threads " + std::to_string(t) + what);
          // the fused epilogue vs the epilogue kernel on the plain output
          std::vector<float> ye = y1, yf(y1.size());
          select_epilogue(active_isa())(EpilogueArgs{ye.data(), res.data(), static_cast<int64_t>(ye.size()),
                                                     Activation::gelu_erf});
          Epilogue ep;
          ep.act = Activation::gelu_erf;
          ep.residual = res.data();
          qlinear(w, x.data(), K, batch, yf.data(), bias.data(), false, t, nullptr, ep);
          expect(same_bits(ye, yf), std::string("qlinear + gelu + residual ") + qisa_name(isa) + " threads " +
                                        std::to_string(t) + what);
        }
      }
      set_num_threads(1);
    }
  set_active_qisa(saved);
}

}  // namespace

int main() {
  std::mt19937 rng(20261202);
  test_quantize(rng);
  for (const QKernelInfo& k : all_qkernels()) {
    if (!qisa_supported(k.isa)) continue;
    test_kernel(k, rng);
  }
  test_driver(rng);
  std::printf("qs8 kernels (ISAs:");
  for (QIsa isa : runnable_qisas()) std::printf(" %s", qisa_name(isa));
  std::printf("): %d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
