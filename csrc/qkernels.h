// Declarations of every kernel in kernels-qs8.inc and of the activation
// prologues (one per ISA family: AVX-VNNI uses AVX2's, AVX-512 VNNI its own).
#pragma once

#include "kernels.h"  // PYSPARSE_HAVE_AVX2 / PYSPARSE_HAVE_NEON defaults
#include "qformats.h"

namespace pysparse {

#define PYSPARSE_QKERNEL(name, isa, format, block_r, batch) void name(const QArgs& args);
#include "kernels-qs8.inc"
#undef PYSPARSE_QKERNEL

void qs8_quantize__scalar(const QuantizeArgs& args);
#if PYSPARSE_HAVE_AVX2
void qs8_quantize__avx2(const QuantizeArgs& args);
void qs8_quantize__avx512(const QuantizeArgs& args);  // the AVX-512 VNNI level's
#endif
#if PYSPARSE_HAVE_NEON
void qs8_quantize__neon(const QuantizeArgs& args);
#endif

}  // namespace pysparse
