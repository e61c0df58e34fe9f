// f32_conv_direct__neon: a block of output channels of a direct dense convolution (NEON, 4 output columns per vector).
// The engine and its contract: conv-direct.inl.
#include "kernels/vmath-neon.h"
#include "conv.h"
#include "kernels/conv-direct.inl"

namespace pysparse {

void f32_conv_direct__neon(const ConvDirectArgs& a) { conv_direct<NeonMath>(a); }

}  // namespace pysparse
