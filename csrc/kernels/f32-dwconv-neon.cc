// f32_dwconv__neon: one channel plane of a depthwise convolution (NEON, 4 output columns per vector).
// f32_dwconv__neon_blocked: 8 channels at once, one pixel of the 8 in two vectors, 4 pixels a step.
// The engines and their contracts: dwconv.inl, dwconv-blocked.inl.
#include "kernels/vmath-neon.h"
#include "kernels/x32-transpose-neon.h"
#include "dwconv.h"
#include "kernels/dwconv-blocked.inl"

namespace pysparse {
namespace {

// The 8 x 8 transpose as four 4 x 4 register transposes.
void transpose8x8_neon(const float* s, int64_t lds, float* d, int64_t ldd) {
  for (int64_t i = 0; i < 8; i += 4)
    for (int64_t j = 0; j < 8; j += 4) transpose4x4(s + i * lds + j, lds, d + j * ldd + i, ldd);
}

}  // namespace

void f32_dwconv__neon(const DwConvArgs& a) { dwconv<NeonMath>(a); }
void f32_dwconv__neon_blocked(const DwBlockArgs& a) { dwconv_blocked<NeonMath, transpose8x8_neon, 8, 4>(a); }

}  // namespace pysparse
