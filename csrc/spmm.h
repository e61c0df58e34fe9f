// The driver: checks nothing (bindings.cc has), splits the work across the
// pool, picks the kernel and calls it.
#pragma once

#include <cstdint>

#include "dispatch.h"
#include "matrix.h"

namespace pysparse {

// Y = W X (+ bias[:, None]). X[k, j] = x[k * ldx + j] (k < K, j < n);
// Y[i, j] = y[i * y_rs + j * y_cs]. `kernel` forces one kernel (tests); null
// selects by the active ISA. nthreads <= 0 means get_num_threads().
// ldx may be smaller than n, down to 1: rows of X then overlap, which the
// kernels allow since X is only read. ldx == 1 with W's indices taken as
// offsets into x is the direct convolution (bindings.cc, spmm_shifted):
// Y[i, j] = sum_p w_p x[idx_p + j], x then needs K - 1 + n floats.
void spmm(const SparseMatrix& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t y_rs, int64_t y_cs,
          const float* bias, int nthreads, const KernelInfo* kernel = nullptr);

// y (batch, M) = x (batch, K) W^T (+ bias), both C-contiguous: nn.Linear.
// x_transposed: x is given as its transpose, (K, batch) C-contiguous.
void linear(const SparseMatrix& w, const float* x, bool x_transposed, int64_t batch, float* y, const float* bias,
            int nthreads, const KernelInfo* kernel = nullptr);

// How many threads a call of this size uses (work below a threshold runs on
// one thread: a wake-up costs more than it saves).
int threads_for(const SparseMatrix& w, int64_t n, int nthreads);

}  // namespace pysparse
