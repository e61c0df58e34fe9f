// f32_gelu_erf__avx2, f32_gelu_tanh__avx2, f32_erf__avx2: GELU in both of
// torch's forms and the erf it uses (AVX2 + FMA, 8 floats per vector).
// The maths: vmath.inl; the loop and its contract: gelu.inl.
#include "kernels/vmath-avx2.h"
#include "transformer.h"
#include "kernels/gelu.inl"

namespace pysparse {

PYSPARSE_DEFINE_GELU_KERNELS(Avx2Math, avx2)

}  // namespace pysparse
