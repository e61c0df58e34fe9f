// The NEON vector traits the shared tile engines are written over
// (spmm-nx.inl): 4 floats per vector; no masked loads, so a tail of < 4
// columns runs scalar. Advanced SIMD is in every ARMv8-A core (no flags).
#pragma once

#include <arm_neon.h>

#include <cstdint>

#include "kernels/simd-widths.h"

namespace pysparse {
namespace {

struct Neon {
  using Widths = widths::Neon;
  using V = float32x4_t;
  static constexpr int kWidth = widths::Neon::kWidth;
  static constexpr bool kMaskedTail = false;  // the last < 4 columns run scalar
  static constexpr bool kPanels = false;      // CSR's L1 panels: not measured on an ARM core yet
  static constexpr int kTileAcc = widths::Neon::kTileAcc;  // accumulator vectors per register tile (spmm-nx.inl)

  static V zero() { return vdupq_n_f32(0.0f); }
  static V load(const float* p) { return vld1q_f32(p); }
  static V load_aligned(const float* p) { return vld1q_f32(p); }
  static void store(float* p, V v) { vst1q_f32(p, v); }
  static void store_aligned(float* p, V v) { vst1q_f32(p, v); }
  static V broadcast(const float* p) { return vld1q_dup_f32(p); }
  static V set1(float v) { return vdupq_n_f32(v); }
  static V fma(V w, V x, V acc) { return vfmaq_f32(acc, w, x); }
  static V add(V a, V b) { return vaddq_f32(a, b); }
};

}  // namespace
}  // namespace pysparse
