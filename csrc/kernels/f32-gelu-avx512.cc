// f32_gelu_erf__avx512, f32_gelu_tanh__avx512, f32_erf__avx512: GELU in both of
// torch's forms and the erf it uses (AVX-512 F/BW/DQ/VL, 16 floats per vector).
// The maths: vmath.inl; the loop and its contract: gelu.inl.
#include "kernels/vmath-avx512.h"
#include "transformer.h"
#include "kernels/gelu.inl"

namespace pysparse {

PYSPARSE_DEFINE_GELU_KERNELS(Avx512Math, avx512)

}  // namespace pysparse
