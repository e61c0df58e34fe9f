// Portable int8 kernels and the activation prologue: the fallback on every CPU
// and the oracle every SIMD twin is compared with bit for bit (qformats.h has
// the contract; qs8-common.h the per-row arithmetic all files share).
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/qs8-common.h"
#include "qkernels.h"

namespace pysparse {

namespace {

using qs8::epilogue;

template <int R>
void spmm_n1(const QArgs& a) {
  const QView& w = *a.w;
  const float xs = a.x_scale[0];
  for (int64_t b = a.block_begin; b < a.block_end; ++b) {
    int32_t acc[R] = {};
    for (int64_t p = w.begin(b); p < w.end(b); ++p) {
      const int8_t* x = a.xq + w.group(b, p) * 4;
      const int8_t* blk = w.values + p * R * 4;
      for (int r = 0; r < R; ++r)
        for (int c = 0; c < 4; ++c) acc[r] += int32_t{blk[r * 4 + c]} * int32_t{x[c]};
    }
    for (int r = 0; r < R; ++r) {
      const int64_t i = b * R + r;
      if (i >= w.rows) break;
      a.y[i * a.y_rs] = epilogue(acc[r], w.scales[i], xs, a.bias ? a.bias[i] : 0.0f, a.relu != 0);
    }
  }
}

template <int R>
void spmm_nx(const QArgs& a) {
  const QView& w = *a.w;
  const int64_t n = a.n;
  std::vector<int32_t> acc(static_cast<size_t>(R * n));
  for (int64_t b = a.block_begin; b < a.block_end; ++b) {
    std::fill(acc.begin(), acc.end(), 0);
    for (int64_t p = w.begin(b); p < w.end(b); ++p) {
      const int8_t* xg = a.xq + w.group(b, p) * n * 4;
      const int8_t* blk = w.values + p * R * 4;
      for (int r = 0; r < R; ++r)
        for (int64_t j = 0; j < n; ++j) {
          int32_t s = 0;
          for (int c = 0; c < 4; ++c) s += int32_t{blk[r * 4 + c]} * int32_t{xg[j * 4 + c]};
          acc[r * n + j] += s;
        }
    }
    for (int r = 0; r < R; ++r) {
      const int64_t i = b * R + r;
      if (i >= w.rows) break;
      for (int64_t j = 0; j < n; ++j)
        a.y[i * a.y_rs + j * a.y_cs] =
            epilogue(acc[r * n + j], w.scales[i], a.x_scale[j], a.bias ? a.bias[i] : 0.0f, a.relu != 0);
    }
  }
}

// Token tiles (nt): tile after tile of kQTile tokens, each tile group-major.
template <int R>
void spmm_nt(const QArgs& a) {
  const QView& w = *a.w;
  constexpr int64_t T = kQTile;
  for (int64_t j0 = 0; j0 < a.n; j0 += T) {
    const int8_t* xt = a.xq + (j0 / T) * w.groups * T * 4;
    const int64_t live = std::min<int64_t>(T, a.n - j0);
    for (int64_t b = a.block_begin; b < a.block_end; ++b) {
      int32_t acc[R][T] = {};
      for (int64_t p = w.begin(b); p < w.end(b); ++p) {
        const int8_t* xg = xt + w.group(b, p) * T * 4;
        const int8_t* blk = w.values + p * R * 4;
        for (int r = 0; r < R; ++r)
          for (int64_t t = 0; t < live; ++t) {
            int32_t s = 0;
            for (int c = 0; c < 4; ++c) s += int32_t{blk[r * 4 + c]} * int32_t{xg[t * 4 + c]};
            acc[r][t] += s;
          }
      }
      for (int r = 0; r < R; ++r) {
        const int64_t i = b * R + r;
        if (i >= w.rows) break;
        for (int64_t t = 0; t < live; ++t)
          a.y[i * a.y_rs + (j0 + t) * a.y_cs] =
              epilogue(acc[r][t], w.scales[i], a.x_scale[j0 + t], a.bias ? a.bias[i] : 0.0f, a.relu != 0);
      }
    }
  }
}

}  // namespace

void qs8_spmm_bsr_4x4_nt__scalar(const QArgs& a) { spmm_nt<4>(a); }
void qs8_spmm_bsr_8x4_nt__scalar(const QArgs& a) { spmm_nt<8>(a); }
void qs8_spmm_dense_8x4_nt__scalar(const QArgs& a) { spmm_nt<8>(a); }
void qs8_spmm_bsr_4x4_n1__scalar(const QArgs& a) { spmm_n1<4>(a); }
void qs8_spmm_bsr_4x4_nx__scalar(const QArgs& a) { spmm_nx<4>(a); }
void qs8_spmm_bsr_8x4_n1__scalar(const QArgs& a) { spmm_n1<8>(a); }
void qs8_spmm_bsr_8x4_nx__scalar(const QArgs& a) { spmm_nx<8>(a); }
void qs8_spmm_dense_8x4_n1__scalar(const QArgs& a) { spmm_n1<8>(a); }
void qs8_spmm_dense_8x4_nx__scalar(const QArgs& a) { spmm_nx<8>(a); }

void qs8_quantize__scalar(const QuantizeArgs& a) {
  for (int64_t j = a.row_begin; j < a.row_end; ++j) {
    const float* x = a.x + j * a.ldx;
    float amax = 0.0f;
    bool bad = false;
    qs8::row_max_tail(x, 0, a.cols, amax, bad);
    const qs8::RowScale s = qs8::row_scale(amax, bad);
    a.scale[j] = s.scale;
    if (s.zero) {
      qs8::write_zero_row(a.xq + qs8::xq_row(j, a.rows, a.groups), a.groups, a.rows * 4, a.flip);
    } else {
      qs8::write_tail(a.xq + qs8::xq_row(j, a.rows, a.groups), a.rows * 4, 0, a.cols, a.groups, x, s.inv, a.flip);
    }
  }
}

}  // namespace pysparse
