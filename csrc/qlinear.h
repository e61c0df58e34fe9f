// The int8 driver: the activation prologue, the split across threads, the
// kernel, the transpose back. Checks nothing (bindings/qmatrix.cc has).
#pragma once

#include <cstdint>

#include "epilogue.h"
#include "qdispatch.h"
#include "qmatrix.h"

namespace pysparse {

// y (batch, M) = act(dequant(x (batch, K)) dequant(W)^T + bias), x[j * ldx + k],
// y C-contiguous; act = ReLU if relu. The contract is qformats.h's (dynamic
// per-row activation scales, exact int32 sums, one rounding sequence on every
// ISA). `kernel` forces one kernel (tests); nthreads <= 0: get_num_threads().
// ep (epilogue.h): an activation and/or a residual (laid out like y) applied
// to each thread's outputs right after its kernel wrote them (per token tile
// on the nt path), while they are in cache: int8 Linear + GELU + residual add
// in one pass. Wide batches run the ISA's nt kernels when it has them (no
// transpose), else its nx kernels and a transpose of Y^T.
void qlinear(const QMatrix& w, const float* x, int64_t ldx, int64_t batch, float* y, const float* bias, bool relu,
             int nthreads, const QKernelInfo* kernel = nullptr, const Epilogue& ep = Epilogue{});

// The prologue alone (tests): q (batch rows interleaved as the kernels read
// them, `stride` columns, stride a multiple of 8 or 1 for batch 1) and scales.
void qs8_quantize(const float* x, int64_t ldx, int64_t batch, int64_t cols, int64_t stride, int8_t* xq, float* scale,
                  QIsa isa, int32_t flip = 0);

}  // namespace pysparse
