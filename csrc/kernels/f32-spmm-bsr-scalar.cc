// Portable scalar SpMM for CSR and BSR: the fallback on every CPU and the oracle
// the SIMD kernels are tested against. One template serves CSR (R = C = 1, the
// 1x1 BSR) and every BSR block shape, so the reference is short enough to be
// obviously right; CSR's scalar twins therefore live here, in BSR's file.
//
// Contract: none beyond SpmmArgs (formats.h). No alignment assumed, nothing read
// past the arrays' ends, any ldx / y strides. Accumulation is in float, in the
// order the blocks are stored.
#include <algorithm>
#include <cstdint>

#include "kernels.h"

namespace pysparse {
namespace {

// kTile columns of Y are accumulated at once; the n1 twins use kTile = 1.
template <class Index, int R, int kTile>
void spmm_scalar(const SpmmArgs& a) {
  const SparseView& w = *a.w;
  const Index* idx = static_cast<const Index*>(w.idx);
  const int64_t C = w.block_c;
  for (int64_t b = a.block_begin; b < a.block_end; ++b) {
    const int64_t row0 = b * R;
    const int rows_here = static_cast<int>(std::min<int64_t>(R, w.rows - row0));
    for (int64_t j0 = 0; j0 < a.n; j0 += kTile) {
      const int cols_here = static_cast<int>(std::min<int64_t>(kTile, a.n - j0));
      float acc[R][kTile];
      for (int r = 0; r < R; ++r) {
        const float init = (a.bias != nullptr && r < rows_here) ? a.bias[row0 + r] : 0.0f;
        for (int t = 0; t < kTile; ++t) acc[r][t] = init;
      }
      for (int64_t p = w.ptr[b]; p < w.ptr[b + 1]; ++p) {
        const int64_t col = static_cast<int64_t>(idx[p]);
        const float* v = w.values + p * R * C;
        for (int64_t c = 0; c < C; ++c) {
          const float* xr = a.x + (col + c) * a.ldx + j0;
          for (int r = 0; r < R; ++r) {
            const float wv = v[c * R + r];
            for (int t = 0; t < cols_here; ++t) acc[r][t] += wv * xr[t];
          }
        }
      }
      for (int r = 0; r < rows_here; ++r) {
        float* yr = a.y + (row0 + r) * a.y_rs + j0 * a.y_cs;
        for (int t = 0; t < cols_here; ++t) yr[t * a.y_cs] = acc[r][t];
      }
    }
  }
}

template <int R, int kTile>
void dispatch_index(const SpmmArgs& a) {
  with_index(*a.w, [&](auto index) { spmm_scalar<decltype(index), R, kTile>(a); });
}

}  // namespace

void f32_spmm_csr_n1__scalar(const SpmmArgs& a) { dispatch_index<1, 1>(a); }
void f32_spmm_csr_nx__scalar(const SpmmArgs& a) { dispatch_index<1, 8>(a); }
void f32_spmm_bsr_1xc_n1__scalar(const SpmmArgs& a) { dispatch_index<1, 1>(a); }
void f32_spmm_bsr_1xc_nx__scalar(const SpmmArgs& a) { dispatch_index<1, 8>(a); }
void f32_spmm_bsr_2xc_n1__scalar(const SpmmArgs& a) { dispatch_index<2, 1>(a); }
void f32_spmm_bsr_2xc_nx__scalar(const SpmmArgs& a) { dispatch_index<2, 8>(a); }
void f32_spmm_bsr_4xc_n1__scalar(const SpmmArgs& a) { dispatch_index<4, 1>(a); }
void f32_spmm_bsr_4xc_nx__scalar(const SpmmArgs& a) { dispatch_index<4, 8>(a); }
void f32_spmm_bsr_8xc_n1__scalar(const SpmmArgs& a) { dispatch_index<8, 1>(a); }
void f32_spmm_bsr_8xc_nx__scalar(const SpmmArgs& a) { dispatch_index<8, 8>(a); }
void f32_spmm_bsr_16xc_n1__scalar(const SpmmArgs& a) { dispatch_index<16, 1>(a); }
void f32_spmm_bsr_16xc_nx__scalar(const SpmmArgs& a) { dispatch_index<16, 8>(a); }

}  // namespace pysparse
