// f32_conv_direct__scalar: a block of output channels of a direct dense convolution (the portable twin: baseline ISA, the fallback and the test oracle).
// The engine and its contract: conv-direct.inl.
#include "kernels/vmath-scalar.h"
#include "conv.h"
#include "kernels/conv-direct.inl"

namespace pysparse {

void f32_conv_direct__scalar(const ConvDirectArgs& a) { conv_direct<ScalarMath>(a); }

}  // namespace pysparse
