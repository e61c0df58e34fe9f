#include "matrix.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>

namespace pysparse {

namespace {

bool valid_block_r(int r) { return r == 1 || r == 2 || r == 4 || r == 8 || r == 16; }

std::string str(int64_t v) { return std::to_string(v); }

// Where the blocks of a row start when built from a dense matrix: multiples of
// C, the last one moved left to K - C when C does not divide K (formats.h).
int64_t column_blocks(int64_t cols, int block_c) { return (cols + block_c - 1) / block_c; }
int64_t column_block_start(int64_t jb, int64_t cols, int block_c) {
  return std::min<int64_t>(jb * block_c, cols - block_c);
}

}  // namespace

AlignedBuffer::AlignedBuffer(size_t bytes) : bytes_(bytes) {
  const size_t rounded = ((bytes + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, rounded == 0 ? 64 : rounded);
  ptr_.reset(p);
}

void SparseMatrix::check_shape(int64_t rows, int64_t cols, int block_r, int block_c) {
  if (rows < 0 || cols < 0) throw std::invalid_argument("shape must be non-negative, got (" + str(rows) + ", " + str(cols) + ")");
  if (cols > static_cast<int64_t>(std::numeric_limits<uint32_t>::max())) {
    throw std::invalid_argument("at most 2**32 - 1 columns are supported, got " + str(cols));
  }
  if (rows > kMaxRows) throw std::invalid_argument("at most 2**26 rows are supported, got " + str(rows));
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

void SparseMatrix::allocate(int64_t rows, int64_t cols, int block_r, int block_c, int64_t nblocks) {
  view_.rows = rows;
  view_.cols = cols;
  view_.block_r = block_r;
  view_.block_c = block_c;
  view_.nblocks = nblocks;
  view_.format = block_r == 1 && block_c == 1 ? Format::csr : Format::bsr;
  view_.index_width = cols <= kMaxU16Cols ? IndexWidth::u16 : IndexWidth::u32;
  const size_t isize = view_.index_width == IndexWidth::u16 ? 2 : 4;
  idx_ = AlignedBuffer(static_cast<size_t>(nblocks + kIndexPad) * isize);
  values_ = AlignedBuffer(static_cast<size_t>(nblocks * block_r * block_c + kValuePad) * sizeof(float));
  view_.idx = idx_.data();
  view_.values = static_cast<const float*>(values_.data());
}

int64_t SparseMatrix::nbytes() const {
  if (is_nm()) return stored_values() * static_cast<int64_t>(sizeof(float) + 1);
  const int64_t isize = view_.index_width == IndexWidth::u16 ? 2 : 4;
  const int64_t indices = is_sell() ? stored_values() : view_.nblocks;
  const int64_t row_maps = static_cast<int64_t>((row_of_.size() + row_len_.size()) * sizeof(int32_t));
  return static_cast<int64_t>(ptr_.size() * sizeof(int64_t)) + indices * isize +
         stored_values() * static_cast<int64_t>(sizeof(float)) + row_maps;
}

SparseMatrix SparseMatrix::from_dense(const float* a, int64_t rows, int64_t cols, int64_t lda, int block_r,
                                      int block_c) {
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

  SparseMatrix m;
  m.ptr_.assign(static_cast<size_t>(brows + 1), 0);
  for (int64_t b = 0; b < brows; ++b) {
    int64_t count = 0;
    for (int64_t jb = 0; jb < cblocks; ++jb) count += block_nonzero(b, jb);
    m.ptr_[b + 1] = m.ptr_[b] + count;
  }
  m.allocate(rows, cols, R, C, m.ptr_[brows]);
  m.view_.ptr = m.ptr_.data();
  float* vals = static_cast<float*>(m.values_.data());
  uint16_t* i16 = static_cast<uint16_t*>(m.idx_.data());
  uint32_t* i32 = static_cast<uint32_t*>(m.idx_.data());
  int64_t p = 0;
  for (int64_t b = 0; b < brows; ++b) {
    for (int64_t jb = 0; jb < cblocks; ++jb) {
      if (!block_nonzero(b, jb)) continue;
      const int64_t start = column_block_start(jb, cols, C);
      if (m.view_.index_width == IndexWidth::u16) {
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
  return m;
}

SparseMatrix SparseMatrix::from_arrays(int64_t rows, int64_t cols, int block_r, int block_c, const int64_t* ptr,
                                       int64_t ptr_len, const int64_t* idx, int64_t idx_len, const float* values,
                                       int64_t values_len) {
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

  SparseMatrix m;
  m.ptr_.assign(ptr, ptr + brows + 1);
  m.allocate(rows, cols, R, C, nblocks);
  m.view_.ptr = m.ptr_.data();
  if (m.view_.index_width == IndexWidth::u16) {
    uint16_t* out = static_cast<uint16_t*>(m.idx_.data());
    for (int64_t p = 0; p < nblocks; ++p) out[p] = static_cast<uint16_t>(idx[p]);
  } else {
    uint32_t* out = static_cast<uint32_t*>(m.idx_.data());
    for (int64_t p = 0; p < nblocks; ++p) out[p] = static_cast<uint32_t>(idx[p]);
  }
  float* vals = static_cast<float*>(m.values_.data());
  if (nblocks > 0) std::memcpy(vals, values, static_cast<size_t>(nblocks * R * C) * sizeof(float));
  // The rows of an overhanging last block row do not exist: store them as zeros.
  if (brows > 0 && rows % R != 0) {
    const int live = static_cast<int>(rows % R);
    for (int64_t p = ptr[brows - 1]; p < nblocks; ++p)
      for (int c = 0; c < C; ++c)
        for (int r = live; r < R; ++r) vals[(p * C + c) * R + r] = 0.0f;
  }
  return m;
}

void SparseMatrix::check_nm(int64_t rows, int64_t cols, int n, int m) {
  check_shape(rows, cols, 8, 1);
  if (m != 2 && m != 4 && m != 8) throw std::invalid_argument("N:M needs M in {2, 4, 8}; got M=" + str(m));
  if (n < 1 || n > m) {
    throw std::invalid_argument("N:M needs 1 <= N <= M; got " + str(n) + ":" + str(m));
  }
}

// Slots: nblocks counts (block row, group, slot) triples; each holds 8 lanes.
void SparseMatrix::allocate_nm(int64_t rows, int64_t cols, int n, int m) {
  view_.rows = rows;
  view_.cols = cols;
  view_.block_r = 8;
  view_.block_c = m;
  view_.nm_n = static_cast<uint8_t>(n);
  view_.format = Format::nm;
  view_.index_width = IndexWidth::u8;
  view_.ptr = nullptr;
  // block_rows * groups * n * 8 lanes can pass 2**63 for shapes check_shape
  // accepts (2**31 rows x 2**32 columns): count in double first.
  const double slots = static_cast<double>(view_.block_rows()) * static_cast<double>(view_.nm_groups()) * n * 8;
  if (slots > static_cast<double>(kMaxStoredValues)) {
    throw std::invalid_argument("N:M storage for a " + str(rows) + "x" + str(cols) + " matrix would hold " +
                                std::to_string(slots) + " values; at most 2**40 are supported");
  }
  view_.nblocks = view_.block_rows() * view_.nm_groups() * n;
  idx_ = AlignedBuffer(static_cast<size_t>(view_.nblocks * 8 + kIndexPad));
  values_ = AlignedBuffer(static_cast<size_t>(view_.nblocks * 8 + kValuePad) * sizeof(float));
  view_.idx = idx_.data();
  view_.values = static_cast<const float*>(values_.data());
}

SparseMatrix SparseMatrix::from_dense_nm(const float* a, int64_t rows, int64_t cols, int64_t lda, int n, int m) {
  check_nm(rows, cols, n, m);
  SparseMatrix mat;
  mat.allocate_nm(rows, cols, n, m);
  const int64_t G = mat.view_.nm_groups();
  if (G == 0) return mat;  // no columns: nothing to scan, however many rows
  float* vals = static_cast<float*>(mat.values_.data());
  uint8_t* offs = static_cast<uint8_t*>(mat.idx_.data());
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t b = i / 8, lane = i % 8;
    for (int64_t g = 0; g < G; ++g) {
      int64_t s = 0;
      for (int64_t k = g * m; k < std::min<int64_t>(cols, (g + 1) * m); ++k) {
        const float v = a[i * lda + k];
        if (v == 0.0f) continue;
        if (s == n) {
          throw std::invalid_argument("not " + str(n) + ":" + str(m) + " sparse: row " + str(i) + ", columns " +
                                      str(g * m) + ".." + str(std::min<int64_t>(cols, (g + 1) * m) - 1) +
                                      " hold more than " + str(n) + " nonzeros; prune with pattern '" + str(n) + ":" +
                                      str(m) + "' first");
        }
        const int64_t q = ((b * G + g) * n + s) * 8 + lane;
        vals[q] = v;
        offs[q] = static_cast<uint8_t>(k - g * m);
        ++s;
      }
    }
  }
  return mat;
}

SparseMatrix SparseMatrix::from_arrays_nm(int64_t rows, int64_t cols, int n, int m, const float* values,
                                          int64_t values_len, const int64_t* offsets, int64_t offsets_len) {
  check_nm(rows, cols, n, m);
  // The lengths first: a 37-entry input for a huge shape must not allocate
  // (and zero) the shape's storage before it is refused.
  const double want = static_cast<double>((rows + 7) / 8) * static_cast<double>((cols + m - 1) / m) * n * 8;
  if (want != static_cast<double>(values_len) || want != static_cast<double>(offsets_len)) {
    throw std::invalid_argument("N:M arrays must hold " + std::to_string(static_cast<long long>(want)) +
                                " entries (block rows x groups x N x 8), got " + str(values_len) + " values and " +
                                str(offsets_len) + " offsets");
  }
  SparseMatrix mat;
  mat.allocate_nm(rows, cols, n, m);
  const int64_t total = mat.view_.nblocks * 8;
  if (values_len != total || offsets_len != total) {
    throw std::invalid_argument("N:M arrays must hold " + str(total) + " entries (block rows x groups x N x 8), got " +
                                str(values_len) + " values and " + str(offsets_len) + " offsets");
  }
  const int64_t G = mat.view_.nm_groups();
  float* vals = static_cast<float*>(mat.values_.data());
  uint8_t* offs = static_cast<uint8_t*>(mat.idx_.data());
  for (int64_t q = 0; q < total; ++q) {
    const int64_t g = (q / 8 / n) % G;
    const int64_t width = std::min<int64_t>(m, cols - g * m);
    if (offsets[q] < 0 || offsets[q] >= width) {
      throw std::invalid_argument("N:M offset " + str(offsets[q]) + " at position " + str(q) + " is out of range [0, " +
                                  str(width) + ")");
    }
    const int64_t lane = q % 8, b = q / 8 / n / G;
    const bool row_exists = b * 8 + lane < rows;
    vals[q] = row_exists ? values[q] : 0.0f;
    offs[q] = row_exists ? static_cast<uint8_t>(offsets[q]) : 0;
  }
  return mat;
}

SparseMatrix SparseMatrix::sell_from_csr(const SparseMatrix& csr) {
  if (!csr.is_csr()) throw std::invalid_argument("SELL is built from a CSR matrix (1x1 blocks)");
  const SparseView& c = csr.view();
  const int64_t M = c.rows, S = (M + 7) / 8;
  auto len = [&](int64_t i) { return c.ptr[i + 1] - c.ptr[i]; };
  if (c.nblocks > std::numeric_limits<int32_t>::max()) {
    throw std::invalid_argument("SELL supports up to 2**31 - 1 nonzeros per matrix; use CSR");
  }
  // Rows by length, longest first, inside each window (stable: ties keep order).
  std::vector<int32_t> order(static_cast<size_t>(M));
  for (int64_t i = 0; i < M; ++i) order[i] = static_cast<int32_t>(i);
  for (int64_t w0 = 0; w0 < M; w0 += kSellWindow) {
    std::stable_sort(order.begin() + w0, order.begin() + std::min(M, w0 + kSellWindow),
                     [&](int32_t a, int32_t b) { return len(a) > len(b); });
  }
  SparseMatrix m;
  m.row_of_.assign(static_cast<size_t>(S * 8), -1);
  m.row_len_.assign(static_cast<size_t>(S * 8), 0);
  m.ptr_.assign(static_cast<size_t>(S + 1), 0);
  for (int64_t s = 0; s < S; ++s) {
    int64_t slots = 0;
    for (int64_t r = s * 8; r < std::min(M, s * 8 + 8); ++r) {
      m.row_of_[r] = order[r];
      m.row_len_[r] = static_cast<int32_t>(len(order[r]));
      slots = std::max<int64_t>(slots, m.row_len_[r]);
    }
    m.ptr_[s + 1] = m.ptr_[s] + slots;
  }
  const int64_t nslots = m.ptr_[S];
  m.view_.rows = M;
  m.view_.cols = c.cols;
  m.view_.block_r = 8;
  m.view_.block_c = 1;
  m.view_.nblocks = nslots;
  m.view_.format = Format::sell;
  m.view_.index_width = c.index_width;
  const size_t isize = c.index_width == IndexWidth::u16 ? 2 : 4;
  m.idx_ = AlignedBuffer(static_cast<size_t>(nslots * 8 + kIndexPad) * isize);
  m.values_ = AlignedBuffer(static_cast<size_t>(nslots * 8 + kValuePad) * sizeof(float));
  float* vals = static_cast<float*>(m.values_.data());
  for (int64_t s = 0; s < S; ++s) {
    for (int64_t l = 0; l < 8; ++l) {
      const int64_t lane = s * 8 + l;
      if (m.row_of_[lane] < 0) continue;
      const int64_t p0 = c.ptr[m.row_of_[lane]];
      for (int64_t q = 0; q < m.row_len_[lane]; ++q) {
        const int64_t dst = (m.ptr_[s] + q) * 8 + l;
        vals[dst] = c.values[p0 + q];
        if (c.index_width == IndexWidth::u16) {
          static_cast<uint16_t*>(m.idx_.data())[dst] = c.idx16()[p0 + q];
        } else {
          static_cast<uint32_t*>(m.idx_.data())[dst] = c.idx32()[p0 + q];
        }
      }
    }
  }
  m.view_.ptr = m.ptr_.data();
  m.view_.idx = m.idx_.data();
  m.view_.values = vals;
  m.view_.row_of = m.row_of_.data();
  m.view_.row_len = m.row_len_.data();
  return m;
}

SparseMatrix SparseMatrix::csr_from_sell() const {
  if (!is_sell()) throw std::invalid_argument("not a SELL matrix");
  const int64_t M = view_.rows, S = view_.block_rows();
  SparseMatrix m;
  m.ptr_.assign(static_cast<size_t>(M + 1), 0);
  for (int64_t lane = 0; lane < S * 8; ++lane)
    if (row_of_[lane] >= 0) m.ptr_[row_of_[lane] + 1] = row_len_[lane];
  for (int64_t i = 0; i < M; ++i) m.ptr_[i + 1] += m.ptr_[i];
  m.allocate(M, view_.cols, 1, 1, m.ptr_[M]);
  m.view_.ptr = m.ptr_.data();
  float* vals = static_cast<float*>(m.values_.data());
  for (int64_t s = 0; s < S; ++s) {
    for (int64_t l = 0; l < 8; ++l) {
      const int64_t lane = s * 8 + l;
      if (row_of_[lane] < 0) continue;
      const int64_t p0 = m.ptr_[row_of_[lane]];
      for (int64_t q = 0; q < row_len_[lane]; ++q) {
        const int64_t src = (ptr_[s] + q) * 8 + l;
        vals[p0 + q] = view_.values[src];
        if (view_.index_width == IndexWidth::u16) {
          static_cast<uint16_t*>(m.idx_.data())[p0 + q] = view_.idx16()[src];
        } else {
          static_cast<uint32_t*>(m.idx_.data())[p0 + q] = view_.idx32()[src];
        }
      }
    }
  }
  return m;
}

void SparseMatrix::to_dense(float* out) const {
  const int64_t M = view_.rows, K = view_.cols;
  if (is_sell()) {
    csr_from_sell().to_dense(out);
    return;
  }
  if (is_nm()) {
    std::fill(out, out + M * K, 0.0f);
    const int64_t G = view_.nm_groups(), n = view_.nm_n, m = view_.block_c;
    for (int64_t q = 0; q < view_.nblocks * 8; ++q) {
      const int64_t lane = q % 8, g = (q / 8 / n) % G, b = q / 8 / n / G;
      const int64_t i = b * 8 + lane;
      if (i < M) out[i * K + g * m + view_.idx8()[q]] += view_.values[q];
    }
    return;
  }
  const int R = view_.block_r, C = view_.block_c;
  std::fill(out, out + M * K, 0.0f);
  const float* vals = view_.values;
  for (int64_t b = 0; b < view_.block_rows(); ++b) {
    for (int64_t p = ptr_[b]; p < ptr_[b + 1]; ++p) {
      const int64_t k0 = view_.index_width == IndexWidth::u16 ? view_.idx16()[p] : view_.idx32()[p];
      for (int c = 0; c < C; ++c)
        for (int r = 0; r < R; ++r) {
          const int64_t i = b * R + r;
          if (i < M) out[i * K + k0 + c] += vals[(p * C + c) * R + r];
        }
    }
  }
}

}  // namespace pysparse
