// f32_attention__avx2: one (batch item, head, query block) of multi-head
// attention, scores to context in the task's scratch (AVX2 + FMA, 8 floats per vector).
// The engine and its contract: attention.inl.
#include "kernels/vmath-avx2.h"
#include "transformer.h"
#include "kernels/attention.inl"

namespace pysparse {

void f32_attention__avx2(const AttentionArgs& a) { attention<Avx2Math>(a, &x32_transpose__avx2); }

}  // namespace pysparse
