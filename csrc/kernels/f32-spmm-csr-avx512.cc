// CSR, AVX-512 (F/BW/DQ/VL): the shared tile engine (spmm-nx.inl) at 16
// lanes, any batch. Batch 1 stays on the AVX2 kernel (dispatch falls back).
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

void f32_spmm_csr_nx__avx512(const SpmmArgs& a) { nx::run<Avx512, 1>(a); }

}  // namespace pysparse
