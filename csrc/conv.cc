// The direct dense convolution driver: the kernel table from kernels-conv.inc,
// the choice by the active ISA, the fill of the padded input planes and the
// split of (output channel block, row band) tasks across the pool. Every
// output sums in a fixed order inside one task, so the result is bitwise the
// same on any thread count; the count is capped for calls too small to pay
// for waking a thread (parallel.cc: a few us).
#include "conv.h"

#include <algorithm>
#include <memory>
#include <new>
#include <stdexcept>

#include "kernels/dwconv.inl"  // dwconv_fill: the padded, phase-split planes the kernels read
#include "parallel.h"

namespace pysparse {

namespace {

// Multiply-adds below which one more thread costs more than it saves (as dwconv.cc).
constexpr int64_t kMinMacsPerThread = 64 * 1024;

// The padded planes of one image, kept between calls on the calling thread (grown, never shrunk).
float* planes_buffer(int64_t floats) {
  struct Buffer {
    std::unique_ptr<float[]> data;
    int64_t size = 0;
  };
  thread_local Buffer buf;
  if (buf.size < floats) {
    buf.data.reset();
    buf.data.reset(new float[static_cast<size_t>(floats)]);  // std::bad_alloc on failure, before any task runs
    buf.size = floats;
  }
  return buf.data.get();
}

}  // namespace

const std::vector<ConvKernelInfo>& all_conv_kernels() {
  static const std::vector<ConvKernelInfo> table = {
#define PYSPARSE_CONV_KERNEL(name, isa) ConvKernelInfo{#name, Isa::isa, &name},
#include "kernels-conv.inc"
#undef PYSPARSE_CONV_KERNEL
  };
  return table;
}

const ConvKernelInfo& select_conv_kernel(Isa isa) {
  for (;; isa = isa_fallback(isa)) {  // the next rung down when this ISA has no stem kernel (avx512 -> avx2)
    for (const ConvKernelInfo& k : all_conv_kernels()) {
      if (k.isa == isa) return k;
    }
    if (isa == Isa::scalar) throw std::logic_error("no scalar direct conv kernel; kernels-conv.inc is incomplete");
  }
}

void conv2d_direct(const ConvDirectProblem& p, int nthreads, const ConvKernelInfo* kernel) {
  if (p.n <= 0 || p.cout <= 0 || p.ho <= 0 || p.wo <= 0) return;
  const ConvDirectFn fn = (kernel ? *kernel : select_conv_kernel(active_isa())).fn;
  const int64_t L = dwconv_phase_len(p.wo, p.kw, p.sw);
  const int64_t plane = dwconv_scratch_floats(p.ho, p.wo, p.kh, p.kw, p.sh, p.sw);
  float* scratch = planes_buffer(std::max<int64_t>(1, p.cin * plane));
  const int64_t k = p.cin * p.kh * p.kw, hw = p.h * p.w_in, ohw = p.ho * p.wo;
  const int64_t blocks = (p.cout + kConvOcBlock - 1) / kConvOcBlock;
  const int64_t macs = p.cout * ohw * k;
  const int requested = nthreads > 0 ? nthreads : get_num_threads();
  const int threads = static_cast<int>(std::min<int64_t>({requested, blocks * p.ho, std::max<int64_t>(1, macs / kMinMacsPerThread)}));
  // A few tasks per thread: whole channel blocks first (each reads its weights once), row bands
  // when there are fewer blocks than that.
  const int64_t bands = std::min<int64_t>(p.ho, std::max<int64_t>(1, (int64_t{4} * threads + blocks - 1) / blocks));
  const int64_t tasks = blocks * bands;
  for (int64_t img = 0; img < p.n; ++img) {
    const float* x = p.x + img * p.cin * hw;
    float* y = p.y + img * p.cout * ohw;
    auto fill = [&](int64_t ci) {
      const DwConvArgs f{x + ci * hw, nullptr, 0.0f, nullptr, scratch + ci * plane,
                         p.h, p.w_in, p.ho, p.wo, p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, p.act};
      dwconv_fill(f, L);
    };
    auto task = [&](int64_t t) {
      const int64_t b = t / bands, band = t % bands;
      const int64_t o0 = b * kConvOcBlock, oc = std::min<int64_t>(kConvOcBlock, p.cout - o0);
      const ConvDirectArgs a{scratch, plane, L, p.w + o0 * k, p.bias ? p.bias + o0 : nullptr, y + o0 * ohw,
                             oc, p.cin, p.kh, p.kw, p.sh, p.sw,
                             p.ho * band / bands, p.ho * (band + 1) / bands, p.ho, p.wo, p.act};
      fn(a);
    };
    if (threads <= 1) {
      for (int64_t ci = 0; ci < p.cin; ++ci) fill(ci);
      for (int64_t t = 0; t < tasks; ++t) task(t);
    } else {
      parallel_for(static_cast<int>(p.cin), threads, [&](int ci) { fill(ci); });
      parallel_for(static_cast<int>(tasks), threads, [&](int t) { task(t); });
    }
  }
}

}  // namespace pysparse
