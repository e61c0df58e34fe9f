// f32_attention__avx512: one (batch item, head, query block) of multi-head
// attention, scores to context in the task's scratch (AVX-512 F/BW/DQ/VL, 16 floats per vector).
// The engine and its contract: attention.inl. K^T goes through the AVX2 8x8
// register transpose: x32_transpose has no AVX-512 twin (select_transpose falls
// back the same way), and the copy is dim * T against 4 * rows * T * dim FLOPs.
#include "kernels/vmath-avx512.h"
#include "transformer.h"
#include "kernels/attention.inl"

namespace pysparse {

void f32_attention__avx512(const AttentionArgs& a) { attention<Avx512Math>(a, &x32_transpose__avx2); }

}  // namespace pysparse
