// BSR (R x C blocks), NEON. Batch 1 here, vectorised across output rows; any
// batch: the shared tile engine (spmm-nx.inl), entry points at the end.
//
// The R weights of one block column share one input: one broadcast of x[k]
// (ld1r) feeds R / 4 FMAs of 4 lanes; no gathers and no horizontal sums. C == 1
// blocks are unrolled by 4 with independent accumulators to hide FMA latency;
// C > 1 walks the block's columns in order.
//
// Contract: ldx == 1. Reads values of stored blocks only (the zero rows of an
// overhanging last block row are stored, never written to y). No alignment.
#include <arm_neon.h>

#include <algorithm>
#include <cstdint>

#include "kernels.h"
#include "kernels/simd-neon.h"

namespace pysparse {
namespace {

// NV 4-float vectors per block column (R = 4 * NV).
template <class Index, int NV, bool kC1>
void bsr_n1(const SpmmArgs& a) {
  constexpr int R = 4 * NV;
  const SparseView& w = *a.w;
  const Index* idx = static_cast<const Index*>(w.idx);
  const float* x = a.x;
  const int64_t C = kC1 ? 1 : w.block_c;
  for (int64_t b = a.block_begin; b < a.block_end; ++b) {
    const int64_t row0 = b * R;
    const int rows_here = static_cast<int>(std::min<int64_t>(R, w.rows - row0));
    float32x4_t acc[4][NV];
    for (int u = 0; u < 4; ++u)
      for (int v = 0; v < NV; ++v) acc[u][v] = vdupq_n_f32(0.0f);
    int64_t p = w.ptr[b];
    const int64_t end = w.ptr[b + 1];
    const float* val = w.values + p * R * C;
    if (kC1) {
      for (; p + 4 <= end; p += 4, val += 4 * R) {
        for (int u = 0; u < 4; ++u) {
          const float32x4_t xv = vld1q_dup_f32(x + idx[p + u]);
          for (int v = 0; v < NV; ++v) acc[u][v] = vfmaq_f32(acc[u][v], vld1q_f32(val + u * R + 4 * v), xv);
        }
      }
    }
    for (; p < end; ++p) {
      const int64_t col = idx[p];
      for (int64_t c = 0; c < C; ++c, val += R) {
        const float32x4_t xv = vld1q_dup_f32(x + col + c);
        for (int v = 0; v < NV; ++v) acc[0][v] = vfmaq_f32(acc[0][v], vld1q_f32(val + 4 * v), xv);
      }
    }
    float out[R];
    for (int v = 0; v < NV; ++v)
      vst1q_f32(out + 4 * v, vaddq_f32(vaddq_f32(acc[0][v], acc[1][v]), vaddq_f32(acc[2][v], acc[3][v])));
    for (int r = 0; r < rows_here; ++r)
      a.y[(row0 + r) * a.y_rs] = out[r] + (a.bias != nullptr ? a.bias[row0 + r] : 0.0f);
  }
}

template <int NV>
void run_n1(const SpmmArgs& a) {
  const bool c1 = a.w->block_c == 1;
  with_index(*a.w, [&](auto index) {
    using Index = decltype(index);
    c1 ? bsr_n1<Index, NV, true>(a) : bsr_n1<Index, NV, false>(a);
  });
}

#include "kernels/spmm-nx.inl"

}  // namespace

void f32_spmm_bsr_4xc_n1__neon(const SpmmArgs& a) { run_n1<1>(a); }
void f32_spmm_bsr_8xc_n1__neon(const SpmmArgs& a) { run_n1<2>(a); }
void f32_spmm_bsr_16xc_n1__neon(const SpmmArgs& a) { run_n1<4>(a); }

void f32_spmm_bsr_1xc_nx__neon(const SpmmArgs& a) { nx::run<Neon, 1>(a); }
void f32_spmm_bsr_2xc_nx__neon(const SpmmArgs& a) { nx::run<Neon, 2>(a); }
void f32_spmm_bsr_4xc_nx__neon(const SpmmArgs& a) { nx::run<Neon, 4>(a); }
void f32_spmm_bsr_8xc_nx__neon(const SpmmArgs& a) { nx::run<Neon, 8>(a); }
void f32_spmm_bsr_16xc_nx__neon(const SpmmArgs& a) { nx::run<Neon, 16>(a); }

}  // namespace pysparse
