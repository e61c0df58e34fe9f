// CSR and BSR: validation, storage and to_dense of the block layout (formats.h).
#include "matrix-bsr.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

namespace pysparse::bsr {

namespace {

bool valid_block_r(int r) { return r == 1 || r == 2 || r == 4 || r == 8 || r == 16; }

std::string str(int64_t v) { return std::to_string(v); }

// Where the blocks of a row start when built from a dense matrix: multiples of
// C, the last one moved left to K - C when C does not divide K (formats.h).
int64_t column_blocks(int64_t cols, int block_c) { return (cols + block_c - 1) / block_c; }
int64_t column_block_start(int64_t jb, int64_t cols, int block_c) {
  return std::min<int64_t>(jb * block_c, cols - block_c);
}

void to_dense(const SparseMatrix& m, float* out) {
  const SparseView& v = m.view();
  const int64_t M = v.rows, K = v.cols;
  const int R = v.block_r, C = v.block_c;
  std::fill(out, out + M * K, 0.0f);
  const float* vals = v.values;
  for (int64_t b = 0; b < v.block_rows(); ++b) {
    for (int64_t p = v.ptr[b]; p < v.ptr[b + 1]; ++p) {
      const int64_t k0 = v.index_width == IndexWidth::u16 ? v.idx16()[p] : v.idx32()[p];
      for (int c = 0; c < C; ++c)
        for (int r = 0; r < R; ++r) {
          const int64_t i = b * R + r;
          if (i < M) out[i * K + k0 + c] += vals[(p * C + c) * R + r];
        }
    }
  }
}

}  // namespace

void check_shape(int64_t rows, int64_t cols, int block_r, int block_c) {
  check_dims(rows, cols);
  if (!valid_block_r(block_r)) {
    throw std::invalid_argument("block rows R must be one of 1, 2, 4, 8, 16; got " + str(block_r));
  }
  if (block_c < 1 || block_c > 64) {
    throw std::invalid_argument("block columns C must be between 1 and 64; got " + str(block_c));
  }
  if (cols > 0 && block_c > cols) {
    throw std::invalid_argument("block columns C=" + str(block_c) + " exceed the matrix's " + str(cols) +
                                " columns; use a narrower block");
  }
}

MatrixStorage allocate(int64_t rows, int64_t cols, int block_r, int block_c, int64_t nblocks) {
  MatrixStorage s;
  s.view.rows = rows;
  s.view.cols = cols;
  s.view.block_r = block_r;
  s.view.block_c = block_c;
  s.view.nblocks = nblocks;
  s.view.format = block_r == 1 && block_c == 1 ? Format::csr : Format::bsr;
  s.view.index_width = cols <= kMaxU16Cols ? IndexWidth::u16 : IndexWidth::u32;
  const size_t isize = s.view.index_width == IndexWidth::u16 ? 2 : 4;
  s.idx = AlignedBuffer(static_cast<size_t>(nblocks + kIndexPad) * isize);
  s.values = AlignedBuffer(static_cast<size_t>(nblocks * block_r * block_c + kValuePad) * sizeof(float));
  s.stored_values = nblocks * block_r * block_c;
  s.stored_indices = nblocks;
  s.to_dense = &to_dense;
  return s;
}

SparseMatrix from_dense(const float* a, int64_t rows, int64_t cols, int64_t lda, int block_r, int block_c) {
  check_shape(rows, cols, block_r, block_c);
  const int R = block_r, C = block_c;
  const int64_t brows = (rows + R - 1) / R;
  const int64_t cblocks = cols == 0 ? 0 : column_blocks(cols, C);
  // A block is kept if any weight it owns is nonzero. The shifted last block
  // owns only the columns no earlier block covers.
  auto owned_begin = [&](int64_t jb) { return jb * C; };
  auto owned_end = [&](int64_t jb) { return std::min<int64_t>((jb + 1) * C, cols); };
  auto block_nonzero = [&](int64_t b, int64_t jb) {
    const int64_t r_end = std::min<int64_t>((b + 1) * R, rows);
    for (int64_t i = b * R; i < r_end; ++i)
      for (int64_t k = owned_begin(jb); k < owned_end(jb); ++k)
        if (a[i * lda + k] != 0.0f) return true;
    return false;
  };

  std::vector<int64_t> ptr(static_cast<size_t>(brows + 1), 0);
  for (int64_t b = 0; b < brows; ++b) {
    int64_t count = 0;
    for (int64_t jb = 0; jb < cblocks; ++jb) count += block_nonzero(b, jb);
    ptr[b + 1] = ptr[b] + count;
  }
  MatrixStorage s = allocate(rows, cols, R, C, ptr[brows]);
  s.ptr = std::move(ptr);
  float* vals = static_cast<float*>(s.values.data());
  uint16_t* i16 = static_cast<uint16_t*>(s.idx.data());
  uint32_t* i32 = static_cast<uint32_t*>(s.idx.data());
  int64_t p = 0;
  for (int64_t b = 0; b < brows; ++b) {
    for (int64_t jb = 0; jb < cblocks; ++jb) {
      if (!block_nonzero(b, jb)) continue;
      const int64_t start = column_block_start(jb, cols, C);
      if (s.view.index_width == IndexWidth::u16) {
        i16[p] = static_cast<uint16_t>(start);
      } else {
        i32[p] = static_cast<uint32_t>(start);
      }
      float* v = vals + p * R * C;
      for (int c = 0; c < C; ++c) {
        const int64_t k = start + c;
        if (k < owned_begin(jb) || k >= owned_end(jb)) continue;  // zero: owned by the block before
        for (int r = 0; r < R; ++r) {
          const int64_t i = b * R + r;
          if (i < rows) v[c * R + r] = a[i * lda + k];
        }
      }
      ++p;
    }
  }
  return SparseMatrix(std::move(s));
}

SparseMatrix from_arrays(int64_t rows, int64_t cols, int block_r, int block_c, const int64_t* ptr, int64_t ptr_len,
                         const int64_t* idx, int64_t idx_len, const float* values, int64_t values_len) {
  check_shape(rows, cols, block_r, block_c);
  const int R = block_r, C = block_c;
  const int64_t brows = (rows + R - 1) / R;
  const char* what_ptr = R == 1 && C == 1 ? "indptr" : "block row pointer (indptr)";
  if (ptr_len != brows + 1) {
    throw std::invalid_argument(std::string(what_ptr) + " must have " + str(brows + 1) + " entries (block rows + 1), got " +
                                str(ptr_len));
  }
  if (ptr[0] != 0) throw std::invalid_argument(std::string(what_ptr) + "[0] must be 0, got " + str(ptr[0]));
  for (int64_t b = 0; b < brows; ++b) {
    if (ptr[b + 1] < ptr[b]) {
      throw std::invalid_argument(std::string(what_ptr) + " must be non-decreasing; indptr[" + str(b + 1) + "] = " +
                                  str(ptr[b + 1]) + " < indptr[" + str(b) + "] = " + str(ptr[b]));
    }
  }
  const int64_t nblocks = ptr[brows];
  if (idx_len != nblocks) {
    throw std::invalid_argument("indices must have indptr[-1] = " + str(nblocks) + " entries, got " + str(idx_len));
  }
  if (values_len != nblocks * R * C) {
    throw std::invalid_argument("data must have " + str(nblocks * R * C) + " values (" + str(nblocks) + " blocks of " +
                                str(R) + "x" + str(C) + "), got " + str(values_len));
  }
  const int64_t max_start = cols - C;  // idx + C <= cols
  for (int64_t b = 0; b < brows; ++b) {
    for (int64_t p = ptr[b]; p < ptr[b + 1]; ++p) {
      const int64_t k = idx[p];
      if (k < 0 || k > max_start) {
        throw std::invalid_argument("column index " + str(k) + " at position " + str(p) + " is out of range [0, " +
                                    str(max_start + 1) + ")" + (C > 1 ? " for blocks of " + str(C) + " columns" : ""));
      }
      if (p > ptr[b] && k <= idx[p - 1]) {
        throw std::invalid_argument("column indices must be sorted and unique within each row; row " + str(b) +
                                    " has " + str(idx[p - 1]) + " then " + str(k) +
                                    " (sort them, e.g. scipy's sum_duplicates())");
      }
    }
  }

  MatrixStorage s = allocate(rows, cols, R, C, nblocks);
  s.ptr.assign(ptr, ptr + brows + 1);
  if (s.view.index_width == IndexWidth::u16) {
    uint16_t* out = static_cast<uint16_t*>(s.idx.data());
    for (int64_t p = 0; p < nblocks; ++p) out[p] = static_cast<uint16_t>(idx[p]);
  } else {
    uint32_t* out = static_cast<uint32_t*>(s.idx.data());
    for (int64_t p = 0; p < nblocks; ++p) out[p] = static_cast<uint32_t>(idx[p]);
  }
  float* vals = static_cast<float*>(s.values.data());
  if (nblocks > 0) std::memcpy(vals, values, static_cast<size_t>(nblocks * R * C) * sizeof(float));
  // The rows of an overhanging last block row do not exist: store them as zeros.
  if (brows > 0 && rows % R != 0) {
    const int live = static_cast<int>(rows % R);
    for (int64_t p = ptr[brows - 1]; p < nblocks; ++p)
      for (int c = 0; c < C; ++c)
        for (int r = live; r < R; ++r) vals[(p * C + c) * R + r] = 0.0f;
  }
  return SparseMatrix(std::move(s));
}

}  // namespace pysparse::bsr
