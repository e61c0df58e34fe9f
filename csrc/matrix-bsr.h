// CSR and BSR matrices (formats.h: CSR is the 1x1 case of the block layout, so
// one builder serves both and the view's format tag says which one it is).
#pragma once

#include <cstdint>

#include "matrix.h"

namespace pysparse::bsr {

// Throws std::invalid_argument for a bad shape or block.
void check_shape(int64_t rows, int64_t cols, int block_r, int block_c);

// Drops exact zeros (blocks whose weights are all zero). a[i * lda + k].
// Throws std::invalid_argument for a bad shape or block.
SparseMatrix from_dense(const float* a, int64_t rows, int64_t cols, int64_t lda, int block_r, int block_c);

// Validates and copies. ptr has block_rows + 1 entries, idx nblocks, values
// nblocks * R * C laid out as (block, column, row) -- see formats.h. Throws
// std::invalid_argument naming the first problem found.
SparseMatrix from_arrays(int64_t rows, int64_t cols, int block_r, int block_c, const int64_t* ptr, int64_t ptr_len,
                         const int64_t* idx, int64_t idx_len, const float* values, int64_t values_len);

// Zeroed block-layout storage of nblocks blocks, ptr left for the caller to
// fill (block_rows + 1 entries). For builders that rearrange another format
// into CSR (SELL's to_csr).
MatrixStorage allocate(int64_t rows, int64_t cols, int block_r, int block_c, int64_t nblocks);

}  // namespace pysparse::bsr
