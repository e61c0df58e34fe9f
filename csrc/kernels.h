// Declarations of every kernel in kernels.inc.
#pragma once

#include <cstdint>

#include "formats.h"

// Which ISA kernel files are compiled in (CMake defines the ones that are).
#ifndef PYSPARSE_HAVE_AVX2
#define PYSPARSE_HAVE_AVX2 0
#endif
#ifndef PYSPARSE_HAVE_AVX512
#define PYSPARSE_HAVE_AVX512 0
#endif
#ifndef PYSPARSE_HAVE_NEON
#define PYSPARSE_HAVE_NEON 0
#endif

namespace pysparse {

#define PYSPARSE_KERNEL(name, isa, format, block_r, batch) void name(const SpmmArgs& args);
#include "kernels.inc"
#undef PYSPARSE_KERNEL

// Runs f(Index{}) with Index the view's column-index type, uint16_t or
// uint32_t: the one place the index width turns into a template argument.
template <class F>
inline void with_index(const SparseView& w, F&& f) {
  if (w.index_width == IndexWidth::u16) {
    f(uint16_t{});
  } else {
    f(uint32_t{});
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
