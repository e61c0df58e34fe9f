// SELL-8-sigma (formats.h), AVX-512 (F/BW/DQ/VL): any batch through the shared
// tile engine (spmm-nx.inl) at 16 lanes, each lane of a slice a CSR row at
// stride 8. Batch 1 stays on the AVX2 kernel (dispatch falls back).
//
// Contract (spmm-nx.inl): X rows contiguous along n, any ldx >= 1; Y any
// strides; nothing read or written outside n columns. No alignment required.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels.h"
#include "kernels/simd-avx512.h"

namespace pysparse {
namespace {

#include "kernels/spmm-nx.inl"

}  // namespace

void f32_spmm_sell_nx__avx512(const SpmmArgs& a) { nx::sell<Avx512>(a); }

}  // namespace pysparse
