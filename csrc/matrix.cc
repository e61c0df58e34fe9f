// What every format shares: aligned storage, the shape limits, and the owner
// of a format's arrays (matrix.h). The formats themselves: matrix-<format>.cc.
#include "matrix.h"

#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>

namespace pysparse {

AlignedBuffer::AlignedBuffer(size_t bytes) : bytes_(bytes) {
  const size_t rounded = ((bytes + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, rounded == 0 ? 64 : rounded);
  ptr_.reset(p);
}

void check_dims(int64_t rows, int64_t cols) {
  const auto str = [](int64_t v) { return std::to_string(v); };
  if (rows < 0 || cols < 0) throw std::invalid_argument("shape must be non-negative, got (" + str(rows) + ", " + str(cols) + ")");
  if (cols > static_cast<int64_t>(std::numeric_limits<uint32_t>::max())) {
    throw std::invalid_argument("at most 2**32 - 1 columns are supported, got " + str(cols));
  }
  if (rows > kMaxRows) throw std::invalid_argument("at most 2**26 rows are supported, got " + str(rows));
}

SparseMatrix::SparseMatrix(MatrixStorage&& s) : s_(std::move(s)) {
  s_.view.ptr = s_.ptr.empty() ? nullptr : s_.ptr.data();
  s_.view.idx = s_.idx.data();
  s_.view.values = static_cast<const float*>(s_.values.data());
  s_.view.row_of = s_.row_of.empty() ? nullptr : s_.row_of.data();
  s_.view.row_len = s_.row_len.empty() ? nullptr : s_.row_len.data();
}

int64_t SparseMatrix::nbytes() const {
  const int64_t isize = s_.view.index_width == IndexWidth::u8 ? 1 : s_.view.index_width == IndexWidth::u16 ? 2 : 4;
  const int64_t row_maps = static_cast<int64_t>((s_.row_of.size() + s_.row_len.size()) * sizeof(int32_t));
  return static_cast<int64_t>(s_.ptr.size() * sizeof(int64_t)) + s_.stored_indices * isize +
         s_.stored_values * static_cast<int64_t>(sizeof(float)) + row_maps;
}

}  // namespace pysparse
