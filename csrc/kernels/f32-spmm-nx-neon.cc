// CSR, BSR and SELL, any batch, NEON: vectorised across the columns of X.
//
// The NEON twin of f32-spmm-nx-avx2.cc with 4-float vectors: a register tile
// of RB output rows x V vectors (RB * V == 8 accumulators, 1 x 32 ... 8 x 4
// columns), the loop over stored blocks unrolled U = 8 / (RB * V) times with
// separate accumulator sets so 8 FMA chains are always in flight. Tiles halve
// from the widest down to one vector; the last (< 4) columns run scalar.
// Accumulators stay in registers; the epilogue goes through a stack buffer.
// SELL runs each lane of a slice as a CSR row whose weights sit at stride 8.
//
// Contract: X rows contiguous along n; any ldx >= 1 (overlapping rows, ldx < n,
// are fine: X is read-only; the direct convolution uses ldx == 1). Y's columns
// may be strided.
// Nothing read or written outside n columns. No alignment required.
#include <arm_neon.h>

#include <algorithm>
#include <cstdint>

#include "kernels.h"

namespace pysparse {
namespace {

void write_tile(const SpmmArgs& a, int64_t row0, int rows, int64_t j, int64_t cols, const float* out, int ldo) {
  for (int r = 0; r < rows; ++r) {
    float* yr = a.y + (row0 + r) * a.y_rs + j * a.y_cs;
    for (int64_t u = 0; u < cols; ++u) yr[u * a.y_cs] = out[r * ldo + u];
  }
}

// kSell: b is a SELL slice and r0 its lane (R == RB == 1, C == 1): the
// lane's row_len weights from slot ptr[b] on, at stride 8; its row is row_of.
template <bool kSell>
inline int64_t first_row(const SparseView& w, int64_t b, int R, int r0) {
  return kSell ? w.row_of[b * 8 + r0] : b * R + r0;
}
template <bool kSell>
inline int64_t block_end(const SparseView& w, int64_t b, int r0) {
  return kSell ? w.ptr[b] + w.row_len[b * 8 + r0] : w.ptr[b + 1];
}

template <class Index, int R, int RB, int V, bool kC1, bool kSell>
inline void tile(const SpmmArgs& a, int64_t b, int r0, int rows_pass, int64_t j) {
  constexpr int U = (RB * V >= 8) ? 1 : 8 / (RB * V);
  constexpr int64_t S = kSell ? 8 : 1;  // stride between a row's stored weights
  const SparseView& w = *a.w;
  const Index* idx = static_cast<const Index*>(w.idx) + (kSell ? r0 : 0);
  const int64_t C = kC1 ? 1 : w.block_c;
  const int64_t ldx = a.ldx;
  const float* x = a.x + j;
  const float* values = w.values + r0;
  const int64_t row0 = first_row<kSell>(w, b, R, r0);
  float32x4_t acc[U][RB][V];
  for (int u = 0; u < U; ++u)
    for (int r = 0; r < RB; ++r)
      for (int t = 0; t < V; ++t) acc[u][r][t] = vdupq_n_f32(0.0f);
  auto step = [&](int u, int64_t p) {
    const float* xk = x + static_cast<int64_t>(idx[p * S]) * ldx;
    const float* vp = values + p * R * C * S;
    for (int64_t c = 0; c < C; ++c, xk += ldx, vp += R) {
      float32x4_t xv[V];
      for (int t = 0; t < V; ++t) xv[t] = vld1q_f32(xk + 4 * t);
      for (int r = 0; r < RB; ++r) {
        const float wv = vp[r];
        for (int t = 0; t < V; ++t) acc[u][r][t] = vfmaq_n_f32(acc[u][r][t], xv[t], wv);
      }
    }
  };
  int64_t p = w.ptr[b];
  const int64_t end = block_end<kSell>(w, b, r0);
  for (; p + U <= end; p += U)
    for (int u = 0; u < U; ++u) step(u, p + u);
  for (; p < end; ++p) step(0, p);
  float out[RB][4 * V];
  for (int r = 0; r < RB; ++r) {
    const float bias = (a.bias != nullptr && r < rows_pass) ? a.bias[row0 + r] : 0.0f;
    for (int t = 0; t < V; ++t) {
      float32x4_t s = acc[0][r][t];
      for (int u = 1; u < U; ++u) s = vaddq_f32(s, acc[u][r][t]);
      vst1q_f32(&out[r][4 * t], vaddq_f32(s, vdupq_n_f32(bias)));
    }
  }
  write_tile(a, row0, rows_pass, j, 4 * V, &out[0][0], 4 * V);
}

// The last (< 4) columns, scalar.
template <class Index, int R, bool kSell>
void tail(const SpmmArgs& a, int64_t b, int r0, int rows_pass, int64_t j) {
  constexpr int64_t S = kSell ? 8 : 1;
  const SparseView& w = *a.w;
  const Index* idx = static_cast<const Index*>(w.idx) + (kSell ? r0 : 0);
  const int64_t C = w.block_c, end = block_end<kSell>(w, b, r0);
  for (int r = 0; r < rows_pass; ++r) {
    const int64_t i = first_row<kSell>(w, b, R, r0 + r);
    for (int64_t jj = j; jj < a.n; ++jj) {
      float s = a.bias != nullptr ? a.bias[i] : 0.0f;
      for (int64_t p = w.ptr[b]; p < end; ++p)
        for (int64_t c = 0; c < C; ++c)
          s += w.values[((p * C + c) * R + r) * S + r0] * a.x[(static_cast<int64_t>(idx[p * S]) + c) * a.ldx + jj];
      a.y[i * a.y_rs + jj * a.y_cs] = s;
    }
  }
}

template <class Index, int R, int RB, int V, bool kC1, bool kSell = false>
inline void columns(const SpmmArgs& a, int64_t b, int r0, int rows_pass, int64_t j) {
  for (; j + 4 * V <= a.n; j += 4 * V) tile<Index, R, RB, V, kC1, kSell>(a, b, r0, rows_pass, j);
  if constexpr (V > 1) {
    columns<Index, R, RB, V / 2, kC1, kSell>(a, b, r0, rows_pass, j);
  } else {
    if (j < a.n) tail<Index, R, kSell>(a, b, r0, rows_pass, j);
  }
}

template <class Index, int R, bool kC1>
void spmm_nx(const SpmmArgs& a) {
  constexpr int RB = R < 8 ? R : 8;
  constexpr int V = 8 / RB;
  for (int64_t b = a.block_begin; b < a.block_end; ++b) {
    const int64_t rows_left = a.w->rows - b * R;
    for (int r0 = 0; r0 < R && r0 < rows_left; r0 += RB) {
      const int rows_pass = static_cast<int>(std::min<int64_t>(RB, rows_left - r0));
      columns<Index, R, RB, V, kC1>(a, b, r0, rows_pass, 0);
    }
  }
}

// SELL: each lane of a slice is one CSR-like row at stride 8 (same tiles).
template <class Index>
void sell_nx(const SpmmArgs& a) {
  for (int64_t s = a.block_begin; s < a.block_end; ++s)
    for (int l = 0; l < 8; ++l)
      if (a.w->row_of[s * 8 + l] >= 0) columns<Index, 1, 1, 8, true, true>(a, s, l, 1, 0);
}

template <int R>
void run(const SpmmArgs& a) {
  const bool c1 = a.w->block_c == 1;
  if (a.w->index_width == IndexWidth::u16) {
    c1 ? spmm_nx<uint16_t, R, true>(a) : spmm_nx<uint16_t, R, false>(a);
  } else {
    c1 ? spmm_nx<uint32_t, R, true>(a) : spmm_nx<uint32_t, R, false>(a);
  }
}

}  // namespace

void f32_spmm_csr_nx__neon(const SpmmArgs& a) { run<1>(a); }
void f32_spmm_sell_nx__neon(const SpmmArgs& a) {
  a.w->index_width == IndexWidth::u16 ? sell_nx<uint16_t>(a) : sell_nx<uint32_t>(a);
}
void f32_spmm_bsr_1xc_nx__neon(const SpmmArgs& a) { run<1>(a); }
void f32_spmm_bsr_2xc_nx__neon(const SpmmArgs& a) { run<2>(a); }
void f32_spmm_bsr_4xc_nx__neon(const SpmmArgs& a) { run<4>(a); }
void f32_spmm_bsr_8xc_nx__neon(const SpmmArgs& a) { run<8>(a); }
void f32_spmm_bsr_16xc_nx__neon(const SpmmArgs& a) { run<16>(a); }

}  // namespace pysparse
