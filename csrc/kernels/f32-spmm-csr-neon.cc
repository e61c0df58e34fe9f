// CSR and SELL-8-sigma, batch 1, NEON: y[i] = sum_p values[p] * x[idx[p]] (+ bias[i]).
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
      const uint32x4_t lo = lanes_below(left), hi = lanes_below(left > 4 ? left - 4 : 0);
      acc0 = vfmaq_f32(acc0, keep(vld1q_f32(val + p), lo), keep(load4(x, idx + p), lo));
      acc1 = vfmaq_f32(acc1, keep(vld1q_f32(val + p + 4), hi), keep(load4(x, idx + p + 4), hi));
    }
    float s = vaddvq_f32(vaddq_f32(acc0, acc1));
    if (a.bias != nullptr) s += a.bias[i];
    a.y[i * a.y_rs] = s;
  }
}

// SELL-8-sigma (formats.h), batch 1: the NEON twin of sell_n1 in
// f32-spmm-csr-avx2.cc. A slot's 8 lanes are two 4-lane halves: per slot two
// value loads, two load4 and two FMAs feed the slice's 8 rows, with no per-row
// trip count, tail or horizontal sum. Slots up to the shortest lane run
// unmasked with two accumulator pairs (slots alternate between them so FMA
// latency overlaps); the rest zero the x of lanes whose row has finished
// (vcgtq_s32 of row_len against the slot number), so an inf at column 0 --
// where those lanes' zero padding points -- cannot leak in as 0 * inf.
//
// Contract: ldx == 1. Reads exactly the slice's slots, 8 idx and 8 values
// each (padding included: zero values at column 0, in range), and row_of /
// row_len of the slice. Writes y[row_of[lane] * y_rs] (+ bias[row]) for the
// lanes with row_of >= 0, nothing else. No alignment required.
template <class Index>
void sell_n1(const SpmmArgs& a) {
  const SparseView& w = *a.w;
  const Index* idx = static_cast<const Index*>(w.idx);
  const float* val = w.values;
  const float* x = a.x;
  const int32x4_t one = vdupq_n_s32(1);
  for (int64_t s = a.block_begin; s < a.block_end; ++s) {
    const int32_t* len = w.row_len + s * 8;
    const int32x4_t len_lo = vld1q_s32(len), len_hi = vld1q_s32(len + 4);
    const int32_t shortest = vminvq_s32(vminq_s32(len_lo, len_hi));
    int64_t p = w.ptr[s];
    const int64_t end = w.ptr[s + 1], full = p + shortest;
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);  // lanes 0-3
    float32x4_t acc2 = vdupq_n_f32(0.0f), acc3 = vdupq_n_f32(0.0f);  // lanes 4-7
    for (; p + 2 <= full; p += 2) {
      const float* v = val + 8 * p;
      const Index* ip = idx + 8 * p;
      acc0 = vfmaq_f32(acc0, vld1q_f32(v), load4(x, ip));
      acc2 = vfmaq_f32(acc2, vld1q_f32(v + 4), load4(x, ip + 4));
      acc1 = vfmaq_f32(acc1, vld1q_f32(v + 8), load4(x, ip + 8));
      acc3 = vfmaq_f32(acc3, vld1q_f32(v + 12), load4(x, ip + 12));
    }
    if (p < full) {
      acc0 = vfmaq_f32(acc0, vld1q_f32(val + 8 * p), load4(x, idx + 8 * p));
      acc2 = vfmaq_f32(acc2, vld1q_f32(val + 8 * p + 4), load4(x, idx + 8 * p + 4));
      ++p;
    }
    int32x4_t q = vdupq_n_s32(static_cast<int32_t>(p - w.ptr[s]));  // slot number
    for (; p < end; ++p, q = vaddq_s32(q, one)) {
      acc1 = vfmaq_f32(acc1, vld1q_f32(val + 8 * p), keep(load4(x, idx + 8 * p), vcgtq_s32(len_lo, q)));
      acc3 = vfmaq_f32(acc3, vld1q_f32(val + 8 * p + 4), keep(load4(x, idx + 8 * p + 4), vcgtq_s32(len_hi, q)));
    }
    float out[8];
    vst1q_f32(out, vaddq_f32(acc0, acc1));
    vst1q_f32(out + 4, vaddq_f32(acc2, acc3));
    sell_store_slice(a, s, out);
  }
}

}  // namespace

void f32_spmm_sell_n1__neon(const SpmmArgs& a) {
  if (a.w->index_width == IndexWidth::u16) {
    sell_n1<uint16_t>(a);
  } else {
    sell_n1<uint32_t>(a);
  }
}

void f32_spmm_csr_n1__neon(const SpmmArgs& a) {
  if (a.w->index_width == IndexWidth::u16) {
    csr_n1<uint16_t>(a);
  } else {
    csr_n1<uint32_t>(a);
  }
}

}  // namespace pysparse
