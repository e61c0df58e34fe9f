// f32_dwconv__avx2: one channel plane of a depthwise convolution (AVX2 + FMA, 8 output columns per vector).
// The engine and its contract: dwconv.inl.
#include "kernels/vmath-avx2.h"
#include "dwconv.h"
#include "kernels/dwconv.inl"

namespace pysparse {

void f32_dwconv__avx2(const DwConvArgs& a) { dwconv<Avx2Math>(a); }

}  // namespace pysparse
