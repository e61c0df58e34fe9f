// The AVX-512 vector traits the shared tile engines are written over
// (spmm-nx.inl): 16 floats per vector, a tail of < 16 columns as one vector
// under an opmask (masked-off lanes are neither read nor faulted on).
// Include only from files compiled with -mavx512f -mavx512bw -mavx512dq
// -mavx512vl -mfma (CMakeLists.txt); they run only where dispatch.cc found the
// instructions and the OS state for them.
//
// On Zen 4 a 512-bit FMA is two 256-bit halves, so the FMA rate per float is
// AVX2's; what 16 lanes buy is half the loads, broadcasts, index reads and loop
// overhead per float, and 32 registers for wider tiles (kTileAcc below).
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernels/simd-widths.h"

namespace pysparse {
namespace {

struct Avx512 {
  using Widths = widths::Avx512;
  using V = __m512;
  using Mask = __mmask16;
  static constexpr int kWidth = widths::Avx512::kWidth;
  static constexpr bool kMaskedTail = true;  // a tail of < 16 columns as one masked vector
  static constexpr bool kPanels = true;      // CSR's L1 panels (spmm-nx.inl)
  static constexpr int kTileAcc = widths::Avx512::kTileAcc;

  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V load_aligned(const float* p) { return _mm512_load_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static void store_aligned(float* p, V v) { _mm512_store_ps(p, v); }
  static V broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static V set1(float v) { return _mm512_set1_ps(v); }
  static V fma(V w, V x, V acc) { return _mm512_fmadd_ps(w, x, acc); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  // Lanes [0, count) on, count <= 16.
  static Mask first(int64_t count) { return static_cast<Mask>((1u << count) - 1u); }
  static V load_first(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
};

}  // namespace
}  // namespace pysparse
