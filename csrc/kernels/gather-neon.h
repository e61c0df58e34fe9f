// x[idx[p..p+4)] as one NEON vector for the batch-1 kernels of unstructured
// formats (CSR and SELL): NEON has no gather, so lane loads (ld1 {v.s}[lane]),
// the same scalar-load scheme that beats vgatherdps on x86; and the lane
// masks their tails use. Reads 4 indices at ip, nothing else.
#pragma once

#include <arm_neon.h>

#include <cstdint>

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

}  // namespace
}  // namespace pysparse
