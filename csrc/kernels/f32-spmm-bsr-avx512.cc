// BSR (R x C blocks), AVX-512 (F/BW/DQ/VL): the shared tile engine
// (spmm-nx.inl) at 16 lanes, any batch. Batch 1 stays on the AVX2 kernels
// (dispatch falls back): there a block is R <= 16 lanes of one broadcast, so
// 16-lane vectors add nothing but the double-pumped issue on Zen 4.
//
// Contract (spmm-nx.inl): X rows contiguous along n, any ldx >= 1; Y any
// strides; nothing read or written outside n columns (the last n % 16 columns
// under an opmask). No alignment required.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels.h"
#include "kernels/simd-avx512.h"

namespace pysparse {
namespace {

#include "kernels/spmm-nx.inl"

}  // namespace

void f32_spmm_bsr_1xc_nx__avx512(const SpmmArgs& a) { nx::run<Avx512, 1>(a); }
void f32_spmm_bsr_2xc_nx__avx512(const SpmmArgs& a) { nx::run<Avx512, 2>(a); }
void f32_spmm_bsr_4xc_nx__avx512(const SpmmArgs& a) { nx::run<Avx512, 4>(a); }
void f32_spmm_bsr_8xc_nx__avx512(const SpmmArgs& a) { nx::run<Avx512, 8>(a); }
void f32_spmm_bsr_16xc_nx__avx512(const SpmmArgs& a) { nx::run<Avx512, 16>(a); }

}  // namespace pysparse
