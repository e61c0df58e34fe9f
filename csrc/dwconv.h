// Depthwise 2-D convolution (groups == channels == output channels), NCHW, the
// layout the runtime uses. Two engines (kernels-dwconv.inc): "planes" kernels
// each do one channel plane, vectorised along its rows; "blocked" kernels do
// kDwBlock = 8 adjacent channels at once, one pixel of the 8 channels per
// vector (kernels/dwconv-blocked.inl), the C % 8 channels left over going
// through the planes kernel of the same ISA. The driver (dwconv.cc) splits the
// work across the pool and picks the kernel by the active ISA (dispatch.h:
// PYSPARSE_ISA / set_isa) and the engine by the shape (dwconv_auto_engine).
// Nothing here checks its arguments: bindings/dwconv.cc does.
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

#include "dispatch.h"

namespace pysparse {

enum class DwAct : int { none = 0, relu = 1, relu6 = 2 };
// automatic: dwconv_auto_engine picks per call.
enum class DwEngine : int { automatic = 0, planes = 1, blocked = 2 };

// One plane: x (h, w) contiguous, taps kh * kw (row-major), output y (ho, wo)
// contiguous with ho = (h + 2 ph - kh) / sh + 1 (likewise wo). scratch:
// dwconv_scratch_floats(...) floats of the caller's, not shared with another
// task; the kernel writes the padded, phase-split input there.
struct DwConvArgs {
  const float* x;
  const float* w;
  float bias;
  float* y;
  float* scratch;
  int64_t h, w_in, ho, wo;
  int64_t kh, kw, sh, sw, ph, pw;
  DwAct act;
};

// Every kernel pads the scratch rows to whole vectors of this many floats.
inline constexpr int64_t kDwPad = 8;
// The scratch row length of one phase: the output width rounded up to whole
// vectors plus the taps that reach past it.
inline int64_t dwconv_phase_len(int64_t wo, int64_t kw, int64_t sw) {
  return (wo + kDwPad - 1) / kDwPad * kDwPad + (kw - 1) / sw;
}
inline int64_t dwconv_scratch_floats(int64_t ho, int64_t wo, int64_t kh, int64_t kw, int64_t sh, int64_t sw) {
  return ((ho - 1) * sh + kh) * sw * dwconv_phase_len(wo, kw, sw);
}

using DwConvFn = void (*)(const DwConvArgs&);

// The blocked engine: DwKernelInfo::channels adjacent channels c0 .. of one image (kDwBlock = 8;
// 16 for AVX-512), transposed 8 pixels at a time. Channel k's
// input plane is x + k * h * w_in, its taps w + k * kh * kw, its bias bias[k] (bias null:
// zeros), its output plane y + k * ho * wo. scratch: dwconv_blocked_scratch_floats(...)
// floats of the caller's, not shared with another task. Geometry as DwConvArgs.
inline constexpr int64_t kDwBlock = 8;
struct DwBlockArgs {
  const float* x;
  const float* w;
  const float* bias;
  float* y;
  float* scratch;
  int64_t h, w_in, ho, wo;
  int64_t kh, kw, sh, sw, ph, pw;
  DwAct act;
};

// The blocked engine works in bands of output rows: the band's padded input rows
// transposed into a tile of pixel vectors (w_in + 2 pw of them a row) and its outputs,
// together at most kDwBandFloats (24 KiB: L1-resident beside the weights; every core
// this runs on has 32 KiB or more) unless one row alone is larger.
inline constexpr int64_t kDwBandFloats = 6 * 1024;
// cb: the kernel's channels per block (DwKernelInfo::channels).
inline int64_t dwconv_band_rows(int64_t ho, int64_t wo, int64_t w_in, int64_t kh, int64_t sh, int64_t pw,
                                int64_t cb) {
  const int64_t row = (w_in + 2 * pw) * cb;  // one tile row, floats
  const int64_t fixed = (kh - sh) * row, per = sh * row + wo * cb;
  const int64_t band = (kDwBandFloats - fixed) / per;
  return band < 1 ? 1 : (band > ho ? ho : band);
}
inline int64_t dwconv_blocked_scratch_floats(int64_t ho, int64_t wo, int64_t w_in, int64_t kh, int64_t kw,
                                             int64_t sh, int64_t pw, int64_t cb) {
  const int64_t band = dwconv_band_rows(ho, wo, w_in, kh, sh, pw, cb);
  // tile, outputs, the taps and bias in channel-interleaved order, one bounce block of 8 pixels
  return (((band - 1) * sh + kh) * (w_in + 2 * pw) + band * wo + kh * kw + 1 + kDwBlock) * cb;
}

using DwBlockFn = void (*)(const DwBlockArgs&);

template <DwEngine E>
using DwArgsOf = std::conditional_t<E == DwEngine::blocked, DwBlockArgs, DwConvArgs>;

#define PYSPARSE_DW_KERNEL(name, isa, engine, channels) void name(const DwArgsOf<DwEngine::engine>& args);
#include "kernels-dwconv.inc"
#undef PYSPARSE_DW_KERNEL

// One of fn (planes) and block (blocked) is set, as `engine` says; channels: per call of the
// kernel (planes 1, blocked 8 or 16).
struct DwKernelInfo {
  const char* name;
  Isa isa;
  DwEngine engine;
  int channels;
  DwConvFn fn;
  DwBlockFn block;
};

const std::vector<DwKernelInfo>& all_dw_kernels();
// The kernel of `engine` (planes or blocked) for `isa`, or the next ISA down's
// (isa_fallback), ..., or the scalar twin.
const DwKernelInfo& select_dw_kernel(Isa isa, DwEngine engine = DwEngine::planes);

// x (n, c, h, w) and y (n, c, ho, wo) contiguous; w (c, kh * kw); bias null or (c,).
struct DwConvProblem {
  const float* x;
  const float* w;
  const float* bias;
  float* y;
  int64_t n, c, h, w_in, ho, wo;
  int64_t kh, kw, sh, sw, ph, pw;
  DwAct act;
};
// The engine `automatic` runs for p (planes or blocked).
DwEngine dwconv_auto_engine(const DwConvProblem& p);
// Throws std::bad_alloc when a thread's scratch cannot be allocated.
// nthreads <= 0: get_num_threads(). The result does not depend on the thread count.
// kernel null: the active ISA's kernel of `engine`; else `kernel`, whose engine wins.
void dwconv2d(const DwConvProblem& p, int nthreads, const DwKernelInfo* kernel = nullptr,
              DwEngine engine = DwEngine::automatic);

}  // namespace pysparse
