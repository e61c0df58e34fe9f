// f32_layernorm__scalar: layer norm with the residual add fused (the portable twin: baseline ISA, the fallback and the test oracle).
// The engine and its contract: layernorm.inl.
#include "kernels/vmath-scalar.h"
#include "transformer.h"
#include "kernels/layernorm.inl"

namespace pysparse {

void f32_layernorm__scalar(const LayerNormArgs& a) { layernorm<ScalarMath>(a); }

}  // namespace pysparse
