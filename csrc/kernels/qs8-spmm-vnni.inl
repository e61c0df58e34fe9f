// The VNNI kernels, included twice by qs8-spmm-x86.cc with QS8_VNNI_TARGET,
// QS8_DP256 / QS8_DP128 (vpdpbusd, VEX or EVEX), QS8_VNNI_NAME and QS8_VNNI_NS
// QS8_NT_TOKENS defined. See that file for the arithmetic (x + 128, minus 128 * wsum); the
// activations arrive already as u8 = q + 128 (the prologue's flip).
namespace QS8_VNNI_NS {

template <int R, bool Dense>
QS8_VNNI_TARGET void n1(const QArgs& a) {
  const QView& w = *a.w;
  const __m256 xs8 = _mm256_set1_ps(a.x_scale[0]);
  for (int64_t b = a.block_begin; b < a.block_end; ++b) {
    const int64_t p0 = w.begin(b), p1 = w.end(b);
    const int8_t* blk = w.values + p0 * R * 4;
    if constexpr (R == 8) {
      __m256i c0 = _mm256_setzero_si256(), c1 = c0, c2 = c0, c3 = c0;
      int64_t p = p0;
#define QS8_X(q) _mm256_set1_epi32(load_word(a.xq + (Dense ? (q) - p0 : w.idx[q]) * 4))
#define QS8_W(q) _mm256_loadu_si256((const __m256i*)(blk + ((q) - p0) * 32))
      for (; p + 4 <= p1; p += 4) {
        c0 = QS8_DP256(c0, QS8_X(p), QS8_W(p));
        c1 = QS8_DP256(c1, QS8_X(p + 1), QS8_W(p + 1));
        c2 = QS8_DP256(c2, QS8_X(p + 2), QS8_W(p + 2));
        c3 = QS8_DP256(c3, QS8_X(p + 3), QS8_W(p + 3));
      }
      for (; p < p1; ++p) c0 = QS8_DP256(c0, QS8_X(p), QS8_W(p));
#undef QS8_X
#undef QS8_W
      __m256i acc = _mm256_add_epi32(_mm256_add_epi32(c0, c1), _mm256_add_epi32(c2, c3));
      acc = _mm256_sub_epi32(acc, _mm256_slli_epi32(_mm256_loadu_si256((const __m256i*)(w.wsum + b * 8)), 7));
      store_rows8(acc, w, b, a, xs8);
    } else {
      __m128i c0 = _mm_setzero_si128(), c1 = c0, c2 = c0, c3 = c0;
      int64_t p = p0;
#define QS8_X(q) _mm_set1_epi32(load_word(a.xq + (Dense ? (q) - p0 : w.idx[q]) * 4))
#define QS8_W(q) _mm_loadu_si128((const __m128i*)(blk + ((q) - p0) * 16))
      for (; p + 4 <= p1; p += 4) {
        c0 = QS8_DP128(c0, QS8_X(p), QS8_W(p));
        c1 = QS8_DP128(c1, QS8_X(p + 1), QS8_W(p + 1));
        c2 = QS8_DP128(c2, QS8_X(p + 2), QS8_W(p + 2));
        c3 = QS8_DP128(c3, QS8_X(p + 3), QS8_W(p + 3));
      }
      for (; p < p1; ++p) c0 = QS8_DP128(c0, QS8_X(p), QS8_W(p));
#undef QS8_X
#undef QS8_W
      __m128i acc = _mm_add_epi32(_mm_add_epi32(c0, c1), _mm_add_epi32(c2, c3));
      acc = _mm_sub_epi32(acc, _mm_slli_epi32(_mm_loadu_si128((const __m128i*)(w.wsum + b * 4)), 7));
      store_rows4(acc, w, b, a, _mm256_castps256_ps128(xs8));
    }
  }
}

template <int R, bool Dense>
QS8_VNNI_TARGET void nx(const QArgs& a) {
  const QView& w = *a.w;
  const int64_t n = a.n;
  for (int64_t b = a.block_begin; b < a.block_end; ++b) {
    const int64_t p0 = w.begin(b), p1 = w.end(b);
    int64_t j0 = 0;
#ifdef QS8_VNNI_ZMM
    // 16 columns per instruction: twice the products per broadcast weight word.
    for (; j0 + 16 <= n; j0 += 16) {
      __m512i acc[R];
      for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_si512();
      const int8_t* blk = w.values + p0 * R * 4;
      for (int64_t p = p0; p < p1; ++p, blk += R * 4) {
        const int64_t g = Dense ? p - p0 : w.idx[p];
        const __m512i xu = _mm512_loadu_si512((const void*)(a.xq + (g * n + j0) * 4));
        for (int r = 0; r < R; ++r) acc[r] = _mm512_dpbusd_epi32(acc[r], xu, _mm512_set1_epi32(load_word(blk + r * 4)));
      }
      for (int r = 0; r < R; ++r) {
        const int64_t i = b * R + r;
        if (i >= w.rows) break;
        // Through memory: GCC 12's 512 -> 256 casts warn (maybe-uninitialized, its bug 105593).
        alignas(64) int32_t s[16];
        _mm512_store_si512(s, _mm512_sub_epi32(acc[r], _mm512_set1_epi32(w.wsum[i] * 128)));
        store_cols8(_mm256_load_si256((const __m256i*)s), w, i, j0, a);
        store_cols8(_mm256_load_si256((const __m256i*)(s + 8)), w, i, j0 + 8, a);
      }
    }
#endif
    for (; j0 < n; j0 += 8) {
      __m256i acc[R];
      for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_si256();
      const int8_t* blk = w.values + p0 * R * 4;
      for (int64_t p = p0; p < p1; ++p, blk += R * 4) {
        const int64_t g = Dense ? p - p0 : w.idx[p];
        const __m256i xu = _mm256_loadu_si256((const __m256i*)(a.xq + (g * n + j0) * 4));
        for (int r = 0; r < R; ++r) acc[r] = QS8_DP256(acc[r], xu, _mm256_set1_epi32(load_word(blk + r * 4)));
      }
      for (int r = 0; r < R; ++r) {
        const int64_t i = b * R + r;
        if (i >= w.rows) break;
        store_cols8(_mm256_sub_epi32(acc[r], _mm256_set1_epi32(w.wsum[i] * 128)), w, i, j0, a);
      }
    }
  }
}

// Token tiles (nt, qformats.h): the lanes are output rows, one accumulator per
// token. Per (R x 4) block: one load of its weights, then per token one
// broadcast of the token's activation word and one vpdpbusd, so a loaded block
// serves QS8_NT_TOKENS tokens and a broadcast word R rows; the tile (G * 64
// bytes) stays in L1 while every block row of the call sweeps over it. The
// accumulators start at -128 * wsum (the u8 shift, exact: qformats.h's bound),
// and the epilogue writes each token's R outputs as one contiguous vector of
// Y's row (token-major, no transpose). QS8_NT_TOKENS: 16 accumulators with
// EVEX's 32 registers, 8 with VEX's 16.
#ifdef QS8_VNNI_ZMM
// Token tiles in 512-bit vectors: a zmm holds R rows x P = 16 / R tokens, lane
// l = (row l / P, token l % P). One broadcast of P adjacent activation words
// (8 bytes for R = 8, 16 for R = 4: the tile layout puts a group's tokens side
// by side) feeds R x P products of one vpdpbusd, so a broadcast serves twice
// (R = 8) or four times (R = 4) the work of the ymm kernel's; the block's
// weights are spread once per block (vpermd: each row's word P times). The
// epilogue runs in that lane order and one vpermps per vector puts each
// token's R outputs side by side for the stores.
template <int R, bool Dense>
QS8_VNNI_TARGET void nt512(const QArgs& a) {
  constexpr int P = 16 / R;          // tokens per vector
  constexpr int NA = kQTile / P;     // accumulators: one per P tokens of the tile
  constexpr int64_t T = kQTile;
  const QView& w = *a.w;
  alignas(64) int32_t spread_i[16], gather_i[16];
  for (int l = 0; l < 16; ++l) spread_i[l] = l / P;                            // lane -> its row
  for (int o = 0; o < 16; ++o) gather_i[o] = (o % R) * P + o / R;              // token-major lane o <- lane
  const __m512i spread = _mm512_load_si512(spread_i), gather = _mm512_load_si512(gather_i);
  for (int64_t j0 = 0; j0 < a.n; j0 += T) {
    const int8_t* xt = a.xq + (j0 / T) * w.groups * T * 4;
    const int nh = static_cast<int>(std::min<int64_t>(T, a.n - j0));
    const float* xs = a.x_scale + j0;
    float* yh = a.y + j0 * a.y_cs;
    for (int64_t b = a.block_begin; b < a.block_end; ++b) {
      const int64_t p0 = w.begin(b), p1 = w.end(b);
      alignas(64) int32_t rv[16] = {};
      for (int r = 0; r < R; ++r) rv[r] = -w.wsum[b * R + r] * 128;
      const __m512i c = _mm512_permutexvar_epi32(spread, _mm512_load_si512(rv));
      __m512i acc[NA];
#pragma GCC unroll 16
      for (int u = 0; u < NA; ++u) acc[u] = c;
      const int8_t* blk = w.values + p0 * R * 4;
      for (int64_t p = p0; p < p1; ++p, blk += R * 4) {
        const int8_t* xg = xt + (Dense ? p - p0 : w.idx[p]) * (T * 4);
        __m512i wv;
        if constexpr (R == 8) {
          wv = _mm512_permutexvar_epi32(spread, _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i*)blk)));
        } else {
          wv = _mm512_permutexvar_epi32(spread, _mm512_castsi128_si512(_mm_loadu_si128((const __m128i*)blk)));
        }
#pragma GCC unroll 16
        for (int u = 0; u < NA; ++u) {
          __m512i xv;
          if constexpr (R == 8) {
            int64_t q;
            std::memcpy(&q, xg + u * 8, 8);
            xv = _mm512_set1_epi64(q);
          } else {
            xv = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i*)(xg + u * 16)));
          }
          acc[u] = _mm512_dpbusd_epi32(acc[u], xv, wv);
        }
      }
      // The epilogue in lane order: scales and bias spread like the rows, x scales like the tokens.
      const int64_t i0 = b * R;
      const int rl = static_cast<int>(std::min<int64_t>(R, w.rows - i0));
      alignas(64) float sv[16] = {}, bv[16] = {};
      std::copy_n(w.scales + i0, R, sv);
      if (a.bias != nullptr) std::copy_n(a.bias + i0, rl, bv);
      const __m512 ws = _mm512_permutexvar_ps(spread, _mm512_load_ps(sv));
      const __m512 bias = _mm512_permutexvar_ps(spread, _mm512_load_ps(bv));
      const bool whole = rl == R && a.y_rs == 1;
      float* yb = yh + i0 * a.y_rs;
#pragma GCC unroll 16
      for (int u = 0; u < NA; ++u) {
        if (u * P >= nh) break;
        // The x scales of this vector's P tokens; the tile's last vector may hold fewer than P real
        // tokens, whose scales are copied so nothing past x_scale[n - 1] is read.
        const float* xp = xs + u * P;
        alignas(16) float xpad[4] = {};
        if (nh - u * P < P) {
          std::copy_n(xp, nh - u * P, xpad);
          xp = xpad;
        }
        __m512 xsv;
        if constexpr (R == 8) {
          double d;
          std::memcpy(&d, xp, 8);
          xsv = _mm512_castpd_ps(_mm512_set1_pd(d));
        } else {
          xsv = _mm512_broadcast_f32x4(_mm_loadu_ps(xp));
        }
        __m512 y = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc[u]), ws), xsv, bias);
        if (a.relu) y = _mm512_maskz_mov_ps(~_mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_LT_OQ), y);
        y = _mm512_permutexvar_ps(gather, y);  // token-major: P runs of R rows
        const int t0 = u * P;
        if (whole && t0 + P <= nh) {  // straight from the register (a reload of a zmm store's upper half stalls)
          if constexpr (R == 8) {
            _mm256_storeu_ps(yb + t0 * a.y_cs, _mm512_castps512_ps256(y));
            _mm256_storeu_ps(yb + (t0 + 1) * a.y_cs, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(y), 1)));
          } else {
            _mm_storeu_ps(yb + t0 * a.y_cs, _mm512_castps512_ps128(y));
            _mm_storeu_ps(yb + (t0 + 1) * a.y_cs, _mm512_extractf32x4_ps(y, 1));
            _mm_storeu_ps(yb + (t0 + 2) * a.y_cs, _mm512_extractf32x4_ps(y, 2));
            _mm_storeu_ps(yb + (t0 + 3) * a.y_cs, _mm512_extractf32x4_ps(y, 3));
          }
          continue;
        }
        alignas(64) float o[16];
        _mm512_store_ps(o, y);
        for (int tp = 0; tp < P; ++tp) {
          const int t = t0 + tp;
          if (t >= nh) break;
          for (int r = 0; r < rl; ++r) yb[t * a.y_cs + r * a.y_rs] = o[tp * R + r];
        }
      }
    }
  }
}
#endif

template <int R, bool Dense>
QS8_VNNI_TARGET void nt(const QArgs& a) {
  using V = typename NtVec<R>::V;
  using F = typename NtVec<R>::F;
  constexpr int TT = QS8_NT_TOKENS;
  constexpr int64_t T = kQTile;
  const QView& w = *a.w;
  for (int64_t j0 = 0; j0 < a.n; j0 += T) {
    const int8_t* xt = a.xq + (j0 / T) * w.groups * T * 4;
    const int64_t live = std::min<int64_t>(T, a.n - j0);
    for (int64_t h = 0; h < live; h += TT) {
      const int8_t* xh = xt + h * 4;
      const int nh = static_cast<int>(std::min<int64_t>(TT, live - h));
      const float* xs = a.x_scale + j0 + h;
      float* yh = a.y + (j0 + h) * a.y_cs;
      for (int64_t b = a.block_begin; b < a.block_end; ++b) {
        const int64_t p0 = w.begin(b), p1 = w.end(b);
        V acc[TT];
        if constexpr (R == 8) {
          const V c = _mm256_sub_epi32(_mm256_setzero_si256(),
                                       _mm256_slli_epi32(_mm256_loadu_si256((const __m256i*)(w.wsum + b * 8)), 7));
#pragma GCC unroll 16
          for (int t = 0; t < TT; ++t) acc[t] = c;
        } else {
          const V c = _mm_sub_epi32(_mm_setzero_si128(), _mm_slli_epi32(_mm_loadu_si128((const __m128i*)(w.wsum + b * 4)), 7));
#pragma GCC unroll 16
          for (int t = 0; t < TT; ++t) acc[t] = c;
        }
        const int8_t* blk = w.values + p0 * R * 4;
        for (int64_t p = p0; p < p1; ++p, blk += R * 4) {
          const int8_t* xg = xh + (Dense ? p - p0 : w.idx[p]) * (T * 4);
          if constexpr (R == 8) {
            const V wv = _mm256_loadu_si256((const __m256i*)blk);
#pragma GCC unroll 16
            for (int t = 0; t < TT; ++t) acc[t] = QS8_DP256(acc[t], _mm256_set1_epi32(load_word(xg + t * 4)), wv);
          } else {
            const V wv = _mm_loadu_si128((const __m128i*)blk);
#pragma GCC unroll 16
            for (int t = 0; t < TT; ++t) acc[t] = QS8_DP128(acc[t], _mm_set1_epi32(load_word(xg + t * 4)), wv);
          }
        }
        // The epilogue: y = act(fma(float(acc) * w_scale, x_scale, bias)), R rows per token.
        const int64_t i0 = b * R;
        const int rl = static_cast<int>(std::min<int64_t>(R, w.rows - i0));
        alignas(32) float bt[R] = {};
        if (a.bias != nullptr) std::copy_n(a.bias + i0, rl, bt);
        const bool whole = rl == R && a.y_rs == 1;
        float* yb = yh + i0 * a.y_rs;
        if constexpr (R == 8) {
          const F ws = _mm256_loadu_ps(w.scales + i0), bias = _mm256_load_ps(bt);
#pragma GCC unroll 16
          for (int t = 0; t < TT; ++t) {
            if (t >= nh) break;
            F y = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acc[t]), ws), _mm256_set1_ps(xs[t]), bias);
            if (a.relu) y = _mm256_andnot_ps(_mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_LT_OQ), y);
            if (whole) {
              _mm256_storeu_ps(yb + t * a.y_cs, y);
            } else {
              alignas(32) float o[8];
              _mm256_store_ps(o, y);
              for (int r = 0; r < rl; ++r) yb[t * a.y_cs + r * a.y_rs] = o[r];
            }
          }
        } else {
          const F ws = _mm_loadu_ps(w.scales + i0), bias = _mm_load_ps(bt);
#pragma GCC unroll 16
          for (int t = 0; t < TT; ++t) {
            if (t >= nh) break;
            F y = _mm_fmadd_ps(_mm_mul_ps(_mm_cvtepi32_ps(acc[t]), ws), _mm_set1_ps(xs[t]), bias);
            if (a.relu) y = _mm_andnot_ps(_mm_cmp_ps(y, _mm_setzero_ps(), _CMP_LT_OQ), y);
            if (whole) {
              _mm_storeu_ps(yb + t * a.y_cs, y);
            } else {
              alignas(16) float o[4];
              _mm_store_ps(o, y);
              for (int r = 0; r < rl; ++r) yb[t * a.y_cs + r * a.y_rs] = o[r];
            }
          }
        }
      }
    }
  }
}

}  // namespace QS8_VNNI_NS

void QS8_VNNI_NAME(qs8_spmm_bsr_4x4_n1)(const QArgs& a) { QS8_VNNI_NS::n1<4, false>(a); }
void QS8_VNNI_NAME(qs8_spmm_bsr_8x4_n1)(const QArgs& a) { QS8_VNNI_NS::n1<8, false>(a); }
void QS8_VNNI_NAME(qs8_spmm_dense_8x4_n1)(const QArgs& a) { QS8_VNNI_NS::n1<8, true>(a); }
void QS8_VNNI_NAME(qs8_spmm_bsr_4x4_nx)(const QArgs& a) { QS8_VNNI_NS::nx<4, false>(a); }
void QS8_VNNI_NAME(qs8_spmm_bsr_8x4_nx)(const QArgs& a) { QS8_VNNI_NS::nx<8, false>(a); }
void QS8_VNNI_NAME(qs8_spmm_dense_8x4_nx)(const QArgs& a) { QS8_VNNI_NS::nx<8, true>(a); }
#ifdef QS8_VNNI_ZMM
void QS8_VNNI_NAME(qs8_spmm_bsr_4x4_nt)(const QArgs& a) { QS8_VNNI_NS::nt512<4, false>(a); }
void QS8_VNNI_NAME(qs8_spmm_bsr_8x4_nt)(const QArgs& a) { QS8_VNNI_NS::nt512<8, false>(a); }
void QS8_VNNI_NAME(qs8_spmm_dense_8x4_nt)(const QArgs& a) { QS8_VNNI_NS::nt512<8, true>(a); }
#else
void QS8_VNNI_NAME(qs8_spmm_bsr_4x4_nt)(const QArgs& a) { QS8_VNNI_NS::nt<4, false>(a); }
void QS8_VNNI_NAME(qs8_spmm_bsr_8x4_nt)(const QArgs& a) { QS8_VNNI_NS::nt<8, false>(a); }
void QS8_VNNI_NAME(qs8_spmm_dense_8x4_nt)(const QArgs& a) { QS8_VNNI_NS::nt<8, true>(a); }
#endif
