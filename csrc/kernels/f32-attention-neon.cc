// f32_attention__neon: one (batch item, head, query block) of multi-head
// attention, scores to context in the task's scratch (NEON, 4 floats per vector).
// The engine and its contract: attention.inl.
#include "kernels/vmath-neon.h"
#include "transformer.h"
#include "kernels/attention.inl"

namespace pysparse {

void f32_attention__neon(const AttentionArgs& a) { attention<NeonMath>(a, &x32_transpose__neon); }

}  // namespace pysparse
