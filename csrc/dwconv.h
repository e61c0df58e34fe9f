// Depthwise 2-D convolution (groups == channels == output channels), NCHW, the
// layout the runtime uses. The kernels (kernels-dwconv.inc) each do one channel
// plane; the driver (dwconv.cc) splits N * C planes across the pool and picks
// the kernel by the active ISA (dispatch.h: PYSPARSE_ISA / set_isa). Nothing
// here checks its arguments: bindings/dwconv.cc does.
#pragma once

#include <cstdint>
#include <vector>

#include "dispatch.h"

namespace pysparse {

enum class DwAct : int { none = 0, relu = 1, relu6 = 2 };

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

#define PYSPARSE_DW_KERNEL(name, isa) void name(const DwConvArgs& args);
#include "kernels-dwconv.inc"
#undef PYSPARSE_DW_KERNEL

struct DwKernelInfo {
  const char* name;
  Isa isa;
  DwConvFn fn;
};

const std::vector<DwKernelInfo>& all_dw_kernels();
// The kernel for `isa`, or the scalar twin when the ISA has none.
const DwKernelInfo& select_dw_kernel(Isa isa);

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
// Throws std::bad_alloc when a thread's scratch cannot be allocated.
// nthreads <= 0: get_num_threads(). The result does not depend on the thread count.
void dwconv2d(const DwConvProblem& p, int nthreads, const DwKernelInfo* kernel = nullptr);

}  // namespace pysparse
