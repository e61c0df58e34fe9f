// f32_gelu_erf__neon, f32_gelu_tanh__neon, f32_erf__neon: GELU in both of
// torch's forms and the erf it uses (NEON, 4 floats per vector).
// The maths: vmath.inl; the loop and its contract: gelu.inl.
#include "kernels/vmath-neon.h"
#include "transformer.h"
#include "kernels/gelu.inl"

namespace pysparse {

PYSPARSE_DEFINE_GELU_KERNELS(NeonMath, neon)

}  // namespace pysparse
