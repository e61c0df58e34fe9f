// f32_dwconv__avx512_blocked: 16 channels at once, one pixel of the 16 per zmm vector, 4 pixels a
// step; the tiles transposed 8 pixels x 8 channels at a time by the AVX2 register transpose (two per
// 8 pixels). The engine and its contract: dwconv-blocked.inl. No planes kernel of its own: the
// channels left over run f32_dwconv__avx2 (the same fma per output, so still bitwise the same).
#include <immintrin.h>

#include "kernels/simd-avx512.h"
#include "kernels/x32-transpose-avx2.h"
#include "dwconv.h"
#include "kernels/dwconv-blocked.inl"

namespace pysparse {
namespace {

struct Avx512Dw : Avx512 {
  // x86 semantics, as Avx2Math: b when either is NaN (dwconv_act's max(0, x) keeps a NaN x).
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V min(V a, V b) { return _mm512_min_ps(a, b); }
};

}  // namespace

void f32_dwconv__avx512_blocked(const DwBlockArgs& a) { dwconv_blocked<Avx512Dw, transpose8x8, 16, 4>(a); }

}  // namespace pysparse
