// f32_dwconv__avx2: one channel plane of a depthwise convolution (AVX2 + FMA, 8 output columns per vector).
// f32_dwconv__avx2_blocked: 8 channels at once, one pixel of the 8 per vector, 4 pixels a step.
// The engines and their contracts: dwconv.inl, dwconv-blocked.inl.
#include "kernels/vmath-avx2.h"
#include "kernels/x32-transpose-avx2.h"
#include "dwconv.h"
#include "kernels/dwconv-blocked.inl"

namespace pysparse {

void f32_dwconv__avx2(const DwConvArgs& a) { dwconv<Avx2Math>(a); }
void f32_dwconv__avx2_blocked(const DwBlockArgs& a) { dwconv_blocked<Avx2Math, transpose8x8, 8, 4>(a); }

}  // namespace pysparse
