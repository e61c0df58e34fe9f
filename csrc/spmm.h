// The driver: checks nothing (bindings/ has), splits the work across the
// pool, picks the kernel and calls it.
#pragma once

#include <cstdint>

#include "dispatch.h"
#include "epilogue.h"
#include "matrix.h"

namespace pysparse {

// Y = W X (+ bias[:, None]). X[k, j] = x[k * ldx + j] (k < K, j < n);
// Y[i, j] = y[i * y_rs + j * y_cs]. `kernel` forces one kernel (tests); null
// selects by the active ISA. nthreads <= 0 means get_num_threads().
// ep (epilogue.h): activation and residual (laid out like y), applied by each
// thread to its rows right after the kernel wrote them.
// ldx may be smaller than n, down to 1: rows of X then overlap, which the
// kernels allow since X is only read. ldx == 1 with W's indices taken as
// offsets into x is the direct convolution (bindings/testing.cc, spmm_shifted):
// Y[i, j] = sum_p w_p x[idx_p + j], x then needs K - 1 + n floats.
void spmm(const SparseMatrix& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t y_rs, int64_t y_cs,
          const float* bias, int nthreads, const KernelInfo* kernel = nullptr, const Epilogue& ep = {});

// y (batch, M) = x (batch, K) W^T (+ bias), both C-contiguous: nn.Linear.
// x_transposed: x is given as its transpose, (K, batch) C-contiguous.
// ep.residual, when set, is (batch, M) C-contiguous like y.
void linear(const SparseMatrix& w, const float* x, bool x_transposed, int64_t batch, float* y, const float* bias,
            int nthreads, const KernelInfo* kernel = nullptr, const Epilogue& ep = {});

// The direct convolution (stride 1) of x (N, C, H, W), C-contiguous, into y
// (N, M, Ho, Wo), C-contiguous, Ho = H + 2 pad_h - span_h, Wo likewise. Images
// go `chunk` at a time, side by side, into a zero-padded buffer (C, Hp,
// chunk, Wp) whose rows are chunk * Wp floats long (a last, smaller chunk
// leaves its unused slots zero); W's indices are offsets into that buffer
// (ops._conv_shifted builds them), the product runs with ldx = 1 over
// n = Ho * chunk * Wp wide columns, and each thread crops its rows of the wide
// result into y while they are in its cache. Checks nothing: the caller
// (ShiftedConv::check_weight) has made sure W.cols - 1 + n <= C * Hp * chunk * Wp + span_w.
struct ShiftedConv {
  // Checks the geometry (kernel_size and dilation in [1, 2**20], padding in
  // [0, 2**20], chunk in [1, 2**20], an output of at least 1x1, a padded chunk
  // below 1e12 floats) and throws std::invalid_argument saying which is off.
  static ShiftedConv make(int64_t images, int64_t channels, int64_t height, int64_t width, const int64_t kernel[2],
                          const int64_t padding[2], const int64_t dilation[2], int64_t chunk);
  // Throws std::invalid_argument unless w is CSR or BSR (R, 1) (`what` names
  // the caller) and, with a geometry, unless its offsets fit the padded chunk:
  // W.cols - 1 + wide_n() <= buffer(), so every read stays inside it.
  static void check_shiftable(const SparseMatrix& w, const char* what);
  void check_weight(const SparseMatrix& w) const;

  int64_t images, channels, height, width;  // x: N, C, H, W
  int64_t pad_h, pad_w;
  int64_t span_h, span_w;  // dilation * (kernel - 1)
  int64_t chunk;           // images side by side per product
  int64_t padded_h() const { return height + 2 * pad_h; }
  int64_t padded_w() const { return width + 2 * pad_w; }
  int64_t out_h() const { return padded_h() - span_h; }
  int64_t out_w() const { return padded_w() - span_w; }
  int64_t row() const { return chunk * padded_w(); }                    // floats per padded row
  int64_t wide_n() const { return out_h() * row(); }                     // columns of the wide product
  int64_t buffer() const { return channels * padded_h() * row() + span_w; }  // floats of the padded chunk
};
// ep.residual, when set, is (N, M, Ho, Wo) C-contiguous like y.
void conv2d_shifted(const SparseMatrix& w, const float* x, const ShiftedConv& g, float* y, const float* bias,
                    int nthreads, const Epilogue& ep = {});

// How many threads a call of this size uses (work below a threshold runs on
// one thread: a wake-up costs more than it saves).
int threads_for(const SparseMatrix& w, int64_t n, int nthreads);

}  // namespace pysparse
