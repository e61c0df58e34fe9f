// The SELL batch-1 epilogue every ISA shares: lane l of slice s (sum out[l])
// is row row_of[8s + l], or no row when that is -1. In an unnamed namespace:
// each ISA's file keeps its own copy, so the linker cannot hand one ISA's
// build to another.
#pragma once

#include <cstdint>

#include "formats.h"

namespace pysparse {
namespace {

inline void sell_store_slice(const SpmmArgs& a, int64_t s, const float* out) {
  const int32_t* rows = a.w->row_of + s * 8;
  for (int l = 0; l < 8; ++l) {
    const int64_t row = rows[l];
    if (row >= 0) a.y[row * a.y_rs] = a.bias != nullptr ? out[l] + a.bias[row] : out[l];
  }
}

}  // namespace
}  // namespace pysparse
