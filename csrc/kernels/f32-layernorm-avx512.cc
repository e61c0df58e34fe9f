// f32_layernorm__avx512: layer norm with the residual add fused (AVX-512 F/BW/DQ/VL, 16 floats per vector).
// The engine and its contract: layernorm.inl.
#include "kernels/vmath-avx512.h"
#include "transformer.h"
#include "kernels/layernorm.inl"

namespace pysparse {

void f32_layernorm__avx512(const LayerNormArgs& a) { layernorm<Avx512Math>(a); }

}  // namespace pysparse
