// SELL-8-sigma matrices (formats.h): an exact rearrangement of a CSR matrix
// for the batch-1 kernel, and back.
#pragma once

#include "matrix.h"

namespace pysparse::sell {

// Throws std::invalid_argument unless csr is a CSR matrix (1x1 blocks).
SparseMatrix from_csr(const SparseMatrix& csr);
// Throws std::invalid_argument unless m is a SELL matrix.
SparseMatrix to_csr(const SparseMatrix& m);

}  // namespace pysparse::sell
