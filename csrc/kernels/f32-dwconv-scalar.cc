// f32_dwconv__scalar: one channel plane of a depthwise convolution (the portable twin: baseline ISA, the fallback and the test oracle).
// The engine and its contract: dwconv.inl.
#include "kernels/vmath-scalar.h"
#include "dwconv.h"
#include "kernels/dwconv.inl"

namespace pysparse {

void f32_dwconv__scalar(const DwConvArgs& a) { dwconv<ScalarMath>(a); }

}  // namespace pysparse
