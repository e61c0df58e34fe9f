// The AVX2 + FMA vector traits the shared tile engines are written over
// (spmm-nx.inl): 8 floats per vector, masked loads for a tail of < 8 columns.
// In the style of ggml's simd-mappings.h: the maths is written once against
// these few names; an ISA is a new traits struct, not a copy of the engine.
// Include only from files compiled with -mavx2 -mfma (CMakeLists.txt).
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernels/simd-widths.h"

namespace pysparse {
namespace {

struct Avx2 {
  using Widths = widths::Avx2;
  using V = __m256;
  using Mask = __m256i;
  static constexpr int kWidth = widths::Avx2::kWidth;
  static constexpr bool kMaskedTail = true;  // a tail of < 8 columns as one masked vector
  static constexpr bool kPanels = true;      // CSR's L1 panels (measured on Zen 4; spmm-nx.inl)
  static constexpr int kTileAcc = widths::Avx2::kTileAcc;  // accumulator vectors per register tile (spmm-nx.inl)

  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V load_aligned(const float* p) { return _mm256_load_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static void store_aligned(float* p, V v) { _mm256_store_ps(p, v); }
  static V broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static V set1(float v) { return _mm256_set1_ps(v); }
  static V fma(V w, V x, V acc) { return _mm256_fmadd_ps(w, x, acc); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  // Lanes [0, count) on, count <= 8; masked loads never touch the lanes off.
  static Mask first(int64_t count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static V load_first(const float* p, Mask m) { return _mm256_maskload_ps(p, m); }
};

}  // namespace
}  // namespace pysparse
