// f32_dwconv__scalar: one channel plane of a depthwise convolution (the portable twin: baseline ISA, the fallback and the test oracle).
// f32_dwconv__scalar_blocked: the blocked engine's twin, 8 channels of a pixel as eight 1-wide "vectors", 1 pixel a step.
// The engines and their contracts: dwconv.inl, dwconv-blocked.inl.
#include "kernels/vmath-scalar.h"
#include "dwconv.h"
#include "kernels/dwconv-blocked.inl"

namespace pysparse {

void f32_dwconv__scalar(const DwConvArgs& a) { dwconv<ScalarMath>(a); }
void f32_dwconv__scalar_blocked(const DwBlockArgs& a) {
  dwconv_blocked<ScalarMath, dwconv_transpose8x8_scalar, 8, 1>(a);
}

}  // namespace pysparse
