// f32_layernorm__avx2: layer norm with the residual add fused (AVX2 + FMA, 8 floats per vector).
// The engine and its contract: layernorm.inl.
#include "kernels/vmath-avx2.h"
#include "transformer.h"
#include "kernels/layernorm.inl"

namespace pysparse {

void f32_layernorm__avx2(const LayerNormArgs& a) { layernorm<Avx2Math>(a); }

}  // namespace pysparse
