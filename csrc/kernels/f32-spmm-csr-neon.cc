// CSR, NEON. Batch 1 here: y[i] = sum_p values[p] * x[idx[p]] (+ bias[i]);
// any batch: the shared tile engine (spmm-nx.inl), entry point at the end.
//
// NEON has no gather, so four x[idx] become a vector through lane loads
// (ld1 {v.s}[lane]), the same scalar-load scheme that beats vgatherdps on x86.
// Two 4-lane groups per step feed two accumulators so FMA latency overlaps; a
// row's last (< 8) nonzeros run as one more pair of groups whose extra lanes
// are zeroed in both x and the values: the next row's columns may point at an
// inf input and its weights may be inf or NaN, and either would leak into this
// row as 0 * inf. Each row reduces with the same
// pairwise order whatever rows it is computed with, so results do not depend
// on the thread count.
//
// Contract: ldx == 1. Reads up to 7 entries of idx and values past a row's end
// (inside the next row or the kIndexPad / kValuePad padding, formats.h); those
// indices are validated or zero, so every x load is in bounds. No alignment.
#include <arm_neon.h>

#include <algorithm>
#include <cstdint>

#include "kernels.h"
#include "kernels/gather-neon.h"
#include "kernels/simd-neon.h"

namespace pysparse {
namespace {

template <class Index>
void csr_n1(const SpmmArgs& a) {
  const SparseView& w = *a.w;
  const Index* idx = static_cast<const Index*>(w.idx);
  const float* val = w.values;
  const float* x = a.x;
  for (int64_t i = a.block_begin; i < a.block_end; ++i) {
    int64_t p = w.ptr[i];
    const int64_t end = w.ptr[i + 1];
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
    for (; p + 8 <= end; p += 8) {
      acc0 = vfmaq_f32(acc0, vld1q_f32(val + p), load4(x, idx + p));
      acc1 = vfmaq_f32(acc1, vld1q_f32(val + p + 4), load4(x, idx + p + 4));
    }
    if (p < end) {
      const int64_t left = end - p;  // 1..7
      const uint32x4_t lo = lanes_below(left), hi = lanes_below(left > 4 ? left - 4 : 0);
      acc0 = vfmaq_f32(acc0, keep(vld1q_f32(val + p), lo), keep(load4(x, idx + p), lo));
      acc1 = vfmaq_f32(acc1, keep(vld1q_f32(val + p + 4), hi), keep(load4(x, idx + p + 4), hi));
    }
    float s = vaddvq_f32(vaddq_f32(acc0, acc1));
    if (a.bias != nullptr) s += a.bias[i];
    a.y[i * a.y_rs] = s;
  }
}

#include "kernels/spmm-nx.inl"

}  // namespace

void f32_spmm_csr_n1__neon(const SpmmArgs& a) {
  with_index(*a.w, [&](auto index) { csr_n1<decltype(index)>(a); });
}

void f32_spmm_csr_nx__neon(const SpmmArgs& a) { nx::run<Neon, 1>(a); }

}  // namespace pysparse
