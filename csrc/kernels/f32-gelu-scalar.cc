// f32_gelu_erf__scalar, f32_gelu_tanh__scalar, f32_erf__scalar: GELU in both of
// torch's forms and the erf it uses (the portable twin: baseline ISA, the fallback and the test oracle).
// The maths: vmath.inl; the loop and its contract: gelu.inl.
#include "kernels/vmath-scalar.h"
#include "transformer.h"
#include "kernels/gelu.inl"

namespace pysparse {

PYSPARSE_DEFINE_GELU_KERNELS(ScalarMath, scalar)

}  // namespace pysparse
