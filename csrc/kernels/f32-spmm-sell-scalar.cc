// Portable scalar SELL-8-sigma SpMM: the fallback and the oracle of the SELL
// kernels (f32-spmm-sell-avx2.cc, f32-spmm-sell-neon.cc).
//
// Contract: none beyond SpmmArgs (formats.h). Reads each lane's row_len slots
// only (never the padding), any ldx / y strides, no alignment.
#include <algorithm>
#include <cstdint>

#include "kernels.h"

namespace pysparse {
namespace {

// SELL-8-sigma (formats.h): lane by lane, each a CSR row read at stride 8, so
// the sums run in the same order as CSR's and padding is never read.
template <class Index, int kTile>
void sell_scalar(const SpmmArgs& a) {
  const SparseView& w = *a.w;
  const Index* idx = static_cast<const Index*>(w.idx);
  for (int64_t s = a.block_begin; s < a.block_end; ++s) {
    for (int64_t l = 0; l < 8; ++l) {
      const int64_t row = w.row_of[s * 8 + l];
      if (row < 0) continue;
      const int64_t len = w.row_len[s * 8 + l];
      for (int64_t j0 = 0; j0 < a.n; j0 += kTile) {
        const int cols_here = static_cast<int>(std::min<int64_t>(kTile, a.n - j0));
        float acc[kTile];
        const float init = a.bias != nullptr ? a.bias[row] : 0.0f;
        for (int t = 0; t < kTile; ++t) acc[t] = init;
        for (int64_t q = 0; q < len; ++q) {
          const int64_t e = (w.ptr[s] + q) * 8 + l;
          const float wv = w.values[e];
          const float* xr = a.x + static_cast<int64_t>(idx[e]) * a.ldx + j0;
          for (int t = 0; t < cols_here; ++t) acc[t] += wv * xr[t];
        }
        float* yr = a.y + row * a.y_rs + j0 * a.y_cs;
        for (int t = 0; t < cols_here; ++t) yr[t * a.y_cs] = acc[t];
      }
    }
  }
}

template <int kTile>
void sell_dispatch(const SpmmArgs& a) {
  with_index(*a.w, [&](auto index) { sell_scalar<decltype(index), kTile>(a); });
}

}  // namespace

void f32_spmm_sell_n1__scalar(const SpmmArgs& a) { sell_dispatch<1>(a); }
void f32_spmm_sell_nx__scalar(const SpmmArgs& a) { sell_dispatch<8>(a); }

}  // namespace pysparse
