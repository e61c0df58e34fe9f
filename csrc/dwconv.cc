// The depthwise convolution driver: the kernel table from kernels-dwconv.inc,
// the choice by the active ISA and the shape (engine), and the split of the
// channel planes (or blocks of 8) across the pool. Units are independent and each sums in a fixed order, so
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

DwKernelInfo dw_kernel_info(const char* name, Isa isa, int, DwConvFn fn) {
  return {name, isa, DwEngine::planes, 1, fn, nullptr};
}
DwKernelInfo dw_kernel_info(const char* name, Isa isa, int channels, DwBlockFn fn) {
  return {name, isa, DwEngine::blocked, channels, nullptr, fn};
}

// The one split of a call's independent units (planes, or blocks of 8 channels and the planes
// left over) across the pool: body(i, scratch) for every unit i < units, each task with its
// thread's scratch of `floats`. Threads: as asked, at most one per unit and one per
// kMinMacsPerThread of the call's `macs`.
template <class Body>
void split_units(int64_t units, int64_t macs, int nthreads, int64_t floats, const Body& body) {
  const int requested = nthreads > 0 ? nthreads : get_num_threads();
  const int threads = static_cast<int>(std::min<int64_t>({requested, units, std::max<int64_t>(1, macs / kMinMacsPerThread)}));
  std::atomic<bool> no_memory{false};
  auto run = [&](int64_t b, int64_t e) {
    float* s = plane_scratch(floats);
    if (s == nullptr) {
      no_memory = true;
      return;
    }
    for (int64_t i = b; i < e; ++i) body(i, s);
  };
  if (threads <= 1) {
    run(0, units);
  } else {
    // A few contiguous runs of units per thread: balanced, and neighbours share the weights' cache lines.
    const int tasks = static_cast<int>(std::min<int64_t>(units, int64_t{4} * threads));
    parallel_for(tasks, threads, [&](int t) { run(units * t / tasks, units * (t + 1) / tasks); });
  }
  if (no_memory) throw std::bad_alloc();
}

}  // namespace

const std::vector<DwKernelInfo>& all_dw_kernels() {
  static const std::vector<DwKernelInfo> table = {
#define PYSPARSE_DW_KERNEL(name, isa, engine, channels) dw_kernel_info(#name, Isa::isa, channels, &name),
#include "kernels-dwconv.inc"
#undef PYSPARSE_DW_KERNEL
  };
  return table;
}

const DwKernelInfo& select_dw_kernel(Isa isa, DwEngine engine) {
  if (engine == DwEngine::automatic) throw std::logic_error("select_dw_kernel: resolve the engine first");
  for (;; isa = isa_fallback(isa)) {
    for (const DwKernelInfo& k : all_dw_kernels()) {
      if (k.isa == isa && k.engine == engine) return k;
    }
    if (isa == Isa::scalar) throw std::logic_error("no scalar depthwise kernel; kernels-dwconv.inc is incomplete");
  }
}

DwEngine dwconv_auto_engine(const DwConvProblem& p) {
  // Measured (3x3 pad 1 relu6, c 16 and 96, square inputs 7..224, 1 thread, medians of 7
  // interleaved rounds, A/A pair within 1-3%, Xeon at load ~3 on 2 cores), blocked / planes time:
  //   stride 2, every size:        AVX-512 0.18-0.94, AVX2 0.28-0.80 (the planes fill gathers)
  //   stride 1, 7x7 .. 28x28:      AVX-512 0.32-0.59, AVX2 0.40-0.73
  //   stride 1, 56x56:             AVX-512 0.78-0.90, AVX2 0.94-1.00
  //   stride 1, 112x112:           AVX-512 0.86-0.94, AVX2 0.99-1.05
  //   stride 1, 160x160, 224x224:  AVX-512 1.29-1.50, AVX2 0.91-1.25
  // (an earlier run at load ~7 had stride 1 at 56x56 already 1.04-1.09 on AVX2: a tie there).
  // Past ~128x128 the planes engine's full-width rows win: its fill is a small part and the
  // blocked engine's two transposes are not. So: blocked for every stride 2 plane, and at stride 1
  // up to 128x128 outputs; planes when there is no block of 8 channels.
  if (p.c < kDwBlock) return DwEngine::planes;
  if (p.sh > 1 || p.sw > 1) return DwEngine::blocked;
  return p.ho * p.wo <= 128 * 128 ? DwEngine::blocked : DwEngine::planes;
}

void dwconv2d(const DwConvProblem& p, int nthreads, const DwKernelInfo* kernel, DwEngine engine) {
  if (p.n * p.c <= 0 || p.ho <= 0 || p.wo <= 0) return;
  if (kernel == nullptr) {
    kernel = &select_dw_kernel(active_isa(), engine == DwEngine::automatic ? dwconv_auto_engine(p) : engine);
    // blocks wider than the channels (AVX-512's 16 for 8..15 channels): the next ISA down's
    // narrower blocks, if it has them (never a narrower ISA for the same width)
    while (kernel->channels > p.c && kernel->isa != Isa::scalar) {
      const DwKernelInfo& down = select_dw_kernel(isa_fallback(kernel->isa), kernel->engine);
      if (down.channels >= kernel->channels) break;
      kernel = &down;
    }
  }
  const int64_t hw = p.h * p.w_in, ohw = p.ho * p.wo, taps = p.kh * p.kw;
  const int64_t macs = p.n * p.c * ohw * taps;
  const int64_t plane_floats = dwconv_scratch_floats(p.ho, p.wo, p.kh, p.kw, p.sh, p.sw);
  auto plane = [&](const DwConvFn fn, int64_t img, int64_t ch, float* s) {
    const int64_t i = img * p.c + ch;
    fn(DwConvArgs{p.x + i * hw, p.w + ch * taps, p.bias ? p.bias[ch] : 0.0f, p.y + i * ohw, s, p.h, p.w_in, p.ho,
                  p.wo, p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, p.act});
  };
  if (kernel->engine == DwEngine::planes) {
    const DwConvFn fn = kernel->fn;
    split_units(p.n * p.c, macs, nthreads, plane_floats, [&](int64_t i, float* s) { plane(fn, i / p.c, i % p.c, s); });
    return;
  }
  // Blocked: per image, c / cb blocks of cb channels, then the c % cb channels left as planes
  // (the planes kernel of the same ISA, or the one it falls back to: the same sums in the same order).
  const DwBlockFn block = kernel->block;
  const DwConvFn fn = select_dw_kernel(kernel->isa, DwEngine::planes).fn;
  const int64_t cb = kernel->channels, blocks = p.c / cb, rest = p.c % cb, per = blocks + rest;
  const int64_t floats = std::max(dwconv_blocked_scratch_floats(p.ho, p.wo, p.w_in, p.kh, p.kw, p.sh, p.pw, cb),
                                  rest > 0 ? plane_floats : 0);
  split_units(p.n * per, macs, nthreads, floats, [&](int64_t u, float* s) {
    const int64_t img = u / per, j = u % per;
    if (j >= blocks) return plane(fn, img, blocks * cb + (j - blocks), s);
    const int64_t ch = j * cb, i = img * p.c + ch;
    block(DwBlockArgs{p.x + i * hw, p.w + ch * taps, p.bias ? p.bias + ch : nullptr, p.y + i * ohw, s, p.h, p.w_in,
                      p.ho, p.wo, p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, p.act});
  });
}

}  // namespace pysparse
