// The sizes of each ISA's vector traits (simd-avx2.h, simd-avx512.h, simd-neon.h) with none of
// their intrinsics, so that code compiled for no particular ISA (spmm.cc's thread split) reads
// the tile engine's geometry from the one place the traits themselves take it from.
#pragma once

#include <algorithm>

namespace pysparse {
namespace widths {

struct Avx2 {
  static constexpr int kWidth = 8;    // floats per vector
  static constexpr int kTileAcc = 8;  // accumulator vectors per register tile (16 registers)
};
struct Avx512 {
  static constexpr int kWidth = 16;
  static constexpr int kTileAcc = 16;  // 32 registers leave room for 16 next to X's loads and broadcasts
};
struct Neon {
  static constexpr int kWidth = 4;
  static constexpr int kTileAcc = 8;
};

// Columns of the widest register tile of the tile engine (spmm-nx.inl) for blocks of R rows:
// a tile holds RB = min(R, 8) rows x kTileAcc / RB vectors. The engine tiles [0, n) from
// column 0 with these and runs the last < widest_tile columns through narrower tiles.
template <class Wd>
constexpr int widest_tile(int block_r) {
  return Wd::kWidth * (Wd::kTileAcc / std::min(block_r, 8));
}

}  // namespace widths
}  // namespace pysparse
