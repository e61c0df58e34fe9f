// f32_epilogue__avx512: the fp32 sparse products' epilogue, act(y) (+ residual)
// over a hot row tile (AVX-512 F/BW/DQ/VL, 16 floats per vector).
// The loop and its contract: epilogue.inl; the maths: vmath.inl.
#include "kernels/vmath-avx512.h"
#include "kernels/epilogue.inl"

namespace pysparse {

PYSPARSE_DEFINE_EPILOGUE_KERNEL(Avx512Math, avx512)

}  // namespace pysparse
