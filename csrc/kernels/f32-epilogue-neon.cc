// f32_epilogue__neon: the fp32 sparse products' epilogue, act(y) (+ residual)
// over a hot row tile (Advanced SIMD, 4 floats per vector).
// The loop and its contract: epilogue.inl; the maths: vmath.inl.
#include "kernels/vmath-neon.h"
#include "kernels/epilogue.inl"

namespace pysparse {

PYSPARSE_DEFINE_EPILOGUE_KERNEL(NeonMath, neon)

}  // namespace pysparse
