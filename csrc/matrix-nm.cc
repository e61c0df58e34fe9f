// N:M: validation, storage and to_dense (formats.h).
#include "matrix-nm.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace pysparse::nm {

namespace {

std::string str(int64_t v) { return std::to_string(v); }

void to_dense(const SparseMatrix& mat, float* out) {
  const SparseView& v = mat.view();
  const int64_t M = v.rows, K = v.cols;
  std::fill(out, out + M * K, 0.0f);
  const int64_t G = v.nm_groups(), n = v.nm_n, m = v.nm_m();
  for (int64_t q = 0; q < v.nblocks * 8; ++q) {
    const int64_t lane = q % 8, g = (q / 8 / n) % G, b = q / 8 / n / G;
    const int64_t i = b * 8 + lane;
    if (i < M) out[i * K + g * m + v.idx8()[q]] += v.values[q];
  }
}

// Slots: nblocks counts (block row, group, slot) triples; each holds 8 lanes.
MatrixStorage allocate(int64_t rows, int64_t cols, int n, int m) {
  MatrixStorage s;
  SparseView& v = s.view;
  v.rows = rows;
  v.cols = cols;
  v.block_r = 8;
  v.block_c = m;
  v.nm_n = static_cast<uint8_t>(n);
  v.format = Format::nm;
  v.index_width = IndexWidth::u8;
  // block_rows * groups * n * 8 lanes can pass 2**63 for shapes check_dims
  // accepts (2**31 rows x 2**32 columns): count in double first.
  const double slots = static_cast<double>(v.block_rows()) * static_cast<double>(v.nm_groups()) * n * 8;
  if (slots > static_cast<double>(kMaxStoredValues)) {
    throw std::invalid_argument("N:M storage for a " + str(rows) + "x" + str(cols) + " matrix would hold " +
                                std::to_string(slots) + " values; at most 2**40 are supported");
  }
  v.nblocks = v.block_rows() * v.nm_groups() * n;
  s.idx = AlignedBuffer(static_cast<size_t>(v.nblocks * 8 + kIndexPad));
  s.values = AlignedBuffer(static_cast<size_t>(v.nblocks * 8 + kValuePad) * sizeof(float));
  s.stored_values = v.nblocks * 8;
  s.stored_indices = v.nblocks * 8;
  s.to_dense = &to_dense;
  return s;
}

}  // namespace

void check(int64_t rows, int64_t cols, int n, int m) {
  check_dims(rows, cols);
  if (m != 2 && m != 4 && m != 8) throw std::invalid_argument("N:M needs M in {2, 4, 8}; got M=" + str(m));
  if (n < 1 || n > m) {
    throw std::invalid_argument("N:M needs 1 <= N <= M; got " + str(n) + ":" + str(m));
  }
}

SparseMatrix from_dense(const float* a, int64_t rows, int64_t cols, int64_t lda, int n, int m) {
  check(rows, cols, n, m);
  MatrixStorage s = allocate(rows, cols, n, m);
  const int64_t G = s.view.nm_groups();
  if (G == 0) return SparseMatrix(std::move(s));  // no columns: nothing to scan, however many rows
  float* vals = static_cast<float*>(s.values.data());
  uint8_t* offs = static_cast<uint8_t*>(s.idx.data());
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t b = i / 8, lane = i % 8;
    for (int64_t g = 0; g < G; ++g) {
      int64_t slot = 0;
      for (int64_t k = g * m; k < std::min<int64_t>(cols, (g + 1) * m); ++k) {
        const float v = a[i * lda + k];
        if (v == 0.0f) continue;
        if (slot == n) {
          throw std::invalid_argument("not " + str(n) + ":" + str(m) + " sparse: row " + str(i) + ", columns " +
                                      str(g * m) + ".." + str(std::min<int64_t>(cols, (g + 1) * m) - 1) +
                                      " hold more than " + str(n) + " nonzeros; prune with pattern '" + str(n) + ":" +
                                      str(m) + "' first");
        }
        const int64_t q = ((b * G + g) * n + slot) * 8 + lane;
        vals[q] = v;
        offs[q] = static_cast<uint8_t>(k - g * m);
        ++slot;
      }
    }
  }
  return SparseMatrix(std::move(s));
}

SparseMatrix from_arrays(int64_t rows, int64_t cols, int n, int m, const float* values, int64_t values_len,
                         const int64_t* offsets, int64_t offsets_len) {
  check(rows, cols, n, m);
  // The lengths first: a 37-entry input for a huge shape must not allocate
  // (and zero) the shape's storage before it is refused.
  const double want = static_cast<double>((rows + 7) / 8) * static_cast<double>((cols + m - 1) / m) * n * 8;
  if (want != static_cast<double>(values_len) || want != static_cast<double>(offsets_len)) {
    throw std::invalid_argument("N:M arrays must hold " + std::to_string(static_cast<long long>(want)) +
                                " entries (block rows x groups x N x 8), got " + str(values_len) + " values and " +
                                str(offsets_len) + " offsets");
  }
  MatrixStorage s = allocate(rows, cols, n, m);
  const int64_t total = s.view.nblocks * 8;
  if (values_len != total || offsets_len != total) {
    throw std::invalid_argument("N:M arrays must hold " + str(total) + " entries (block rows x groups x N x 8), got " +
                                str(values_len) + " values and " + str(offsets_len) + " offsets");
  }
  const int64_t G = s.view.nm_groups();
  float* vals = static_cast<float*>(s.values.data());
  uint8_t* offs = static_cast<uint8_t*>(s.idx.data());
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
  return SparseMatrix(std::move(s));
}

}  // namespace pysparse::nm
