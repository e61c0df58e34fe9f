// SparseMatrix: owned, validated, padded storage behind a SparseView.
//
// The C++ side trusts nothing it has not checked, so every matrix is built here
// from either a dense array or caller-supplied arrays that are validated and
// copied in one pass. After construction the storage is immutable; kernels get a
// SparseView whose invariants (formats.h) hold, padding included.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "formats.h"

namespace pysparse {

// No layer has 2**26 (67 million) outputs; the row pointers and SELL's row maps
// of a matrix that tall (which may have no columns, so nothing else bounds
// them) already take 1 GB. SELL needs rows < 2**31 in any case (int32 rows).
inline constexpr int64_t kMaxRows = int64_t{1} << 26;
inline constexpr int64_t kMaxStoredValues = int64_t{1} << 40;

// 64-byte aligned, zero-initialised bytes.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t bytes);
  void* data() { return ptr_.get(); }
  const void* data() const { return ptr_.get(); }
  size_t size() const { return bytes_; }

 private:
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  std::unique_ptr<void, Free> ptr_;
  size_t bytes_ = 0;
};

class SparseMatrix {
 public:
  // Drops exact zeros (blocks whose weights are all zero). a[i * lda + k].
  // Throws std::invalid_argument for a bad shape or block.
  static SparseMatrix from_dense(const float* a, int64_t rows, int64_t cols, int64_t lda, int block_r,
                                 int block_c);

  // Validates and copies. ptr has block_rows + 1 entries, idx nblocks, values
  // nblocks * R * C laid out as (block, column, row) -- see formats.h. Throws
  // std::invalid_argument naming the first problem found.
  static SparseMatrix from_arrays(int64_t rows, int64_t cols, int block_r, int block_c, const int64_t* ptr,
                                  int64_t ptr_len, const int64_t* idx, int64_t idx_len, const float* values,
                                  int64_t values_len);

  // N:M along rows (formats.h). from_dense_nm throws std::invalid_argument
  // naming the first group with more than n nonzeros.
  static SparseMatrix from_dense_nm(const float* a, int64_t rows, int64_t cols, int64_t lda, int n, int m);
  // values and offsets as laid out in formats.h: block_rows * G * n * 8 each.
  static SparseMatrix from_arrays_nm(int64_t rows, int64_t cols, int n, int m, const float* values,
                                     int64_t values_len, const int64_t* offsets, int64_t offsets_len);
  static void check_nm(int64_t rows, int64_t cols, int n, int m);

  // SELL-8-sigma (formats.h) from a CSR matrix (R = C = 1), and back. Both are
  // exact rearrangements of validated storage. Throw std::invalid_argument for
  // a matrix of the wrong layout.
  static SparseMatrix sell_from_csr(const SparseMatrix& csr);
  SparseMatrix csr_from_sell() const;

  const SparseView& view() const { return view_; }
  Format format() const { return view_.format; }
  bool is_nm() const { return view_.format == Format::nm; }
  bool is_sell() const { return view_.format == Format::sell; }
  bool is_csr() const { return view_.format == Format::csr; }
  int64_t rows() const { return view_.rows; }
  int64_t cols() const { return view_.cols; }
  int block_r() const { return view_.block_r; }
  int block_c() const { return view_.block_c; }
  int64_t nblocks() const { return view_.nblocks; }
  int64_t block_rows() const { return view_.block_rows(); }
  int64_t stored_values() const {
    return is_nm() || is_sell() ? view_.nblocks * 8 : view_.nblocks * view_.block_r * view_.block_c;
  }
  // Bytes of ptr + idx + values as stored (padding excluded).
  int64_t nbytes() const;

  void to_dense(float* out) const;  // out: rows * cols, overwritten

  static void check_shape(int64_t rows, int64_t cols, int block_r, int block_c);

 private:
  SparseMatrix() = default;
  void allocate(int64_t rows, int64_t cols, int block_r, int block_c, int64_t nblocks);
  void allocate_nm(int64_t rows, int64_t cols, int n, int m);

  SparseView view_{};
  std::vector<int64_t> ptr_;
  AlignedBuffer idx_;
  AlignedBuffer values_;
  std::vector<int32_t> row_of_;   // SELL only
  std::vector<int32_t> row_len_;  // SELL only
};

}  // namespace pysparse
