// QMatrix: owned, validated, padded storage behind a QView (qformats.h).
//
// Built only here: from int8 weights with per-row scales (blocks of zeros
// dropped for qbsr), or from caller-supplied block arrays validated and copied
// in one pass. Immutable afterwards; kernels get a QView whose invariants hold.
#pragma once

#include <cstdint>
#include <vector>

#include "matrix.h"
#include "qformats.h"

namespace pysparse {

class QMatrix {
 public:
  // q[i * ldq + k] (int8), scales[i] (rows entries, finite, >= 0). qbsr drops
  // the (R x 4) blocks whose weights are all zero; qdense keeps every block.
  // Throws std::invalid_argument for a bad shape, block or scale.
  static QMatrix from_int8(const int8_t* q, int64_t rows, int64_t cols, int64_t ldq, const float* scales,
                           int64_t scales_len, int block_r, QFormat format);

  // qbsr from arrays: ptr (block_rows + 1), starts (nblocks first columns, each a
  // multiple of 4 below cols, increasing within a block row), values
  // (nblocks * R * 4, block-major then row then column), scales (rows).
  // Weights of inputs >= cols must be 0. Throws std::invalid_argument naming
  // the first problem.
  static QMatrix from_arrays(int64_t rows, int64_t cols, int block_r, const int64_t* ptr, int64_t ptr_len,
                             const int64_t* starts, int64_t starts_len, const int8_t* values, int64_t values_len,
                             const float* scales, int64_t scales_len);

  static void check_shape(int64_t rows, int64_t cols, int block_r, QFormat format);

  const QView& view() const { return view_; }
  QFormat format() const { return view_.format; }
  int64_t rows() const { return view_.rows; }
  int64_t cols() const { return view_.cols; }
  int block_r() const { return view_.block_r; }
  int64_t nblocks() const { return view_.nblocks; }
  int64_t block_rows() const { return view_.block_rows(); }
  int64_t stored_values() const { return view_.nblocks * view_.block_r * 4; }
  // Bytes of ptr + idx + values + scales as stored (padding and wsum excluded:
  // wsum is derived at load, never stored in a file).
  int64_t nbytes() const;

  void to_int8(int8_t* out) const;  // rows * cols int8, overwritten

 private:
  QMatrix() = default;
  void allocate(int64_t rows, int64_t cols, int block_r, QFormat format, int64_t nblocks);
  void finish(const float* scales);  // copies scales, computes wsum, sets the view's pointers

  QView view_{};
  std::vector<int64_t> ptr_;
  AlignedBuffer idx_;
  AlignedBuffer values_;
  AlignedBuffer scales_;
  AlignedBuffer wsum_;
};

}  // namespace pysparse
