// The depthwise convolution driver: the kernel table from kernels-dwconv.inc,
// the choice by the active ISA, and the split of the N * C channel planes
// across the pool. Planes are independent and each sums in a fixed order, so
// the result is bitwise the same on any thread count; the count is only capped
// for calls too small to pay for waking a thread (parallel.cc: a few us).
#include "dwconv.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <new>
#include <stdexcept>

#include "parallel.h"

namespace pysparse {

namespace {

// Multiply-adds below which one more thread costs more than it saves.
constexpr int64_t kMinMacsPerThread = 64 * 1024;

// One task's scratch, per thread, kept between calls (grown, never shrunk).
// Null when it cannot be allocated (tasks run on pool workers, where an
// exception would terminate the process; the driver reports it).
float* plane_scratch(int64_t floats) {
  struct Buffer {
    std::unique_ptr<float[]> data;
    int64_t size = 0;
  };
  thread_local Buffer buf;
  if (buf.size < floats) {
    buf.data.reset(new (std::nothrow) float[static_cast<size_t>(floats)]);
    buf.size = buf.data ? floats : 0;
  }
  return buf.data.get();
}

}  // namespace

const std::vector<DwKernelInfo>& all_dw_kernels() {
  static const std::vector<DwKernelInfo> table = {
#define PYSPARSE_DW_KERNEL(name, isa) DwKernelInfo{#name, Isa::isa, &name},
#include "kernels-dwconv.inc"
#undef PYSPARSE_DW_KERNEL
  };
  return table;
}

const DwKernelInfo& select_dw_kernel(Isa isa) {
  for (;; isa = isa_fallback(isa)) {
    for (const DwKernelInfo& k : all_dw_kernels()) {
      if (k.isa == isa) return k;
    }
    if (isa == Isa::scalar) throw std::logic_error("no scalar depthwise kernel; kernels-dwconv.inc is incomplete");
  }
}

void dwconv2d(const DwConvProblem& p, int nthreads, const DwKernelInfo* kernel) {
  const int64_t planes = p.n * p.c;
  if (planes <= 0 || p.ho <= 0 || p.wo <= 0) return;
  const DwConvFn fn = (kernel ? *kernel : select_dw_kernel(active_isa())).fn;
  const int64_t scratch = dwconv_scratch_floats(p.ho, p.wo, p.kh, p.kw, p.sh, p.sw);
  const int64_t macs = planes * p.ho * p.wo * p.kh * p.kw;
  const int requested = nthreads > 0 ? nthreads : get_num_threads();
  const int threads = static_cast<int>(std::min<int64_t>({requested, planes, std::max<int64_t>(1, macs / kMinMacsPerThread)}));
  const int64_t hw = p.h * p.w_in, ohw = p.ho * p.wo, taps = p.kh * p.kw;
  std::atomic<bool> no_memory{false};
  auto run = [&](int64_t b, int64_t e) {
    float* s = plane_scratch(scratch);
    if (s == nullptr) {
      no_memory = true;
      return;
    }
    for (int64_t i = b; i < e; ++i) {
      const int64_t ch = i % p.c;
      const DwConvArgs a{p.x + i * hw, p.w + ch * taps, p.bias ? p.bias[ch] : 0.0f, p.y + i * ohw, s,
                         p.h, p.w_in, p.ho, p.wo, p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, p.act};
      fn(a);
    }
  };
  if (threads <= 1) {
    run(0, planes);
  } else {
    // A few contiguous runs of planes per thread: balanced, and neighbours share the weights' cache lines.
    const int tasks = static_cast<int>(std::min<int64_t>(planes, int64_t{4} * threads));
    parallel_for(tasks, threads, [&](int t) { run(planes * t / tasks, planes * (t + 1) / tasks); });
  }
  if (no_memory) throw std::bad_alloc();
}

}  // namespace pysparse
