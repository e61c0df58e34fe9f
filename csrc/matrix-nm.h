// N:M matrices (formats.h): every group of M weights along a row holds at most
// N nonzeros; rows interleaved 8 to a block row.
#pragma once

#include <cstdint>

#include "matrix.h"

namespace pysparse::nm {

// Throws std::invalid_argument for a bad shape or N:M.
void check(int64_t rows, int64_t cols, int n, int m);

// Throws std::invalid_argument naming the first group with more than n nonzeros.
SparseMatrix from_dense(const float* a, int64_t rows, int64_t cols, int64_t lda, int n, int m);

// values and offsets as laid out in formats.h: block_rows * G * n * 8 each.
SparseMatrix from_arrays(int64_t rows, int64_t cols, int n, int m, const float* values, int64_t values_len,
                         const int64_t* offsets, int64_t offsets_len);

}  // namespace pysparse::nm
