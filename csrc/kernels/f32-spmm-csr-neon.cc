// CSR, batch 1, NEON: y[i] = sum_p values[p] * x[idx[p]] (+ bias[i]).
//
// NEON has no gather, so four x[idx] become a vector through lane loads
// (ld1 {v.s}[lane]), the same scalar-load scheme that beats vgatherdps on x86.
// Two 4-lane groups per step feed two accumulators so FMA latency overlaps; a
// row's last (< 8) nonzeros run as one more pair of groups whose extra lanes
// are zeroed in the x vector (not the values), so an inf that the next row's
// columns point at cannot leak in as 0 * inf. Each row reduces with the same
// pairwise order whatever rows it is computed with, so results do not depend
// on the thread count.
//
// Contract: ldx == 1. Reads up to 7 entries of idx and values past a row's end
// (inside the next row or the kIndexPad / kValuePad padding, formats.h); those
// indices are validated or zero, so every x load is in bounds. No alignment.
#include <arm_neon.h>

#include <cstdint>

#include "kernels.h"

namespace pysparse {
namespace {

template <class Index>
inline float32x4_t load4(const float* x, const Index* ip) {
  float32x4_t v = vld1q_dup_f32(x + ip[0]);
  v = vld1q_lane_f32(x + ip[1], v, 1);
  v = vld1q_lane_f32(x + ip[2], v, 2);
  v = vld1q_lane_f32(x + ip[3], v, 3);
  return v;
}

inline uint32x4_t lanes_below(int64_t count) {
  const uint32_t lanes[4] = {0, 1, 2, 3};
  return vcltq_u32(vld1q_u32(lanes), vdupq_n_u32(static_cast<uint32_t>(count)));
}

inline float32x4_t keep(float32x4_t v, uint32x4_t mask) {
  return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(v), mask));
}

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
      acc0 = vfmaq_f32(acc0, vld1q_f32(val + p), keep(load4(x, idx + p), lanes_below(left)));
      acc1 = vfmaq_f32(acc1, vld1q_f32(val + p + 4), keep(load4(x, idx + p + 4), lanes_below(left > 4 ? left - 4 : 0)));
    }
    float s = vaddvq_f32(vaddq_f32(acc0, acc1));
    if (a.bias != nullptr) s += a.bias[i];
    a.y[i * a.y_rs] = s;
  }
}

}  // namespace

void f32_spmm_csr_n1__neon(const SpmmArgs& a) {
  if (a.w->index_width == IndexWidth::u16) {
    csr_n1<uint16_t>(a);
  } else {
    csr_n1<uint32_t>(a);
  }
}

}  // namespace pysparse
