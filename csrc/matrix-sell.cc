// SELL-8-sigma <-> CSR: both directions are exact rearrangements of validated
// storage (formats.h), so nothing new needs checking.
#include "matrix-sell.h"

#include <algorithm>
#include <limits>
#include <stdexcept>

#include "matrix-bsr.h"

namespace pysparse::sell {

namespace {

void to_dense(const SparseMatrix& m, float* out) { to_csr(m).to_dense(out); }

}  // namespace

SparseMatrix from_csr(const SparseMatrix& csr) {
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
  MatrixStorage s;
  s.row_of.assign(static_cast<size_t>(S * 8), -1);
  s.row_len.assign(static_cast<size_t>(S * 8), 0);
  s.ptr.assign(static_cast<size_t>(S + 1), 0);
  for (int64_t sl = 0; sl < S; ++sl) {
    int64_t slots = 0;
    for (int64_t r = sl * 8; r < std::min(M, sl * 8 + 8); ++r) {
      s.row_of[r] = order[r];
      s.row_len[r] = static_cast<int32_t>(len(order[r]));
      slots = std::max<int64_t>(slots, s.row_len[r]);
    }
    s.ptr[sl + 1] = s.ptr[sl] + slots;
  }
  const int64_t nslots = s.ptr[S];
  s.view.rows = M;
  s.view.cols = c.cols;
  s.view.block_r = 8;
  s.view.block_c = 1;
  s.view.nblocks = nslots;
  s.view.format = Format::sell;
  s.view.index_width = c.index_width;
  const size_t isize = c.index_width == IndexWidth::u16 ? 2 : 4;
  s.idx = AlignedBuffer(static_cast<size_t>(nslots * 8 + kIndexPad) * isize);
  s.values = AlignedBuffer(static_cast<size_t>(nslots * 8 + kValuePad) * sizeof(float));
  s.stored_values = nslots * 8;
  s.stored_indices = nslots * 8;
  s.to_dense = &to_dense;
  float* vals = static_cast<float*>(s.values.data());
  for (int64_t sl = 0; sl < S; ++sl) {
    for (int64_t l = 0; l < 8; ++l) {
      const int64_t lane = sl * 8 + l;
      if (s.row_of[lane] < 0) continue;
      const int64_t p0 = c.ptr[s.row_of[lane]];
      for (int64_t q = 0; q < s.row_len[lane]; ++q) {
        const int64_t dst = (s.ptr[sl] + q) * 8 + l;
        vals[dst] = c.values[p0 + q];
        if (c.index_width == IndexWidth::u16) {
          static_cast<uint16_t*>(s.idx.data())[dst] = c.idx16()[p0 + q];
        } else {
          static_cast<uint32_t*>(s.idx.data())[dst] = c.idx32()[p0 + q];
        }
      }
    }
  }
  return SparseMatrix(std::move(s));
}

SparseMatrix to_csr(const SparseMatrix& m) {
  if (!m.is_sell()) throw std::invalid_argument("not a SELL matrix");
  const SparseView& v = m.view();
  const int64_t M = v.rows, S = v.sell_slices();
  std::vector<int64_t> ptr(static_cast<size_t>(M + 1), 0);
  for (int64_t lane = 0; lane < S * 8; ++lane)
    if (v.row_of[lane] >= 0) ptr[v.row_of[lane] + 1] = v.row_len[lane];
  for (int64_t i = 0; i < M; ++i) ptr[i + 1] += ptr[i];
  MatrixStorage s = bsr::allocate(M, v.cols, 1, 1, ptr[M]);
  s.ptr = std::move(ptr);
  float* vals = static_cast<float*>(s.values.data());
  for (int64_t sl = 0; sl < S; ++sl) {
    for (int64_t l = 0; l < 8; ++l) {
      const int64_t lane = sl * 8 + l;
      if (v.row_of[lane] < 0) continue;
      const int64_t p0 = s.ptr[v.row_of[lane]];
      for (int64_t q = 0; q < v.row_len[lane]; ++q) {
        const int64_t src = (v.ptr[sl] + q) * 8 + l;
        vals[p0 + q] = v.values[src];
        if (v.index_width == IndexWidth::u16) {
          static_cast<uint16_t*>(s.idx.data())[p0 + q] = v.idx16()[src];
        } else {
          static_cast<uint32_t*>(s.idx.data())[p0 + q] = v.idx32()[src];
        }
      }
    }
  }
  return SparseMatrix(std::move(s));
}

}  // namespace pysparse::sell
