// x[idx[p..p+8)] as one AVX2 vector for the batch-1 kernels of unstructured
// formats (CSR and SELL: f32-spmm-csr-avx2.cc, f32-spmm-sell-avx2.cc).
//
// vgatherdps is the obvious answer and the wrong one here: on Zen 3 it costs
// ~16 cycles per 8 lanes, measured 1.4-1.5x slower than building the vector
// from eight scalar loads folded into vinsertps. The load ports are then the
// limit, so indices are fetched four at a time (one 64-bit load of uint16s,
// split by shifts on the otherwise idle integer ALUs): per 8 nonzeros, 2 index
// loads + 8 x loads + 1 value load. Reads 8 indices at ip, nothing else.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace pysparse {
namespace {

// x[ip[0..8)] as one vector from eight scalar loads. The kernel is bound by
// micro-ops, not by memory (it streams ~24 GB/s where L3 gives ~100 here), so
// each index costs one integer op: the low field by a zero-extending move, the
// top one by a shift, the middle two by BMI1 bextr (shift + mask in one op; a
// shift and a movzx before: 3-12% slower, measured on Zen 4).
inline __m256 load8(const float* x, const uint16_t* ip) {
  uint64_t a, b;
  std::memcpy(&a, ip, 8);
  std::memcpy(&b, ip + 4, 8);
  __m128 lo = _mm_load_ss(x + static_cast<uint16_t>(a));
  __m128 hi = _mm_load_ss(x + static_cast<uint16_t>(b));
  lo = _mm_insert_ps(lo, _mm_load_ss(x + _bextr_u64(a, 16, 16)), 0x10);
  hi = _mm_insert_ps(hi, _mm_load_ss(x + _bextr_u64(b, 16, 16)), 0x10);
  lo = _mm_insert_ps(lo, _mm_load_ss(x + _bextr_u64(a, 32, 16)), 0x20);
  hi = _mm_insert_ps(hi, _mm_load_ss(x + _bextr_u64(b, 32, 16)), 0x20);
  lo = _mm_insert_ps(lo, _mm_load_ss(x + (a >> 48)), 0x30);
  hi = _mm_insert_ps(hi, _mm_load_ss(x + (b >> 48)), 0x30);
  return _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
}

inline __m256 load8(const float* x, const uint32_t* ip) {
  uint64_t a, b, c, d;
  std::memcpy(&a, ip, 8);
  std::memcpy(&b, ip + 2, 8);
  std::memcpy(&c, ip + 4, 8);
  std::memcpy(&d, ip + 6, 8);
  __m128 lo = _mm_load_ss(x + (a & 0xFFFFFFFF));
  __m128 hi = _mm_load_ss(x + (c & 0xFFFFFFFF));
  lo = _mm_insert_ps(lo, _mm_load_ss(x + (a >> 32)), 0x10);
  hi = _mm_insert_ps(hi, _mm_load_ss(x + (c >> 32)), 0x10);
  lo = _mm_insert_ps(lo, _mm_load_ss(x + (b & 0xFFFFFFFF)), 0x20);
  hi = _mm_insert_ps(hi, _mm_load_ss(x + (d & 0xFFFFFFFF)), 0x20);
  lo = _mm_insert_ps(lo, _mm_load_ss(x + (b >> 32)), 0x30);
  hi = _mm_insert_ps(hi, _mm_load_ss(x + (d >> 32)), 0x30);
  return _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
}

}  // namespace
}  // namespace pysparse
