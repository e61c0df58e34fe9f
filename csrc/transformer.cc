// The transformer drivers: the kernel table from kernels-transformer.inc, the
// choice by the active ISA (the same PYSPARSE_ISA / set_isa as the SpMM
// kernels: dispatch.cc), and the split of each call across the pool.
//
// No result depends on the split: layer norm rows and GELU elements are
// independent, and attention runs one task per (batch item, head, block of
// query rows), each row summing in its own fixed order whatever block it is
// in (the blocks follow the thread count). So the result is bitwise the same
// on 1, 2 or 256 threads. The thread count is only capped for calls too small to pay for a
// wake-up (parallel.cc: a few microseconds).
#include "transformer.h"

#include <algorithm>
#include <atomic>
#include <new>
#include <cstdlib>
#include <memory>
#include <stdexcept>

#include "kernels.h"
#include "parallel.h"

namespace pysparse {

namespace {

// Work (in FMAs of attention, or their equivalent) below which one more thread
// costs more than it saves: spmm.cc's threshold, about 3 us of one core.
constexpr int64_t kMinWorkPerThread = 32 * 1024;
// A float of layer norm costs about 3 such FMAs (three passes over the row:
// 0.115 us per 384-float row on one Zen 4 core, 14.8 us for MiniLM's 128
// rows, against ~0.1 ns per FMA in the kernels), so a 2-thread split starts
// at ~11k floats (28 rows of 384): seq-128 layer norms (49k floats, 13 per
// MiniLM forward) now run on 2 threads, seq 16 (6k) stays on one.
constexpr int64_t kLayerNormWorkPerFloat = 3;

int threads_for_work(int nthreads, int64_t work) {
  const int requested = nthreads > 0 ? nthreads : get_num_threads();
  const int64_t useful = std::max<int64_t>(1, work / kMinWorkPerThread);
  return static_cast<int>(std::min<int64_t>(requested, useful));
}

// parallel_for over int64 task counts (the pool takes int): rounds of 2**30.
template <class F>
void parallel_for64(int64_t n, int threads, F&& f) {
  constexpr int64_t kRound = int64_t{1} << 30;
  for (int64_t base = 0; base < n; base += kRound) {
    const int count = static_cast<int>(std::min(kRound, n - base));
    parallel_for(count, threads, [&](int t) { f(base + t); });
  }
}

// One task's attention scratch, per thread, kept between calls (grown, never
// shrunk). Null when it cannot be allocated: tasks run on pool workers, where
// an exception would terminate the process, so the caller reports it.
float* attention_scratch(int64_t floats) {
  struct Buffer {
    std::unique_ptr<float[]> data;
    int64_t size = 0;
  };
  thread_local Buffer buf;
  const int64_t need = floats + 16;  // room to align to 64 bytes
  if (buf.size < need) {
    buf.data.reset(new (std::nothrow) float[static_cast<size_t>(need)]);
    buf.size = buf.data ? need : 0;
    if (!buf.data) return nullptr;
  }
  const uintptr_t p = reinterpret_cast<uintptr_t>(buf.data.get());
  return reinterpret_cast<float*>((p + 63) & ~uintptr_t{63});
}

}  // namespace

const char* tf_op_name(TfOp op) {
  switch (op) {
    case TfOp::layernorm: return "layernorm";
    case TfOp::gelu_erf: return "gelu_erf";
    case TfOp::gelu_tanh: return "gelu_tanh";
    case TfOp::erf: return "erf";
    case TfOp::attention: return "attention";
  }
  return "?";
}

const std::vector<TfKernelInfo>& all_tf_kernels() {
  static const std::vector<TfKernelInfo> table = {
#define PYSPARSE_TF_KERNEL(name, isa, op) \
  TfKernelInfo{#name, Isa::isa, TfOp::op, reinterpret_cast<void (*)()>(&name)},
#include "kernels-transformer.inc"
#undef PYSPARSE_TF_KERNEL
  };
  return table;
}

const TfKernelInfo& select_tf_kernel(Isa isa, TfOp op) {
  for (;; isa = isa_fallback(isa)) {
    for (const TfKernelInfo& k : all_tf_kernels()) {
      if (k.op == op && k.isa == isa) return k;
    }
    if (isa == Isa::scalar) throw std::logic_error("no scalar kernel for this op; kernels-transformer.inc is incomplete");
  }
}

int64_t attention_scratch_floats(int64_t keys, int64_t dim) {
  const int64_t Tp = (keys + kAttentionPad - 1) / kAttentionPad * kAttentionPad;
  const int64_t Dp = (dim + kAttentionPad - 1) / kAttentionPad * kAttentionPad;
  return dim * Tp + keys * Dp + Tp + 4 * Tp;
}

void layer_norm(const LayerNormArgs& a, int nthreads, const TfKernelInfo* kernel) {
  if (a.rows <= 0 || a.cols <= 0) return;
  const LayerNormFn fn = tf_kernel<TfOp::layernorm>(kernel ? *kernel : select_tf_kernel(active_isa(), TfOp::layernorm));
  const int threads = threads_for_work(nthreads, a.rows * a.cols * kLayerNormWorkPerFloat);
  if (threads <= 1) {
    fn(a);
    return;
  }
  const int64_t tasks = std::min<int64_t>(a.rows, int64_t{4} * threads);
  parallel_for64(tasks, threads, [&](int64_t t) {
    const int64_t r0 = a.rows * t / tasks, r1 = a.rows * (t + 1) / tasks;
    LayerNormArgs part = a;
    part.x = a.x + r0 * a.ldx;
    if (a.res != nullptr) part.res = a.res + r0 * a.ldr;
    part.y = a.y + r0 * a.ldy;
    part.rows = r1 - r0;
    fn(part);
  });
}

void elementwise(TfOp op, const ElementwiseArgs& a, int nthreads, const TfKernelInfo* kernel) {
  if (a.n <= 0) return;
  if (op != TfOp::gelu_erf && op != TfOp::gelu_tanh && op != TfOp::erf) {
    throw std::logic_error("elementwise: not an elementwise op");
  }
  const TfKernelInfo& k = kernel ? *kernel : select_tf_kernel(active_isa(), op);
  const ElementwiseFn fn = reinterpret_cast<ElementwiseFn>(k.fn);
  const int threads = threads_for_work(nthreads, a.n * 4);  // ~20 flops per element
  if (threads <= 1) {
    fn(a);
    return;
  }
  constexpr int64_t kChunk = 4096;  // floats; a multiple of every vector width
  const int64_t tasks = (a.n + kChunk - 1) / kChunk;
  parallel_for64(tasks, threads, [&](int64_t t) {
    const int64_t i0 = t * kChunk, i1 = std::min(a.n, i0 + kChunk);
    fn(ElementwiseArgs{a.x + i0, a.y + i0, i1 - i0});
  });
}

void attention(const AttentionProblem& p, int nthreads, const TfKernelInfo* kernel) {
  if (p.batch <= 0 || p.queries <= 0 || p.heads <= 0) return;
  const AttentionFn fn = tf_kernel<TfOp::attention>(kernel ? *kernel : select_tf_kernel(active_isa(), TfOp::attention));
  // work in FMAs: 2 products of queries x keys x dim per head, capped against overflow
  const double fmas = 2.0 * static_cast<double>(p.batch * p.heads) * static_cast<double>(p.queries) *
                      static_cast<double>(p.keys) * static_cast<double>(p.dim);
  const int threads = threads_for_work(nthreads, static_cast<int64_t>(std::min(fmas, 1e18)));
  // Query rows per task: a whole head when there are heads enough for a few
  // tasks per thread (each task transposes its head's K once: MiniLM's 12
  // heads on 1 or 2 threads run 12 tasks, not 24 with K copied twice), else
  // blocks of at least kAttentionRowBlock rows until there are about 4 tasks
  // per thread. The split depends on the thread count; no row's result does.
  const int64_t heads_total = p.batch * p.heads;
  const int64_t want_tasks = int64_t{4} * threads;
  const int64_t want = heads_total >= want_tasks ? 1 : (want_tasks + heads_total - 1) / heads_total;
  const int64_t rows_per_task = std::max(kAttentionRowBlock, (p.queries + want - 1) / want);
  const int64_t blocks = (p.queries + rows_per_task - 1) / rows_per_task;
  const int64_t tasks = p.batch * p.heads * blocks;
  const int64_t scratch = attention_scratch_floats(p.keys, p.dim);
  std::atomic<bool> out_of_memory{false};
  parallel_for64(tasks, threads, [&](int64_t t) {
    const int64_t blk = t % blocks, bh = t / blocks, h = bh % p.heads, b = bh / p.heads;
    const int64_t i0 = blk * rows_per_task;
    AttentionArgs a;
    a.q = p.q + b * p.q_b + i0 * p.q_s + h * p.dim;
    a.ldq = p.q_s;
    a.k = p.k + b * p.k_b + h * p.dim;
    a.ldk = p.k_s;
    a.v = p.v + b * p.v_b + h * p.dim;
    a.ldv = p.v_s;
    a.mask = p.mask != nullptr ? p.mask + b * p.m_b : nullptr;
    a.out = p.out + b * p.o_b + i0 * p.o_s + h * p.dim;
    a.ldo = p.o_s;
    a.rows = std::min(rows_per_task, p.queries - i0);
    a.keys = p.keys;
    a.dim = p.dim;
    a.scale = p.scale;
    a.scratch = attention_scratch(scratch);
    if (a.scratch == nullptr) {
      out_of_memory.store(true, std::memory_order_relaxed);
      return;
    }
    fn(a);
  });
  if (out_of_memory.load()) throw std::bad_alloc();
}

}  // namespace pysparse
