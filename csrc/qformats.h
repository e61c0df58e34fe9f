// Int8 weight formats (qs8: signed 8-bit weights times signed 8-bit activations)
// as plain views, and the contract of one int8 kernel call.
//
// Weights. W (rows M x cols K) is quantized per output row: w[i][k] ~= q[i][k] *
// scale[i], q in [-128, 127] (pysparse quantizes to [-127, 127]; -128 is
// accepted from raw arrays), scale >= 0 and finite. K is cut into G = ceil(K/4)
// groups of 4 consecutive inputs (one 32-bit word: the unit of vpdpbusd and
// SDOT); the inputs past K of the last group are zero weights.
//
//   qbsr (R in {4, 8}): block rows of R consecutive output rows; block row b
//     keeps, in ptr[b] .. ptr[b+1], the (R x 4) blocks that hold a nonzero
//     weight, by increasing group index idx[j] (uint16: G <= 16384). Block j's
//     bytes are values[j * R * 4 + r * 4 + c]: row r's 4 weights of inputs
//     4 idx[j] + c, one 32-bit word per row, so R rows are one vector of R
//     int32 lanes (R = 8: a ymm, R = 4: an xmm / NEON q register).
//   qdense (R = 8): every block of every block row, same byte order, no ptr and
//     no idx (block j of block row b is group j): a dense layer below sparse
//     break-even still runs int8.
//   The last block row may hang over the bottom (rows % R != 0); its missing
//     rows are zero weights with scale 0 and are never written.
//
// Per row the pack also stores wsum[i] = sum over stored weights of row i: the
// VNNI kernels compute sum (x + 128) * w with vpdpbusd (u8 x s8) and subtract
// 128 * wsum[i].
//
// Exactness: every kernel accumulates in int32 and the sum is exact on every
// ISA. |q_x| <= 127, |q_w| <= 128, so a row's sum is bounded by 127 * 128 * 4G
// and the VNNI sum by 255 * 128 * 4G; with K <= kMaxQCols = 65536 (G <= 16384)
// both stay below 2**31 - 1 (255 * 128 * 65536 = 2139095040). The limit is
// checked when a matrix is built.
//
// Padding contract: values has kQValuePad readable bytes past the last block,
// idx kQIndexPad entries, scales and wsum block_rows * R (+ kQRowPad) entries.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pysparse {

enum class QFormat : uint8_t { qbsr = 0, qdense = 1 };
inline const char* qformat_name(QFormat f) { return f == QFormat::qbsr ? "bsr_int8" : "dense_int8"; }

inline constexpr int64_t kMaxQCols = 65536;
inline constexpr int64_t kQValuePad = 64;
inline constexpr int64_t kQIndexPad = 16;
inline constexpr int64_t kQRowPad = 16;
inline constexpr int64_t kQTile = 16;  // tokens per activation tile of the nt kernels
inline constexpr float kQTinyRow = 7.888609052210118e-31f;  // 2**-100

struct QView {
  int64_t rows;           // M
  int64_t cols;           // K
  int64_t groups;         // G = ceil(K / 4)
  int64_t nblocks;        // stored (R x 4) blocks
  const int64_t* ptr;     // qbsr: block_rows + 1 entries; qdense: null
  const uint16_t* idx;    // qbsr: nblocks group indices; qdense: null
  const int8_t* values;   // nblocks * R * 4 bytes
  const float* scales;    // block_rows * R per-row weight scales (overhang rows: 0)
  const int32_t* wsum;    // block_rows * R per-row sums of the stored weights
  int32_t block_r;        // R
  QFormat format;
  uint8_t reserved_[3];

  int64_t block_rows() const { return (rows + block_r - 1) / block_r; }
  // First stored block of block row b and one past its last.
  int64_t begin(int64_t b) const { return format == QFormat::qdense ? b * groups : ptr[b]; }
  int64_t end(int64_t b) const { return format == QFormat::qdense ? (b + 1) * groups : ptr[b + 1]; }
  // The group (input word) of stored block p of block row b.
  int64_t group(int64_t b, int64_t p) const { return format == QFormat::qdense ? p - b * groups : idx[p]; }
};
static_assert(sizeof(QView) == 80, "QView is a plain 80-byte struct");

// One kernel call: block rows [block_begin, block_end) of
//   Y[i, j] = act(fma(float(acc[i, j]) * scales[i], x_scale[j], bias[i]))
//   acc[i, j] = sum_k q_w[i, k] * q_x[j, k]   (exact int32)
// where act is identity or ReLU (y < 0 ? 0 : y; NaN and -0 pass through), bias
// null means +0. Quantized activations:
//   n == 1: xq holds 4G bytes (+ kQValuePad readable): q_x[0, k] = xq[k].
//   n > 1 (nx kernels): n is a multiple of 8 (the driver pads the batch with
//           zero columns and drops their outputs); xq is column-interleaved:
//           q_x[j, 4g + c] = xq[(g * n + j) * 4 + c], plus kQValuePad bytes.
//   nt kernels (token tiles, any n >= 1): xq is interleaved within tiles of
//           kQTile = 16 tokens, tile after tile:
//           q_x[j, 4g + c] = xq[(j / 16) * G * 64 + (g * 16 + j % 16) * 4 + c];
//           the tokens past n in the last tile are zero activations (the
//           prologue writes them), and only j < n is written to y. A tile is
//           G * 64 bytes, so one 16-token tile of any K <= 1536 sits in L1 while
//           a kernel sweeps every block row over it.
// The VNNI kernels (qisa_flips_input) read every byte of xq as u8 = q + 128
// (q ^ 0x80, written so by the prologue with flip = 0x80): vpdpbusd's unsigned
// operand, with no per-block xor.
// Y[i, j] = y[i * y_rs + j * y_cs]; rows the range covers are overwritten.
struct QArgs {
  const QView* w;
  int64_t block_begin;
  int64_t block_end;
  int64_t n;
  const int8_t* xq;
  const float* x_scale;  // n entries
  float* y;
  int64_t y_rs;
  int64_t y_cs;
  const float* bias;     // null or `rows` entries
  int32_t relu;          // 0 or 1
  int32_t reserved_;
};

using QKernelFn = void (*)(const QArgs&);

// The activation prologue, per row j < rows of x (x[j * ldx + k], k < K):
//   amax = max_k |x[j, k]|; scale[j] = amax / 127;
//   q[j, k] = clamp(round_half_even(x[j, k] * (127 / amax)), -127, 127)
// amax == 0: scale 0, q all 0 (the row's output is the bias). A row holding a
// NaN or an infinity: scale NaN, q all 0 (its output is NaN). A row whose
// amax is below kQTinyRow = 2**-100 counts as zero (scale 0, q all 0): its
// 127 / amax would overflow float, and its exact output differs from the bias by
// less than 2**-100 * sum |w|.
// Writes q as the kernels read it (QArgs): row j at tile j / rows, position
// j % rows of that tile, i.e. q_x[j, 4g + c] = xq[(j / rows) * G * rows * 4 +
// (g * rows + j % rows) * 4 + c]; rows = 1 for n == 1, rows = the padded batch
// for the nx kernels (one tile), rows = kQTile for the nt kernels. The 4G - K
// padding inputs are written as 0, every byte xor-ed with flip
// (0, or 0x80 for the VNNI kernels). Every ISA's version gives the same bytes
// and scales as the scalar one.
struct QuantizeArgs {
  const float* x;
  int64_t ldx;
  int64_t row_begin;
  int64_t row_end;
  int64_t rows;      // rows per interleaved tile (see above)
  int64_t cols;      // K
  int64_t groups;    // G
  int8_t* xq;
  float* scale;
  int32_t flip;  // 0 or 0x80
};

using QuantizeFn = void (*)(const QuantizeArgs&);

}  // namespace pysparse
