// N:M SpMM, NEON (layout in formats.h: 8 rows interleaved, N slots per group of
// M <= 8 inputs, uint8 offsets inside the group).
//
// The twin of f32-spmm-nm-avx2.cc. A group's M inputs (at most 32 bytes) are a
// two-register table; each slot's 8 offsets become byte indices (offset * 4 +
// 0..3, two tbl/shift/add steps per 4 lanes) and one tbl2 per 4 rows picks the
// inputs: no scalar loads, no gathers, no horizontal sums.
//
// Wider batches broadcast each kept weight against a row of X, like CSR.
//
// Contract: ldx == 1 for n1. The last group, when M does not divide K, is
// copied into a zeroed buffer first, so every x read is within [0, K). Zero
// slots (offset 0) multiply x[g * M] by 0 like a dense product.
#include <arm_neon.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels.h"

namespace pysparse {
namespace {

template <int M>
inline uint8x16x2_t load_table(const float* p, int64_t count) {
  alignas(16) float buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const float* src = p;
  if (count < M) {
    std::memcpy(buf, p, static_cast<size_t>(count) * sizeof(float));
    src = buf;
  }
  uint8x16x2_t t;
  if constexpr (M == 8) {
    t.val[0] = vreinterpretq_u8_f32(vld1q_f32(src));
    t.val[1] = vreinterpretq_u8_f32(vld1q_f32(src + 4));
  } else if constexpr (M == 4) {
    t.val[0] = vreinterpretq_u8_f32(vld1q_f32(src));
    t.val[1] = vdupq_n_u8(0);
  } else {
    t.val[0] = vreinterpretq_u8_f32(vcombine_f32(vld1_f32(src), vdup_n_f32(0.0f)));
    t.val[1] = vdupq_n_u8(0);
  }
  return t;
}

template <int M>
void nm_n1(const SpmmArgs& a) {
  const SparseView& w = *a.w;
  const int64_t G = w.nm_groups(), N = w.nm_n, K = w.cols;
  static const uint8_t kDupLo[16] = {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3};
  static const uint8_t kDupHi[16] = {4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7};
  static const uint8_t kBytes[16] = {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3};
  const uint8x16_t dup_lo = vld1q_u8(kDupLo), dup_hi = vld1q_u8(kDupHi), bytes = vld1q_u8(kBytes);
  for (int64_t b = a.block_begin; b < a.block_end; ++b) {
    const float* v = w.values + b * G * N * 8;
    const uint8_t* o = w.idx8() + b * G * N * 8;
    float32x4_t lo = vdupq_n_f32(0.0f), hi = vdupq_n_f32(0.0f);
    for (int64_t g = 0; g < G; ++g) {
      const uint8x16x2_t table = load_table<M>(a.x + g * M, std::min<int64_t>(M, K - g * M));
      for (int64_t s = 0; s < N; ++s, v += 8, o += 8) {
        const uint8x8_t off = vld1_u8(o);
        const uint8x16_t off2 = vcombine_u8(off, off);
        const uint8x16_t ilo = vaddq_u8(vshlq_n_u8(vqtbl1q_u8(off2, dup_lo), 2), bytes);
        const uint8x16_t ihi = vaddq_u8(vshlq_n_u8(vqtbl1q_u8(off2, dup_hi), 2), bytes);
        lo = vfmaq_f32(lo, vld1q_f32(v), vreinterpretq_f32_u8(vqtbl2q_u8(table, ilo)));
        hi = vfmaq_f32(hi, vld1q_f32(v + 4), vreinterpretq_f32_u8(vqtbl2q_u8(table, ihi)));
      }
    }
    float out[8];
    vst1q_f32(out, lo);
    vst1q_f32(out + 4, hi);
    const int64_t row0 = b * 8, rows_here = std::min<int64_t>(8, w.rows - row0);
    for (int64_t r = 0; r < rows_here; ++r)
      a.y[(row0 + r) * a.y_rs] = out[r] + (a.bias != nullptr ? a.bias[row0 + r] : 0.0f);
  }
}

// Row (b, lane), columns [j, j + 4 V): broadcast each kept weight against X;
// slots go two at a time into two accumulator sets (no runtime-indexed arrays).
template <int V>
inline void nm_tile(const SpmmArgs& a, int64_t b, int lane, int64_t j) {
  const SparseView& w = *a.w;
  const int64_t G = w.nm_groups(), N = w.nm_n, M = w.nm_m();
  const int64_t i = b * 8 + lane;
  float32x4_t acc0[V], acc1[V];
  for (int t = 0; t < V; ++t) acc0[t] = acc1[t] = vdupq_n_f32(0.0f);
  const float* v = w.values + b * G * N * 8 + lane;
  const uint8_t* o = w.idx8() + b * G * N * 8 + lane;
  const float* x = a.x + j;
  int64_t g = 0, s = 0;  // group and slot of q, stepped along
  auto column = [&](int64_t q) {
    const int64_t c = g * M + o[q * 8];
    if (++s == N) {
      s = 0;
      ++g;
    }
    return c;
  };
  const int64_t slots = G * N;
  int64_t q = 0;
  for (; q + 2 <= slots; q += 2) {
    const float* x0 = x + column(q) * a.ldx;
    const float* x1 = x + column(q + 1) * a.ldx;
    for (int t = 0; t < V; ++t) {
      acc0[t] = vfmaq_n_f32(acc0[t], vld1q_f32(x0 + 4 * t), v[q * 8]);
      acc1[t] = vfmaq_n_f32(acc1[t], vld1q_f32(x1 + 4 * t), v[q * 8 + 8]);
    }
  }
  if (q < slots) {
    const float* x0 = x + column(q) * a.ldx;
    for (int t = 0; t < V; ++t) acc0[t] = vfmaq_n_f32(acc0[t], vld1q_f32(x0 + 4 * t), v[q * 8]);
  }
  const float bias = a.bias != nullptr ? a.bias[i] : 0.0f;
  float out[4 * V];
  for (int t = 0; t < V; ++t) vst1q_f32(out + 4 * t, vaddq_f32(vaddq_f32(acc0[t], acc1[t]), vdupq_n_f32(bias)));
  float* yr = a.y + i * a.y_rs + j * a.y_cs;
  for (int c = 0; c < 4 * V; ++c) yr[c * a.y_cs] = out[c];
}

void nm_tail(const SpmmArgs& a, int64_t b, int lane, int64_t j) {
  const SparseView& w = *a.w;
  const int64_t G = w.nm_groups(), N = w.nm_n, M = w.nm_m();
  const int64_t i = b * 8 + lane;
  for (int64_t jj = j; jj < a.n; ++jj) {
    float s = a.bias != nullptr ? a.bias[i] : 0.0f;
    for (int64_t q = 0; q < G * N; ++q) {
      const int64_t at = (b * G * N + q) * 8 + lane;
      s += w.values[at] * a.x[((q / N) * M + w.idx8()[at]) * a.ldx + jj];
    }
    a.y[i * a.y_rs + jj * a.y_cs] = s;
  }
}

}  // namespace

void f32_spmm_nm_8xm_n1__neon(const SpmmArgs& a) {
  switch (a.w->nm_m()) {
    case 2: nm_n1<2>(a); break;
    case 4: nm_n1<4>(a); break;
    default: nm_n1<8>(a); break;
  }
}

void f32_spmm_nm_8xm_nx__neon(const SpmmArgs& a) {
  const SparseView& w = *a.w;
  for (int64_t b = a.block_begin; b < a.block_end; ++b) {
    const int rows_here = static_cast<int>(std::min<int64_t>(8, w.rows - b * 8));
    for (int lane = 0; lane < rows_here; ++lane) {
      int64_t j = 0;
      // Widest tile first, then at most one of each narrower width: a 12-column
      // rest is one 8-wide pass over the row's weights, not three 4-wide ones.
      for (; j + 16 <= a.n; j += 16) nm_tile<4>(a, b, lane, j);
      if (j + 8 <= a.n) {
        nm_tile<2>(a, b, lane, j);
        j += 8;
      }
      if (j + 4 <= a.n) {
        nm_tile<1>(a, b, lane, j);
        j += 4;
      }
      if (j < a.n) nm_tail(a, b, lane, j);
    }
  }
}

}  // namespace pysparse
