// Direct 2-D convolution of a dense weight (groups 1, dilation 1), NCHW: the
// network stems (MobileNetV2's 3x3 stride-2 conv of the 3-channel image, 3 ->
// 32 at 224x224), where an im2col gathers Cin * kh * kw rows per output pixel
// for a product with only Cout rows. The input planes are padded and split
// into stride phases once per image (dwconv.inl's fill, the depthwise
// kernels' layout), then each kernel call computes a block of up to
// kConvOcBlock output channels over a band of output rows: one vector load of
// the input per tap feeds every channel of the block. The kernels
// (kernels-conv.inc) share one engine (kernels/conv-direct.inl); the driver
// (conv.cc) splits (channel block, row band) tasks across the pool and picks
// the kernel by the active ISA. Nothing here checks its arguments:
// bindings/dwconv.cc does.
#pragma once

#include <cstdint>
#include <vector>

#include "dispatch.h"
#include "dwconv.h"

namespace pysparse {

// Output channels per kernel call (one input load feeds this many fmas).
inline constexpr int64_t kConvOcBlock = 4;

// One task: output channels [0, oc) of the block, rows [oh0, oh1).
// scratch: cin filled planes (dwconv_fill's layout: rows of sw phases of L
// floats), plane floats apart. w: oc rows of k = cin * kh * kw weights, in
// (ci, a, b) order, row stride k. bias: oc values or null. y: the block's
// first output plane; planes ho * wo floats apart, rows wo apart.
struct ConvDirectArgs {
  const float* scratch;
  int64_t plane, L;
  const float* w;
  const float* bias;
  float* y;
  int64_t oc, cin, kh, kw, sh, sw;
  int64_t oh0, oh1, ho, wo;
  DwAct act;
};

using ConvDirectFn = void (*)(const ConvDirectArgs&);

#define PYSPARSE_CONV_KERNEL(name, isa) void name(const ConvDirectArgs& args);
#include "kernels-conv.inc"
#undef PYSPARSE_CONV_KERNEL

struct ConvKernelInfo {
  const char* name;
  Isa isa;
  ConvDirectFn fn;
};

const std::vector<ConvKernelInfo>& all_conv_kernels();
// The kernel for `isa`, or the scalar twin when the ISA has none.
const ConvKernelInfo& select_conv_kernel(Isa isa);

// x (n, cin, h, w) and y (n, cout, ho, wo) contiguous; w (cout, cin * kh * kw); bias null or (cout,).
struct ConvDirectProblem {
  const float* x;
  const float* w;
  const float* bias;
  float* y;
  int64_t n, cin, cout, h, w_in, ho, wo;
  int64_t kh, kw, sh, sw, ph, pw;
  DwAct act;
};
// Throws std::bad_alloc when the padded planes cannot be allocated. nthreads
// <= 0: get_num_threads(). The result does not depend on the thread count.
void conv2d_direct(const ConvDirectProblem& p, int nthreads, const ConvKernelInfo* kernel = nullptr);

}  // namespace pysparse
