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

}  // namespace pysparse
