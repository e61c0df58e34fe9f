// f32_layernorm__neon: layer norm with the residual add fused (NEON, 4 floats per vector).
// The engine and its contract: layernorm.inl.
#include "kernels/vmath-neon.h"
#include "transformer.h"
#include "kernels/layernorm.inl"

namespace pysparse {

void f32_layernorm__neon(const LayerNormArgs& a) { layernorm<NeonMath>(a); }

}  // namespace pysparse
