// f32_dwconv__neon: one channel plane of a depthwise convolution (NEON, 4 output columns per vector).
// The engine and its contract: dwconv.inl.
#include "kernels/vmath-neon.h"
#include "dwconv.h"
#include "kernels/dwconv.inl"

namespace pysparse {

void f32_dwconv__neon(const DwConvArgs& a) { dwconv<NeonMath>(a); }

}  // namespace pysparse
