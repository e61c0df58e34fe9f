// The VNNI kernels, included twice by qs8-spmm-x86.cc with QS8_VNNI_TARGET,
// QS8_DP256 / QS8_DP128 (vpdpbusd, VEX or EVEX), QS8_VNNI_NAME and QS8_VNNI_NS
// defined. See that file for the arithmetic (x + 128, minus 128 * wsum); the
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

}  // namespace QS8_VNNI_NS

void QS8_VNNI_NAME(qs8_spmm_bsr_4x4_n1)(const QArgs& a) { QS8_VNNI_NS::n1<4, false>(a); }
void QS8_VNNI_NAME(qs8_spmm_bsr_8x4_n1)(const QArgs& a) { QS8_VNNI_NS::n1<8, false>(a); }
void QS8_VNNI_NAME(qs8_spmm_dense_8x4_n1)(const QArgs& a) { QS8_VNNI_NS::n1<8, true>(a); }
void QS8_VNNI_NAME(qs8_spmm_bsr_4x4_nx)(const QArgs& a) { QS8_VNNI_NS::nx<4, false>(a); }
void QS8_VNNI_NAME(qs8_spmm_bsr_8x4_nx)(const QArgs& a) { QS8_VNNI_NS::nx<8, false>(a); }
void QS8_VNNI_NAME(qs8_spmm_dense_8x4_nx)(const QArgs& a) { QS8_VNNI_NS::nx<8, true>(a); }
