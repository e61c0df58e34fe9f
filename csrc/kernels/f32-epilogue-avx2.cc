// f32_epilogue__avx2: the fp32 sparse products' epilogue, act(y) (+ residual)
// over a hot row tile (AVX2 + FMA, 8 floats per vector).
// The loop and its contract: epilogue.inl; the maths: vmath.inl.
#include "kernels/vmath-avx2.h"
#include "kernels/epilogue.inl"

namespace pysparse {

PYSPARSE_DEFINE_EPILOGUE_KERNEL(Avx2Math, avx2)

}  // namespace pysparse
