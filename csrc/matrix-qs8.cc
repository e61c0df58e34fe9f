// Int8 weight storage (qformats.h): validation and packing of bsr_int8 and
// dense_int8. Nothing a caller passes reaches a kernel unchecked.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "qmatrix.h"

namespace pysparse {

namespace {

std::string str(int64_t v) { return std::to_string(v); }

int64_t groups_of(int64_t cols) { return (cols + 3) / 4; }

void check_scales(const float* scales, int64_t len, int64_t rows) {
  if (len != rows) throw std::invalid_argument("scales must have one entry per row (" + str(rows) + "), got " + str(len));
  for (int64_t i = 0; i < rows; ++i) {
    if (!(scales[i] >= 0.0f && scales[i] <= 3.4028234663852886e38f)) {
      throw std::invalid_argument("scales must be finite and >= 0; scales[" + str(i) + "] = " +
                                  std::to_string(scales[i]));
    }
  }
}

}  // namespace

void QMatrix::check_shape(int64_t rows, int64_t cols, int block_r, QFormat format) {
  if (rows < 0 || cols < 0) {
    throw std::invalid_argument("shape must be non-negative, got (" + str(rows) + ", " + str(cols) + ")");
  }
  if (rows > kMaxRows) throw std::invalid_argument("at most 2**26 rows are supported, got " + str(rows));
  if (cols > kMaxQCols) {
    throw std::invalid_argument("int8 weights support at most " + str(kMaxQCols) +
                                " inputs (the int32 sums are exact up to there), got " + str(cols));
  }
  if (format == QFormat::qdense ? block_r != 8 : (block_r != 4 && block_r != 8)) {
    throw std::invalid_argument(format == QFormat::qdense ? "dense int8 uses blocks of (8, 4)"
                                                          : "int8 blocks must be (4, 4) or (8, 4), got (" +
                                                                str(block_r) + ", 4)");
  }
}

void QMatrix::allocate(int64_t rows, int64_t cols, int block_r, QFormat format, int64_t nblocks) {
  view_.rows = rows;
  view_.cols = cols;
  view_.groups = groups_of(cols);
  view_.block_r = block_r;
  view_.format = format;
  view_.nblocks = nblocks;
  values_ = AlignedBuffer(static_cast<size_t>(nblocks * block_r * 4 + kQValuePad));
  if (format == QFormat::qbsr) idx_ = AlignedBuffer(static_cast<size_t>(nblocks + kQIndexPad) * sizeof(uint16_t));
  const size_t padded_rows = static_cast<size_t>(view_.block_rows() * block_r + kQRowPad);
  scales_ = AlignedBuffer(padded_rows * sizeof(float));
  wsum_ = AlignedBuffer(padded_rows * sizeof(int32_t));
}

void QMatrix::finish(const float* scales) {
  const QView& v = view_;
  if (v.rows > 0) std::memcpy(scales_.data(), scales, static_cast<size_t>(v.rows) * sizeof(float));
  int32_t* ws = static_cast<int32_t*>(wsum_.data());
  const int8_t* vals = static_cast<const int8_t*>(values_.data());
  const int R = v.block_r;
  for (int64_t b = 0; b < v.block_rows(); ++b) {
    for (int64_t p = (v.format == QFormat::qdense ? b * v.groups : ptr_[b]);
         p < (v.format == QFormat::qdense ? (b + 1) * v.groups : ptr_[b + 1]); ++p)
      for (int r = 0; r < R; ++r)
        for (int c = 0; c < 4; ++c) ws[b * R + r] += vals[(p * R + r) * 4 + c];
  }
  view_.ptr = v.format == QFormat::qdense ? nullptr : ptr_.data();
  view_.idx = v.format == QFormat::qdense ? nullptr : static_cast<const uint16_t*>(idx_.data());
  view_.values = vals;
  view_.scales = static_cast<const float*>(scales_.data());
  view_.wsum = ws;
}

QMatrix QMatrix::from_int8(const int8_t* q, int64_t rows, int64_t cols, int64_t ldq, const float* scales,
                           int64_t scales_len, int block_r, QFormat format) {
  check_shape(rows, cols, block_r, format);
  check_scales(scales, scales_len, rows);
  const int R = block_r;
  const int64_t G = groups_of(cols), B = (rows + R - 1) / R;
  auto block_nonzero = [&](int64_t b, int64_t g) {
    for (int64_t i = b * R; i < std::min<int64_t>(rows, (b + 1) * R); ++i)
      for (int64_t k = g * 4; k < std::min<int64_t>(cols, g * 4 + 4); ++k)
        if (q[i * ldq + k] != 0) return true;
    return false;
  };
  QMatrix m;
  int64_t nblocks = B * G;
  if (format == QFormat::qbsr) {
    m.ptr_.assign(static_cast<size_t>(B + 1), 0);
    for (int64_t b = 0; b < B; ++b) {
      int64_t count = 0;
      for (int64_t g = 0; g < G; ++g) count += block_nonzero(b, g);
      m.ptr_[b + 1] = m.ptr_[b] + count;
    }
    nblocks = m.ptr_[B];
  }
  m.allocate(rows, cols, R, format, nblocks);
  int8_t* vals = static_cast<int8_t*>(m.values_.data());
  uint16_t* idx = static_cast<uint16_t*>(m.idx_.data());
  int64_t p = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t g = 0; g < G; ++g) {
      if (format == QFormat::qbsr) {
        if (!block_nonzero(b, g)) continue;
        idx[p] = static_cast<uint16_t>(g);
      }
      for (int r = 0; r < R; ++r) {
        const int64_t i = b * R + r;
        if (i >= rows) continue;
        for (int64_t k = g * 4; k < std::min<int64_t>(cols, g * 4 + 4); ++k) vals[(p * R + r) * 4 + (k - g * 4)] = q[i * ldq + k];
      }
      ++p;
    }
  m.finish(scales);
  return m;
}

QMatrix QMatrix::from_arrays(int64_t rows, int64_t cols, int block_r, const int64_t* ptr, int64_t ptr_len,
                             const int64_t* starts, int64_t starts_len, const int8_t* values, int64_t values_len,
                             const float* scales, int64_t scales_len) {
  check_shape(rows, cols, block_r, QFormat::qbsr);
  const int R = block_r;
  const int64_t B = (rows + R - 1) / R;
  if (ptr_len != B + 1) {
    throw std::invalid_argument("indptr must have " + str(B + 1) + " entries (block rows + 1), got " + str(ptr_len));
  }
  if (ptr[0] != 0) throw std::invalid_argument("indptr[0] must be 0, got " + str(ptr[0]));
  for (int64_t b = 0; b < B; ++b) {
    if (ptr[b + 1] < ptr[b]) {
      throw std::invalid_argument("indptr must be non-decreasing; indptr[" + str(b + 1) + "] = " + str(ptr[b + 1]) +
                                  " < indptr[" + str(b) + "] = " + str(ptr[b]));
    }
  }
  const int64_t nblocks = ptr[B];
  if (starts_len != nblocks) {
    throw std::invalid_argument("indices must have indptr[-1] = " + str(nblocks) + " entries, got " + str(starts_len));
  }
  // nblocks <= starts_len, an allocated array: the product cannot overflow.
  if (values_len != nblocks * R * 4) {
    throw std::invalid_argument("data must have " + str(nblocks * R * 4) + " values (" + str(nblocks) +
                                " blocks of " + str(R) + "x4), got " + str(values_len));
  }
  check_scales(scales, scales_len, rows);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t p = ptr[b]; p < ptr[b + 1]; ++p) {
      const int64_t k = starts[p];
      if (k < 0 || k >= cols || k % 4 != 0) {
        throw std::invalid_argument("block start " + str(k) + " at position " + str(p) +
                                    " must be a multiple of 4 in [0, " + str(cols) + ")");
      }
      if (p > ptr[b] && k <= starts[p - 1]) {
        throw std::invalid_argument("block starts must be increasing within each block row; block row " + str(b) +
                                    " has " + str(starts[p - 1]) + " then " + str(k));
      }
      for (int r = 0; r < R; ++r)
        for (int c = 0; c < 4; ++c) {
          const bool outside = k + c >= cols || b * R + r >= rows;
          if (outside && values[(p * R + r) * 4 + c] != 0) {
            throw std::invalid_argument("block " + str(p) + " holds a nonzero weight outside the matrix (row " +
                                        str(b * R + r) + ", input " + str(k + c) + "); padding weights must be 0");
          }
        }
    }
  QMatrix m;
  m.ptr_.assign(ptr, ptr + B + 1);
  m.allocate(rows, cols, R, QFormat::qbsr, nblocks);
  uint16_t* idx = static_cast<uint16_t*>(m.idx_.data());
  for (int64_t p = 0; p < nblocks; ++p) idx[p] = static_cast<uint16_t>(starts[p] / 4);
  if (nblocks > 0) std::memcpy(m.values_.data(), values, static_cast<size_t>(nblocks * R * 4));
  m.finish(scales);
  return m;
}

int64_t QMatrix::nbytes() const {
  const int64_t ptr_bytes = static_cast<int64_t>(ptr_.size() * sizeof(int64_t));
  const int64_t idx_bytes = view_.format == QFormat::qbsr ? view_.nblocks * 2 : 0;
  return ptr_bytes + idx_bytes + stored_values() + view_.rows * static_cast<int64_t>(sizeof(float));
}

void QMatrix::to_int8(int8_t* out) const {
  const QView& v = view_;
  std::fill(out, out + v.rows * v.cols, int8_t{0});
  const int R = v.block_r;
  for (int64_t b = 0; b < v.block_rows(); ++b)
    for (int64_t p = v.begin(b); p < v.end(b); ++p) {
      const int64_t k0 = v.group(b, p) * 4;
      for (int r = 0; r < R; ++r) {
        const int64_t i = b * R + r;
        if (i >= v.rows) continue;
        for (int c = 0; c < 4 && k0 + c < v.cols; ++c) out[i * v.cols + k0 + c] = v.values[(p * R + r) * 4 + c];
      }
    }
}

}  // namespace pysparse
