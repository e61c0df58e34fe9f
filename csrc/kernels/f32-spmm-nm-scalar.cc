// Portable N:M SpMM (layout in formats.h): the fallback and the oracle of the
// SIMD twins. Zero slots are multiplied like any other (their offset is 0, a
// valid column), as a dense product multiplies its zeros.
//
// Contract: none beyond SpmmArgs; nothing read past the arrays; any strides.
#include <algorithm>
#include <cstdint>

#include "kernels.h"

namespace pysparse {
namespace {

template <int kTile>
void nm_scalar(const SpmmArgs& a) {
  const SparseView& w = *a.w;
  const int64_t G = w.nm_groups(), N = w.nm_n, M = w.nm_m();
  const uint8_t* off = w.idx8();
  for (int64_t b = a.block_begin; b < a.block_end; ++b) {
    const int rows_here = static_cast<int>(std::min<int64_t>(8, w.rows - b * 8));
    for (int lane = 0; lane < rows_here; ++lane) {
      const int64_t i = b * 8 + lane;
      for (int64_t j0 = 0; j0 < a.n; j0 += kTile) {
        const int cols_here = static_cast<int>(std::min<int64_t>(kTile, a.n - j0));
        float acc[kTile];
        for (int t = 0; t < kTile; ++t) acc[t] = a.bias != nullptr ? a.bias[i] : 0.0f;
        for (int64_t g = 0; g < G; ++g) {
          for (int64_t s = 0; s < N; ++s) {
            const int64_t q = ((b * G + g) * N + s) * 8 + lane;
            const float* xr = a.x + (g * M + off[q]) * a.ldx + j0;
            for (int t = 0; t < cols_here; ++t) acc[t] += w.values[q] * xr[t];
          }
        }
        float* yr = a.y + i * a.y_rs + j0 * a.y_cs;
        for (int t = 0; t < cols_here; ++t) yr[t * a.y_cs] = acc[t];
      }
    }
  }
}

}  // namespace

void f32_spmm_nm_8xm_n1__scalar(const SpmmArgs& a) { nm_scalar<1>(a); }
void f32_spmm_nm_8xm_nx__scalar(const SpmmArgs& a) { nm_scalar<8>(a); }

}  // namespace pysparse
