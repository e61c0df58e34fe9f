// Declarations of every kernel in kernels.inc.
#pragma once

#include "formats.h"

// Which ISA kernel files are compiled in (CMake defines the ones that are).
#ifndef PYSPARSE_HAVE_AVX2
#define PYSPARSE_HAVE_AVX2 0
#endif
#ifndef PYSPARSE_HAVE_NEON
#define PYSPARSE_HAVE_NEON 0
#endif

namespace pysparse {

#define PYSPARSE_KERNEL(name, isa, format, block_r, batch) void name(const SpmmArgs& args);
#include "kernels.inc"
#undef PYSPARSE_KERNEL

// The SELL batch-1 epilogue every ISA shares: lane l of slice s (sum out[l])
// is row row_of[8s + l], or no row when that is -1. static: each ISA's file
// keeps its own copy, so the linker cannot hand one ISA's build to another.
static inline void sell_store_slice(const SpmmArgs& a, int64_t s, const float* out) {
  const int32_t* rows = a.w->row_of + s * 8;
  for (int l = 0; l < 8; ++l) {
    const int64_t row = rows[l];
    if (row >= 0) a.y[row * a.y_rs] = a.bias != nullptr ? out[l] + a.bias[row] : out[l];
  }
}

// Transposes, one per ISA (not in kernels.inc: a different signature).
void x32_transpose__scalar(const TransposeArgs& args);
#if PYSPARSE_HAVE_AVX2
void x32_transpose__avx2(const TransposeArgs& args);
#endif
#if PYSPARSE_HAVE_NEON
void x32_transpose__neon(const TransposeArgs& args);
#endif

}  // namespace pysparse
