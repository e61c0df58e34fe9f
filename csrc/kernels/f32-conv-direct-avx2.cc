// f32_conv_direct__avx2: a block of output channels of a direct dense convolution (AVX2 + FMA, 8 output columns per vector).
// The engine and its contract: conv-direct.inl.
#include "kernels/vmath-avx2.h"
#include "conv.h"
#include "kernels/conv-direct.inl"

namespace pysparse {

void f32_conv_direct__avx2(const ConvDirectArgs& a) { conv_direct<Avx2Math>(a); }

}  // namespace pysparse
