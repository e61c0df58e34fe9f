// Sparse weight formats as plain views over arrays someone else owns.
//
// One struct covers every format the kernels run. CSR is the 1x1 case of the
// block-sparse layout, so a kernel, the validator and the partitioner deal with a
// single shape of data:
//
//   W (rows x cols) is cut into block rows of R consecutive rows. Each block row b
//   stores, in ptr[b] .. ptr[b+1], blocks of R x C weights that start at column
//   idx[j] and cover columns idx[j] .. idx[j] + C - 1. Starts are strictly
//   increasing within a block row and idx[j] + C <= cols, so a kernel never
//   reads x outside its K rows. (A matrix whose K is not a multiple of C keeps
//   its last block of a row shifted left to start at K - C, with zeros where it
//   overlaps the block before; values of such an overlap add up.)
//
//   Block j's values sit at values[j * R * C ...], column by column: the R
//   weights of column idx[j] + 0, then of idx[j] + 1, ... So an (R, C) block is
//   C consecutive (R, 1) blocks, and the batch-1 kernel's "one broadcast of
//   x[k] feeds R lanes" works for every C.
//
//   The last block row may hang over the bottom of W when rows % R != 0; its
//   missing rows are stored as zeros and kernels never write them to Y.
//
// Column indices are as narrow as cols allows: uint16 for cols <= 65536. At batch
// 1 the kernel streams values + indices from memory once, so 6 instead of 8 bytes
// per nonzero is worth 25%.
//
// N:M (Format::nm): every group of M consecutive weights along a row
// (M in {2, 4, 8}) holds at most N nonzeros. Rows go in interleaved groups of 8
// (block_r == 8, block_c == M, nm_n == N): for block row b, column group g and
// slot s < N, values[((b * G + g) * N + s) * 8 + lane] is row 8b + lane's
// s-th kept weight in group g and idx (uint8) holds its column offset inside
// the group (< M); G = ceil(K / M). Unused slots are zeros at offset 0. ptr is
// null: every block row costs the same. The batch-1 kernel loads a group's M
// inputs into one register and picks each lane's input with one permute.
//
// SELL-8-sigma (Format::sell; sliced ELLPACK): an unstructured matrix laid out for
// the batch-1 kernel. Rows are sorted by nonzero count (descending, stable)
// inside windows of kSellWindow rows, then taken 8 at a time as slices; lane l
// of slice s is original row row_of[8s + l] (-1 for the lanes past the last
// row) with row_len[8s + l] nonzeros. Slice s owns slots ptr[s] .. ptr[s+1]
// (as many as its longest lane has nonzeros); slot q holds one nonzero of each
// lane: values[8q + l] and its column idx[8q + l], in column order per lane.
// Lanes shorter than the slice hold zeros at column 0 there. So a batch-1 kernel
// loads 8 values and 8 indices with one vector each, feeds 8 rows with one FMA,
// needs no per-row tail, horizontal sum or branch on a row's length, and the
// sort keeps the padding small (about 1.6% on a random 90%-sparse 3072x768).
// block_r == 8 (a slice is a block row of 8), block_c == 1, nblocks counts
// slots. Permuting only inside windows keeps each window's rows its own: a
// range of whole windows writes exactly its own rows of Y.
//
// Padding contract (owned storage in matrix.h provides it, kernels rely on it):
// idx has kIndexPad readable entries after the last block and values has
// kValuePad readable floats after the last value, so a SIMD kernel may load a
// full vector of indices/values at a row's end and mask what it does not use.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pysparse {

enum class IndexWidth : uint8_t { u16 = 0, u32 = 1, u8 = 2 };

// The one list of storage formats (the Python side has one class per tag, in
// pysparse/formats/; the C++ side builds each in matrix-<format>.cc and binds
// its constructors in bindings/matrix-<format>.cc). CSR is stored as the 1x1 case of BSR's layout, so kernels
// for BSR also run a CSR view; the tag still says which one it is.
enum class Format : uint8_t { csr = 0, bsr = 1, nm = 2, sell = 3 };
inline constexpr int kFormatCount = 4;
inline const char* format_name(Format f) {
  switch (f) {
    case Format::csr: return "csr";
    case Format::bsr: return "bsr";
    case Format::nm: return "nm";
    case Format::sell: return "sell";
  }
  return "?";
}
// BSR-layout storage: ptr / idx / values as blocks (CSR and BSR).
inline bool block_layout(Format f) { return f == Format::csr || f == Format::bsr; }

inline constexpr int64_t kIndexPad = 16;  // entries of idx readable past the end
inline constexpr int64_t kValuePad = 16;  // floats of values readable past the end
inline constexpr int64_t kMaxU16Cols = 65536;
inline constexpr int64_t kSellWindow = 128;  // rows sorted together (a multiple of 8)

struct SparseView {
  int64_t rows;        // M: rows of W (output features)
  int64_t cols;        // K: columns of W (input features)
  int64_t nblocks;     // stored blocks (== nnz for CSR)
  const int64_t* ptr;  // block_rows() + 1 entries; ptr[0] == 0, non-decreasing
  const void* idx;     // nblocks (+ kIndexPad) first-column indices, uint16 or uint32
  const float* values; // nblocks * R * C (+ kValuePad) floats
  int32_t block_r;     // R (1 for CSR; 8 for N:M and SELL: rows interleaved per block row)
  int32_t block_c;     // C (1 for CSR and SELL; M for N:M: read it as nm_m())
  IndexWidth index_width;
  Format format;
  uint8_t nm_n;        // N of N:M (0 otherwise)
  uint8_t reserved_[5];
  const int32_t* row_of;   // SELL: 8 * block_rows() original rows (-1: none); else null
  const int32_t* row_len;  // SELL: 8 * block_rows() nonzero counts; else null

  int64_t block_rows() const { return (rows + block_r - 1) / block_r; }
  // Named reads of the fields whose meaning depends on the format:
  int nm_m() const { return block_c; }                                   // N:M: M
  int64_t nm_groups() const { return (cols + block_c - 1) / block_c; }   // N:M: groups of M per row
  int64_t nm_slots() const { return nblocks; }                           // N:M: (block row, group, slot) triples
  int64_t sell_slots() const { return nblocks; }                         // SELL: slots of 8 lanes
  int64_t sell_slices() const { return block_rows(); }                   // SELL: slices of 8 rows
  const uint8_t* idx8() const { return static_cast<const uint8_t*>(idx); }
  const uint16_t* idx16() const { return static_cast<const uint16_t*>(idx); }
  const uint32_t* idx32() const { return static_cast<const uint32_t*>(idx); }
};
static_assert(sizeof(SparseView) == 80, "SparseView is a plain 80-byte struct");

// One call of a kernel: block rows [block_begin, block_end) of
//   Y = W X (+ bias[:, None])
// X[k, j] = x[k * ldx + j] for k < cols, j < n (unit stride along n). Rows
// may overlap (ldx < n, even ldx == 1 for the direct convolution): X is read-only.
// Y[i, j] = y[i * y_rs + j * y_cs]; the rows of Y the range covers are
// overwritten, never accumulated into. x and y must not overlap.
// bias is null or has `rows` entries.
struct SpmmArgs {
  const SparseView* w;
  int64_t block_begin;
  int64_t block_end;
  int64_t n;
  const float* x;
  int64_t ldx;
  float* y;
  int64_t y_rs;
  int64_t y_cs;
  const float* bias;
};

using SpmmFn = void (*)(const SpmmArgs&);

// dst[c * ldd + r] = src[r * lds + c] for r in [row_begin, row_end), c < cols:
// the packing `linear` needs around the kernels (X^T in, Y^T out).
struct TransposeArgs {
  const float* src;
  int64_t lds;
  int64_t row_begin;
  int64_t row_end;
  int64_t cols;
  float* dst;
  int64_t ldd;
};

using TransposeFn = void (*)(const TransposeArgs&);

}  // namespace pysparse
