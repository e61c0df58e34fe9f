// aarch64 int8 kernels: plain Advanced SIMD (every ARMv8-A core: Cortex-A53,
// A72 of the Pi 4) and SDOT (ARMv8.2 dot product: Cortex-A76 of the Pi 5),
// and the NEON prologue.
//
// Plain NEON: smull multiplies 8 int8 pairs into int16 (|128 * 127| fits), and
// sadalp adds adjacent int16 pairs into int32 lanes: two instructions per 8
// products, exact. SDOT (vdotq_s32) does s8 x s8 groups of 4 into int32 in one,
// signed on both sides, so unlike x86 VNNI no +128 shift is needed. The SDOT
// functions carry target("arch=armv8.2-a+dotprod") in a file built for armv8-a and run only
// when HWCAP_ASIMDDP says the core has it (qdispatch.cc).
//
// Layouts as on x86: an (8 x 4) block is two q registers (rows 0-3, 4-7) of
// one 32-bit word per row; wide batches take 8 interleaved columns (32 bytes)
// of activations per group.
#include <arm_neon.h>

#include <algorithm>

#include "kernels/qs8-common.h"
#include "qkernels.h"

namespace pysparse {

namespace {

#define QS8_DOT __attribute__((target("arch=armv8.2-a+dotprod")))

using qs8::load_word;

inline void store_rows4(int32x4_t acc, const QView& w, int64_t i0, const QArgs& a, float32x4_t xs) {
  const int live = static_cast<int>(std::min<int64_t>(4, w.rows - i0));
  float32x4_t bias = vdupq_n_f32(0.0f);
  if (a.bias != nullptr) {
    float t[4] = {};
    std::copy_n(a.bias + i0, live, t);
    bias = vld1q_f32(t);
  }
  float32x4_t y = vfmaq_f32(bias, vmulq_f32(vcvtq_f32_s32(acc), vld1q_f32(w.scales + i0)), xs);
  if (a.relu) y = vbslq_f32(vcltq_f32(y, vdupq_n_f32(0.0f)), vdupq_n_f32(0.0f), y);
  float t[4];
  vst1q_f32(t, y);
  for (int r = 0; r < live; ++r) a.y[(i0 + r) * a.y_rs] = t[r];
}

inline void store_cols4(int32x4_t acc, const QView& w, int64_t i, int64_t j0, const QArgs& a) {
  const float32x4_t bias = vdupq_n_f32(a.bias != nullptr ? a.bias[i] : 0.0f);
  float32x4_t y =
      vfmaq_f32(bias, vmulq_f32(vcvtq_f32_s32(acc), vdupq_n_f32(w.scales[i])), vld1q_f32(a.x_scale + j0));
  if (a.relu) y = vbslq_f32(vcltq_f32(y, vdupq_n_f32(0.0f)), vdupq_n_f32(0.0f), y);
  float* out = a.y + i * a.y_rs + j0 * a.y_cs;
  if (a.y_cs == 1) {
    vst1q_f32(out, y);
  } else {
    float t[4];
    vst1q_f32(t, y);
    for (int j = 0; j < 4; ++j) out[j * a.y_cs] = t[j];
  }
}

template <int R, bool Dense>
void neon_n1(const QArgs& a) {
  const QView& w = *a.w;
  const float32x4_t xs = vdupq_n_f32(a.x_scale[0]);
  for (int64_t b = a.block_begin; b < a.block_end; ++b) {
    const int64_t p0 = w.begin(b), p1 = w.end(b);
    const int8_t* blk = w.values + p0 * R * 4;
    int32x4_t acc[R / 2];  // row pairs: [r c01, r c23, r+1 c01, r+1 c23]
    for (auto& v : acc) v = vdupq_n_s32(0);
    for (int64_t p = p0; p < p1; ++p, blk += R * 4) {
      const int64_t g = Dense ? p - p0 : w.idx[p];
      const int8x8_t xv = vreinterpret_s8_s32(vdup_n_s32(load_word(a.xq + g * 4)));
      for (int h = 0; h < R / 4; ++h) {
        const int8x16_t wv = vld1q_s8(blk + h * 16);
        acc[2 * h] = vpadalq_s16(acc[2 * h], vmull_s8(vget_low_s8(wv), xv));
        acc[2 * h + 1] = vpadalq_s16(acc[2 * h + 1], vmull_s8(vget_high_s8(wv), xv));
      }
    }
    for (int h = 0; h < R / 4; ++h) store_rows4(vpaddq_s32(acc[2 * h], acc[2 * h + 1]), w, b * R + h * 4, a, xs);
  }
}

template <int R, bool Dense>
void neon_nx(const QArgs& a) {
  const QView& w = *a.w;
  const int64_t n = a.n;
  for (int64_t b = a.block_begin; b < a.block_end; ++b) {
    const int64_t p0 = w.begin(b), p1 = w.end(b);
    for (int64_t j0 = 0; j0 < n; j0 += 8)
      for (int h = 0; h < R / 4; ++h) {
        int32x4_t acc[4][4];  // [row][column pair]: [c c01, c c23, c+1 c01, c+1 c23]
        for (auto& row : acc)
          for (auto& v : row) v = vdupq_n_s32(0);
        const int8_t* blk = w.values + p0 * R * 4 + h * 16;
        for (int64_t p = p0; p < p1; ++p, blk += R * 4) {
          const int64_t g = Dense ? p - p0 : w.idx[p];
          const int8_t* xg = a.xq + (g * n + j0) * 4;
          const int8x16_t xa = vld1q_s8(xg), xb = vld1q_s8(xg + 16);
          for (int r = 0; r < 4; ++r) {
            const int8x8_t wr = vreinterpret_s8_s32(vdup_n_s32(load_word(blk + r * 4)));
            acc[r][0] = vpadalq_s16(acc[r][0], vmull_s8(vget_low_s8(xa), wr));
            acc[r][1] = vpadalq_s16(acc[r][1], vmull_s8(vget_high_s8(xa), wr));
            acc[r][2] = vpadalq_s16(acc[r][2], vmull_s8(vget_low_s8(xb), wr));
            acc[r][3] = vpadalq_s16(acc[r][3], vmull_s8(vget_high_s8(xb), wr));
          }
        }
        for (int r = 0; r < 4; ++r) {
          const int64_t i = b * R + h * 4 + r;
          if (i >= w.rows) break;
          store_cols4(vpaddq_s32(acc[r][0], acc[r][1]), w, i, j0, a);
          store_cols4(vpaddq_s32(acc[r][2], acc[r][3]), w, i, j0 + 4, a);
        }
      }
  }
}

template <int R, bool Dense>
QS8_DOT void dot_n1(const QArgs& a) {
  const QView& w = *a.w;
  const float32x4_t xs = vdupq_n_f32(a.x_scale[0]);
  for (int64_t b = a.block_begin; b < a.block_end; ++b) {
    const int64_t p0 = w.begin(b), p1 = w.end(b);
    const int8_t* blk = w.values + p0 * R * 4;
    int32x4_t c0[R / 4], c1[R / 4];  // two chains per quad of rows (sdot latency)
    for (int h = 0; h < R / 4; ++h) c0[h] = c1[h] = vdupq_n_s32(0);
    int64_t p = p0;
    for (; p + 2 <= p1; p += 2, blk += 2 * R * 4) {
      const int64_t g0 = Dense ? p - p0 : w.idx[p], g1 = Dense ? p + 1 - p0 : w.idx[p + 1];
      const int8x16_t x0 = vreinterpretq_s8_s32(vdupq_n_s32(load_word(a.xq + g0 * 4)));
      const int8x16_t x1 = vreinterpretq_s8_s32(vdupq_n_s32(load_word(a.xq + g1 * 4)));
      for (int h = 0; h < R / 4; ++h) {
        c0[h] = vdotq_s32(c0[h], vld1q_s8(blk + h * 16), x0);
        c1[h] = vdotq_s32(c1[h], vld1q_s8(blk + R * 4 + h * 16), x1);
      }
    }
    for (; p < p1; ++p, blk += R * 4) {
      const int64_t g = Dense ? p - p0 : w.idx[p];
      const int8x16_t xv = vreinterpretq_s8_s32(vdupq_n_s32(load_word(a.xq + g * 4)));
      for (int h = 0; h < R / 4; ++h) c0[h] = vdotq_s32(c0[h], vld1q_s8(blk + h * 16), xv);
    }
    for (int h = 0; h < R / 4; ++h) store_rows4(vaddq_s32(c0[h], c1[h]), w, b * R + h * 4, a, xs);
  }
}

template <int R, bool Dense>
QS8_DOT void dot_nx(const QArgs& a) {
  const QView& w = *a.w;
  const int64_t n = a.n;
  for (int64_t b = a.block_begin; b < a.block_end; ++b) {
    const int64_t p0 = w.begin(b), p1 = w.end(b);
    for (int64_t j0 = 0; j0 < n; j0 += 8) {
      int32x4_t lo[R], hi[R];  // columns j0..j0+3 and j0+4..j0+7 of each row
      for (int r = 0; r < R; ++r) lo[r] = hi[r] = vdupq_n_s32(0);
      const int8_t* blk = w.values + p0 * R * 4;
      for (int64_t p = p0; p < p1; ++p, blk += R * 4) {
        const int64_t g = Dense ? p - p0 : w.idx[p];
        const int8_t* xg = a.xq + (g * n + j0) * 4;
        const int8x16_t xa = vld1q_s8(xg), xb = vld1q_s8(xg + 16);
        for (int r = 0; r < R; ++r) {
          const int8x16_t wr = vreinterpretq_s8_s32(vdupq_n_s32(load_word(blk + r * 4)));
          lo[r] = vdotq_s32(lo[r], xa, wr);
          hi[r] = vdotq_s32(hi[r], xb, wr);
        }
      }
      for (int r = 0; r < R; ++r) {
        const int64_t i = b * R + r;
        if (i >= w.rows) break;
        store_cols4(lo[r], w, i, j0, a);
        store_cols4(hi[r], w, i, j0 + 4, a);
      }
    }
  }
}

}  // namespace

void qs8_spmm_bsr_4x4_n1__neon(const QArgs& a) { neon_n1<4, false>(a); }
void qs8_spmm_bsr_8x4_n1__neon(const QArgs& a) { neon_n1<8, false>(a); }
void qs8_spmm_dense_8x4_n1__neon(const QArgs& a) { neon_n1<8, true>(a); }
void qs8_spmm_bsr_4x4_nx__neon(const QArgs& a) { neon_nx<4, false>(a); }
void qs8_spmm_bsr_8x4_nx__neon(const QArgs& a) { neon_nx<8, false>(a); }
void qs8_spmm_dense_8x4_nx__neon(const QArgs& a) { neon_nx<8, true>(a); }
void qs8_spmm_bsr_4x4_n1__neondot(const QArgs& a) { dot_n1<4, false>(a); }
void qs8_spmm_bsr_8x4_n1__neondot(const QArgs& a) { dot_n1<8, false>(a); }
void qs8_spmm_dense_8x4_n1__neondot(const QArgs& a) { dot_n1<8, true>(a); }
void qs8_spmm_bsr_4x4_nx__neondot(const QArgs& a) { dot_nx<4, false>(a); }
void qs8_spmm_bsr_8x4_nx__neondot(const QArgs& a) { dot_nx<8, false>(a); }
void qs8_spmm_dense_8x4_nx__neondot(const QArgs& a) { dot_nx<8, true>(a); }

// The prologue: max |x| per row with a NaN / infinity flag, then fcvtns
// (round half to even, like nearbyint) of x * (127 / amax).
void qs8_quantize__neon(const QuantizeArgs& a) {
  const float32x4_t fmax = vdupq_n_f32(3.4028234663852886e38f);
  for (int64_t j = a.row_begin; j < a.row_end; ++j) {
    const float* x = a.x + j * a.ldx;
    float32x4_t vmax = vdupq_n_f32(0.0f);
    uint32x4_t vok = vdupq_n_u32(0xffffffffu);
    int64_t k = 0;
    for (; k + 4 <= a.cols; k += 4) {
      const float32x4_t v = vabsq_f32(vld1q_f32(x + k));
      vok = vandq_u32(vok, vcleq_f32(v, fmax));
      vmax = vmaxq_f32(vmax, v);
    }
    float amax = 0.0f;
    float m4[4];
    vst1q_f32(m4, vmax);
    for (float v : m4) amax = v > amax ? v : amax;
    bool bad = vminvq_u32(vok) == 0;
    qs8::row_max_tail(x, k, a.cols, amax, bad);
    const qs8::RowScale s = qs8::row_scale(amax, bad);
    a.scale[j] = s.scale;
    int8_t* q0 = a.xq + qs8::xq_row(j, a.rows, a.groups);
    const int64_t step = a.rows * 4;
    if (s.zero) {
      qs8::write_zero_row(q0, a.groups, step, a.flip);
      continue;
    }
    const float32x4_t inv = vdupq_n_f32(s.inv);
    const int16x8_t lim = vdupq_n_s16(127), nlim = vdupq_n_s16(-127);
    for (k = 0; k + 8 <= a.cols; k += 8) {
      const int32x4_t q0v = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(x + k), inv));
      const int32x4_t q1v = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(x + k + 4), inv));
      int16x8_t p16 = vcombine_s16(vqmovn_s32(q0v), vqmovn_s32(q1v));
      p16 = vmaxq_s16(vminq_s16(p16, lim), nlim);
      const int8x8_t p8 = veor_s8(vqmovn_s16(p16), vdup_n_s8(static_cast<int8_t>(a.flip)));
      const int32x2_t words = vreinterpret_s32_s8(p8);
      const int32_t w0 = vget_lane_s32(words, 0), w1 = vget_lane_s32(words, 1);
      std::memcpy(q0 + (k >> 2) * step, &w0, 4);
      std::memcpy(q0 + ((k >> 2) + 1) * step, &w1, 4);
    }
    qs8::write_tail(q0, step, k, a.cols, a.groups, x, s.inv, a.flip);
  }
}

}  // namespace pysparse
