// f32_epilogue__scalar: the fp32 sparse products' epilogue, act(y) (+ residual)
// over a hot row tile (the portable twin: baseline ISA, the fallback and the test oracle).
// The loop and its contract: epilogue.inl; the maths: vmath.inl.
#include "kernels/vmath-scalar.h"
#include "kernels/epilogue.inl"

namespace pysparse {

PYSPARSE_DEFINE_EPILOGUE_KERNEL(ScalarMath, scalar)

}  // namespace pysparse
