// f32_attention__scalar: one (batch item, head, query block) of multi-head
// attention, scores to context in the task's scratch (the portable twin: baseline ISA, the fallback and the test oracle).
// The engine and its contract: attention.inl.
#include "kernels/vmath-scalar.h"
#include "transformer.h"
#include "kernels/attention.inl"

namespace pysparse {

void f32_attention__scalar(const AttentionArgs& a) { attention<ScalarMath>(a, &x32_transpose__scalar); }

}  // namespace pysparse
