// SparseMatrix: owned, validated, padded storage behind a SparseView.
//
// The C++ side trusts nothing it has not checked, so every matrix is built from
// either a dense array or caller-supplied arrays that are validated and copied
// in one pass. After construction the storage is immutable; kernels get a
// SparseView whose invariants (formats.h) hold, padding included.
//
// This file and matrix.cc are what every format shares: the aligned buffer, the
// shape limits, and the class that owns a format's arrays. Each format builds
// its matrices in its own file (matrix-<format>.h / .cc: validation, layout,
// to_dense), so a new format adds its own files and touches none of these.
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

// The shape checks every format shares (rows and columns in range). Throws
// std::invalid_argument.
void check_dims(int64_t rows, int64_t cols);

class SparseMatrix;

// What a format's builder hands to SparseMatrix: the view's scalar fields, the
// arrays it owns, and the format's own answers to "how many" and "what dense".
struct MatrixStorage {
  SparseView view{};             // the pointers are set from the arrays below
  std::vector<int64_t> ptr;      // empty: view.ptr stays null (N:M)
  AlignedBuffer idx;             // view.index_width entries (+ kIndexPad)
  AlignedBuffer values;          // floats (+ kValuePad)
  std::vector<int32_t> row_of;   // SELL only
  std::vector<int32_t> row_len;  // SELL only
  int64_t stored_values = 0;     // floats in values, padding excluded
  int64_t stored_indices = 0;    // entries in idx, padding excluded
  void (*to_dense)(const SparseMatrix& m, float* out) = nullptr;  // out: rows * cols, overwritten
};

class SparseMatrix {
 public:
  // Takes the arrays and points the view at them.
  explicit SparseMatrix(MatrixStorage&& s);

  const SparseView& view() const { return s_.view; }
  Format format() const { return s_.view.format; }
  bool is_nm() const { return format() == Format::nm; }
  bool is_sell() const { return format() == Format::sell; }
  bool is_csr() const { return format() == Format::csr; }
  int64_t rows() const { return s_.view.rows; }
  int64_t cols() const { return s_.view.cols; }
  int block_r() const { return s_.view.block_r; }
  int block_c() const { return s_.view.block_c; }
  int64_t nblocks() const { return s_.view.nblocks; }
  int64_t block_rows() const { return s_.view.block_rows(); }
  int64_t stored_values() const { return s_.stored_values; }
  int64_t stored_indices() const { return s_.stored_indices; }
  // Bytes of ptr + idx + values (+ SELL's row maps) as stored, padding excluded.
  int64_t nbytes() const;

  void to_dense(float* out) const { s_.to_dense(*this, out); }  // out: rows * cols, overwritten

 private:
  MatrixStorage s_;
};

}  // namespace pysparse
