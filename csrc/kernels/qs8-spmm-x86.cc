// x86-64 int8 kernels: AVX2, AVX-VNNI and AVX-512 VNNI, and the AVX2 prologue.
//
// Every function here carries its own target attribute and the file is built
// for the x86-64 baseline, so no instruction past SSE2 can leak into code the
// linker shares with the rest of the module (an inline function instantiated
// in a file built with -mavx512f would); qdispatch.cc calls these only after
// CPUID said yes.
//
// AVX2 has no 8-bit dot product that is safe for s8 x s8: vpmaddubsw takes u8
// x s8 and saturates its pair sums to int16 (255 * 127 * 2 > 32767). So both
// sides are sign-extended to 16 bits and multiplied with vpmaddwd, whose pair
// sums (at most 2 * 128 * 127) are exact in int32: twice the instructions of a
// dot product, exact by construction.
//
// VNNI (vpdpbusd, u8 x s8 summed in groups of 4 into int32, not saturating):
// activations enter as q + 128 (the prologue writes q ^ 0x80) and each row's
// 128 * wsum is subtracted at the end (qformats.h bounds the sum below 2**31). One
// instruction per (8 x 4) block at batch 1; four accumulators hide its 5-cycle
// latency. Both VNNI flavours use 256-bit vectors (the EVEX form needs
// AVX512VL): the blocks are 8 rows of 32 bits, and at batch 1 a 512-bit vector
// would need two different activation words per instruction. Wide batches on
// AVX-512 take 16 columns per vpdpbusd (zmm), 8 for the remainder.
//
// Wide batches (n a multiple of 8, nx): tiles of 8 columns of the interleaved
// activations (32 bytes: 8 columns x 4 inputs) against one broadcast 32-bit
// word of weights per row; the driver transposes Y^T into y. AVX2 runs them.
//
// Token tiles (nt, the VNNI levels): the lanes are the R rows of a block, the
// weights are loaded once per block and serve 16 tokens (EVEX: 16 ymm
// accumulators of its 32 registers; VEX: two sweeps of 8), each token's
// activation word is one broadcast. Outputs leave as R contiguous floats of a
// token's row of y, so the transpose of nx and its Y^T buffer are gone. On the
// MiniLM shapes at 128 tokens (Zen 4, 1 thread) this is what made int8 beat
// the fp32 sparse path (bench/results/int8_kernels.txt).
#include <immintrin.h>

#include <algorithm>

#include "kernels/qs8-common.h"
#include "qkernels.h"

namespace pysparse {

namespace {

#define QS8_AVX2 __attribute__((target("avx2,fma")))

using qs8::load_word;

// The epilogue of rows b*R .. b*R+R-1 at batch 1, acc in row order.
QS8_AVX2 inline void store_rows8(__m256i acc, const QView& w, int64_t b, const QArgs& a, __m256 xs) {
  const int64_t i0 = b * 8;
  const int live = static_cast<int>(std::min<int64_t>(8, w.rows - i0));
  __m256 bias = _mm256_setzero_ps();
  if (a.bias != nullptr) {
    if (live == 8) {
      bias = _mm256_loadu_ps(a.bias + i0);
    } else {
      alignas(32) float t[8] = {};
      std::copy_n(a.bias + i0, live, t);
      bias = _mm256_load_ps(t);
    }
  }
  __m256 y = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_loadu_ps(w.scales + i0)), xs, bias);
  if (a.relu) y = _mm256_andnot_ps(_mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_LT_OQ), y);
  if (live == 8 && a.y_rs == 1) {
    _mm256_storeu_ps(a.y + i0, y);
  } else {
    alignas(32) float t[8];
    _mm256_store_ps(t, y);
    for (int r = 0; r < live; ++r) a.y[(i0 + r) * a.y_rs] = t[r];
  }
}

QS8_AVX2 inline void store_rows4(__m128i acc, const QView& w, int64_t b, const QArgs& a, __m128 xs) {
  const int64_t i0 = b * 4;
  const int live = static_cast<int>(std::min<int64_t>(4, w.rows - i0));
  __m128 bias = _mm_setzero_ps();
  if (a.bias != nullptr) {
    if (live == 4) {
      bias = _mm_loadu_ps(a.bias + i0);
    } else {
      alignas(16) float t[4] = {};
      std::copy_n(a.bias + i0, live, t);
      bias = _mm_load_ps(t);
    }
  }
  __m128 y = _mm_fmadd_ps(_mm_mul_ps(_mm_cvtepi32_ps(acc), _mm_loadu_ps(w.scales + i0)), xs, bias);
  if (a.relu) y = _mm_andnot_ps(_mm_cmp_ps(y, _mm_setzero_ps(), _CMP_LT_OQ), y);
  if (live == 4 && a.y_rs == 1) {
    _mm_storeu_ps(a.y + i0, y);
  } else {
    alignas(16) float t[4];
    _mm_store_ps(t, y);
    for (int r = 0; r < live; ++r) a.y[(i0 + r) * a.y_rs] = t[r];
  }
}

// Row i's outputs for columns j0 .. j0+7 (wide batch).
QS8_AVX2 inline void store_cols8(__m256i acc, const QView& w, int64_t i, int64_t j0, const QArgs& a) {
  const __m256 bias = _mm256_set1_ps(a.bias != nullptr ? a.bias[i] : 0.0f);
  __m256 y = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(w.scales[i])),
                             _mm256_loadu_ps(a.x_scale + j0), bias);
  if (a.relu) y = _mm256_andnot_ps(_mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_LT_OQ), y);
  float* out = a.y + i * a.y_rs + j0 * a.y_cs;
  if (a.y_cs == 1) {
    _mm256_storeu_ps(out, y);
  } else {
    alignas(32) float t[8];
    _mm256_store_ps(t, y);
    for (int j = 0; j < 8; ++j) out[j * a.y_cs] = t[j];
  }
}

// The nt kernels' vectors of R int32 rows (qs8-spmm-vnni.inl).
template <int R>
struct NtVec {
  using V = __m256i;
  using F = __m256;
};
template <>
struct NtVec<4> {
  using V = __m128i;
  using F = __m128;
};

// Four int8 activations, sign-extended, in every 64-bit lane.
QS8_AVX2 inline __m256i x16_broadcast(const int8_t* x) {
  return _mm256_broadcastq_epi64(_mm_cvtepi8_epi16(_mm_cvtsi32_si128(load_word(x))));
}

template <int R, bool Dense>
QS8_AVX2 void avx2_n1(const QArgs& a) {
  const QView& w = *a.w;
  const __m256 xs8 = _mm256_set1_ps(a.x_scale[0]);
  for (int64_t b = a.block_begin; b < a.block_end; ++b) {
    const int64_t p0 = w.begin(b), p1 = w.end(b);
    const int8_t* blk = w.values + p0 * R * 4;
    __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
    for (int64_t p = p0; p < p1; ++p, blk += R * 4) {
      const int64_t g = Dense ? p - p0 : w.idx[p];
      const __m256i xv = x16_broadcast(a.xq + g * 4);
      lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)blk)), xv));
      if constexpr (R == 8) {
        hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)(blk + 16))), xv));
      }
    }
    // lo: [r0 r0 r1 r1 | r2 r2 r3 r3] pair sums, hi the same for rows 4-7.
    if constexpr (R == 8) {
      const __m256i s = _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo, hi), _MM_SHUFFLE(3, 1, 2, 0));
      store_rows8(s, w, b, a, xs8);
    } else {
      const __m256i s = _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo, lo), _MM_SHUFFLE(3, 1, 2, 0));
      store_rows4(_mm256_castsi256_si128(s), w, b, a, _mm256_castps256_ps128(xs8));
    }
  }
}

template <int R, bool Dense>
QS8_AVX2 void avx2_nx(const QArgs& a) {
  const QView& w = *a.w;
  const int64_t n = a.n;
  for (int64_t b = a.block_begin; b < a.block_end; ++b) {
    const int64_t p0 = w.begin(b), p1 = w.end(b);
    for (int64_t j0 = 0; j0 < n; j0 += 8) {
      for (int h = 0; h < R / 4; ++h) {  // four rows at a time: 8 accumulators
        __m256i acc_a[4], acc_b[4];
        for (int r = 0; r < 4; ++r) acc_a[r] = acc_b[r] = _mm256_setzero_si256();
        const int8_t* blk = w.values + p0 * R * 4 + h * 16;
        for (int64_t p = p0; p < p1; ++p, blk += R * 4) {
          const int64_t g = Dense ? p - p0 : w.idx[p];
          const __m256i xv = _mm256_loadu_si256((const __m256i*)(a.xq + (g * n + j0) * 4));
          const __m256i xa = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(xv));       // columns 0-3
          const __m256i xb = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(xv, 1));  // columns 4-7
          const __m256i w16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)blk));  // 4 rows x 4
          const __m256i w0 = _mm256_permute4x64_epi64(w16, 0x00), w1 = _mm256_permute4x64_epi64(w16, 0x55);
          const __m256i w2 = _mm256_permute4x64_epi64(w16, 0xAA), w3 = _mm256_permute4x64_epi64(w16, 0xFF);
          acc_a[0] = _mm256_add_epi32(acc_a[0], _mm256_madd_epi16(xa, w0));
          acc_b[0] = _mm256_add_epi32(acc_b[0], _mm256_madd_epi16(xb, w0));
          acc_a[1] = _mm256_add_epi32(acc_a[1], _mm256_madd_epi16(xa, w1));
          acc_b[1] = _mm256_add_epi32(acc_b[1], _mm256_madd_epi16(xb, w1));
          acc_a[2] = _mm256_add_epi32(acc_a[2], _mm256_madd_epi16(xa, w2));
          acc_b[2] = _mm256_add_epi32(acc_b[2], _mm256_madd_epi16(xb, w2));
          acc_a[3] = _mm256_add_epi32(acc_a[3], _mm256_madd_epi16(xa, w3));
          acc_b[3] = _mm256_add_epi32(acc_b[3], _mm256_madd_epi16(xb, w3));
        }
        for (int r = 0; r < 4; ++r) {
          const int64_t i = b * R + h * 4 + r;
          if (i >= w.rows) break;
          const __m256i s = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc_a[r], acc_b[r]), _MM_SHUFFLE(3, 1, 2, 0));
          store_cols8(s, w, i, j0, a);
        }
      }
    }
  }
}

}  // namespace

void qs8_spmm_bsr_4x4_n1__avx2(const QArgs& a) { avx2_n1<4, false>(a); }
void qs8_spmm_bsr_8x4_n1__avx2(const QArgs& a) { avx2_n1<8, false>(a); }
void qs8_spmm_dense_8x4_n1__avx2(const QArgs& a) { avx2_n1<8, true>(a); }
void qs8_spmm_bsr_4x4_nx__avx2(const QArgs& a) { avx2_nx<4, false>(a); }
void qs8_spmm_bsr_8x4_nx__avx2(const QArgs& a) { avx2_nx<8, false>(a); }
void qs8_spmm_dense_8x4_nx__avx2(const QArgs& a) { avx2_nx<8, true>(a); }

// The same VNNI kernels twice: VEX (AVX-VNNI) and EVEX (AVX512-VNNI + VL).
#define QS8_VNNI_TARGET __attribute__((target("avx2,fma,avxvnni")))
#define QS8_DP256 _mm256_dpbusd_avx_epi32
#define QS8_DP128 _mm_dpbusd_avx_epi32
#define QS8_VNNI_NAME(f) f##__avxvnni
#define QS8_VNNI_NS vnni_vex
#define QS8_NT_TOKENS 8
#include "kernels/qs8-spmm-vnni.inl"
#undef QS8_VNNI_TARGET
#undef QS8_DP256
#undef QS8_DP128
#undef QS8_VNNI_NAME
#undef QS8_VNNI_NS
#undef QS8_NT_TOKENS

#define QS8_VNNI_TARGET __attribute__((target("avx2,fma,avx512f,avx512vl,avx512bw,avx512vnni")))
#define QS8_DP256 _mm256_dpbusd_epi32
#define QS8_DP128 _mm_dpbusd_epi32
#define QS8_VNNI_NAME(f) f##__avx512vnni
#define QS8_VNNI_NS vnni_evex
#define QS8_VNNI_ZMM 1  // wide batches in 512-bit tiles of 16 columns
#define QS8_NT_TOKENS 16
#include "kernels/qs8-spmm-vnni.inl"

// The prologue: max |x| per row with a NaN / infinity flag, then
// cvtps2dq (round half to even, like nearbyint) of x * (127 / amax).
QS8_AVX2 void qs8_quantize__avx2(const QuantizeArgs& a) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 fmax = _mm256_set1_ps(3.4028234663852886e38f);
  const __m128i lim = _mm_set1_epi16(127), nlim = _mm_set1_epi16(-127);
  const __m128i flip = _mm_set1_epi8(static_cast<char>(a.flip));
  for (int64_t j = a.row_begin; j < a.row_end; ++j) {
    const float* x = a.x + j * a.ldx;
    __m256 vmax = _mm256_setzero_ps(), vbad = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= a.cols; k += 8) {
      const __m256 v = _mm256_and_ps(_mm256_loadu_ps(x + k), absmask);
      vbad = _mm256_or_ps(vbad, _mm256_cmp_ps(v, fmax, _CMP_NLE_UQ));
      vmax = _mm256_max_ps(vmax, v);
    }
    alignas(32) float m8[8];
    _mm256_store_ps(m8, vmax);
    float amax = 0.0f;
    for (float v : m8) amax = v > amax ? v : amax;
    bool bad = _mm256_movemask_ps(vbad) != 0;
    qs8::row_max_tail(x, k, a.cols, amax, bad);
    const qs8::RowScale s = qs8::row_scale(amax, bad);
    a.scale[j] = s.scale;
    int8_t* q0 = a.xq + qs8::xq_row(j, a.rows, a.groups);  // group 0 of row j
    const int64_t step = a.rows * 4;     // bytes from group g to g + 1
    if (s.zero) {
      qs8::write_zero_row(q0, a.groups, step, a.flip);
      continue;
    }
    const __m256 inv = _mm256_set1_ps(s.inv);
    for (k = 0; k + 8 <= a.cols; k += 8) {
      const __m256i q = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k), inv));
      __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
      p16 = _mm_max_epi16(_mm_min_epi16(p16, lim), nlim);
      const __m128i p8 = _mm_xor_si128(_mm_packs_epi16(p16, p16), flip);
      const int32_t w0 = _mm_cvtsi128_si32(p8), w1 = _mm_extract_epi32(p8, 1);
      std::memcpy(q0 + (k >> 2) * step, &w0, 4);
      std::memcpy(q0 + ((k >> 2) + 1) * step, &w1, 4);
    }
    qs8::write_tail(q0, step, k, a.cols, a.groups, x, s.inv, a.flip);
  }
}

// The same prologue in 512-bit vectors for the AVX-512 VNNI level (16 inputs
// per step; vpmovsdb saturates to int8, the max with -127 gives the contract's
// [-127, 127]): the bytes and scales of the AVX2 and scalar ones. At 128 tokens
// the prologue is a tenth of an int8 Linear's time, so its width counts.
__attribute__((target("avx2,fma,avx512f,avx512vl,avx512bw"))) void qs8_quantize__avx512(const QuantizeArgs& a) {
  const __m512 fmax = _mm512_set1_ps(3.4028234663852886e38f);
  const __m512i nlim = _mm512_set1_epi32(-127);
  const __m128i flip = _mm_set1_epi8(static_cast<char>(a.flip));
  const int64_t step = a.rows * 4;  // bytes from group g to g + 1
  for (int64_t j = a.row_begin; j < a.row_end; ++j) {
    const float* x = a.x + j * a.ldx;
    __m512 vmax = _mm512_setzero_ps();
    __mmask16 vbad = 0;
    int64_t k = 0;
    for (; k + 16 <= a.cols; k += 16) {
      const __m512 v = _mm512_abs_ps(_mm512_loadu_ps(x + k));
      vbad |= _mm512_cmp_ps_mask(v, fmax, _CMP_NLE_UQ);
      vmax = _mm512_max_ps(vmax, v);
    }
    alignas(64) float m16[16];
    _mm512_store_ps(m16, vmax);
    float amax = 0.0f;
    for (float v : m16) amax = v > amax ? v : amax;
    bool bad = vbad != 0;
    qs8::row_max_tail(x, k, a.cols, amax, bad);
    const qs8::RowScale s = qs8::row_scale(amax, bad);
    a.scale[j] = s.scale;
    int8_t* q0 = a.xq + qs8::xq_row(j, a.rows, a.groups);
    if (s.zero) {
      qs8::write_zero_row(q0, a.groups, step, a.flip);
      continue;
    }
    const __m512 inv = _mm512_set1_ps(s.inv);
    for (k = 0; k + 16 <= a.cols; k += 16) {
      const __m512i q = _mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + k), inv)), nlim);
      const __m128i p8 = _mm_xor_si128(_mm512_cvtsepi32_epi8(q), flip);
      const int32_t w0 = _mm_cvtsi128_si32(p8), w1 = _mm_extract_epi32(p8, 1);
      const int32_t w2 = _mm_extract_epi32(p8, 2), w3 = _mm_extract_epi32(p8, 3);
      int8_t* o = q0 + (k >> 2) * step;
      std::memcpy(o, &w0, 4);
      std::memcpy(o + step, &w1, 4);
      std::memcpy(o + 2 * step, &w2, 4);
      std::memcpy(o + 3 * step, &w3, 4);
    }
    qs8::write_tail(q0, step, k, a.cols, a.groups, x, s.inv, a.flip);
  }
}

}  // namespace pysparse
