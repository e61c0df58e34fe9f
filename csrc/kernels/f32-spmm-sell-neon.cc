// SELL-8-sigma (formats.h), NEON: batch 1 below; any batch through the shared
// tile engine (spmm-nx.inl), each lane of a slice a CSR row at stride 8.
#include <arm_neon.h>

#include <algorithm>
#include <cstdint>

#include "kernels.h"
#include "kernels/gather-neon.h"
#include "kernels/sell-epilogue.h"
#include "kernels/simd-neon.h"

namespace pysparse {
namespace {

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

#include "kernels/spmm-nx.inl"

}  // namespace

void f32_spmm_sell_n1__neon(const SpmmArgs& a) {
  with_index(*a.w, [&](auto index) { sell_n1<decltype(index)>(a); });
}

void f32_spmm_sell_nx__neon(const SpmmArgs& a) { nx::sell<Neon>(a); }

}  // namespace pysparse
