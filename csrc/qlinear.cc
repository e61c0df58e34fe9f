#include "qlinear.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>
#include <vector>

#include "kernels.h"
#include "parallel.h"
#include "qkernels.h"

namespace pysparse {

namespace {

// int8 multiply-adds below which one more thread does not pay for its wake-up
// (four times the f32 figure: a vpdpbusd does 32 of them).
constexpr int64_t kMinQWorkPerThread = 128 * 1024;
constexpr int64_t kPartsPerThread = 8;
constexpr int64_t kRowCost = 32;
// The row split of a batch > 1 (below): work per thread it needs to pay, and activations
// (tokens x columns) per thread for a parallel quantization.
constexpr int64_t kMinRowSplitQWork = 2 * 1024 * 1024;
constexpr int64_t kMinQuantizePerThread = 32 * 1024;

thread_local std::vector<int8_t> tl_xq;
thread_local std::vector<float> tl_floats;

template <class T>
T* grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

void trim_all() {
  constexpr size_t kKeep = size_t{16} << 20;
  if (tl_xq.capacity() > kKeep) std::vector<int8_t>().swap(tl_xq);
  if (tl_floats.capacity() * sizeof(float) > kKeep) std::vector<float>().swap(tl_floats);
}

struct Costs {
  const QView& w;
  int64_t cost(int64_t b) const { return w.begin(b) * w.block_r * 4 + b * w.block_r * kRowCost; }
  int64_t boundary(int t, int T) const {
    const int64_t B = w.block_rows();
    if (t <= 0) return 0;
    if (t >= T) return B;
    const int64_t target = cost(B) * t / T;
    int64_t lo = 0, hi = B;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (cost(mid) < target) lo = mid + 1; else hi = mid;
    }
    return lo;
  }
};

int64_t work_of(const QView& w, int64_t batch) {
  return (w.nblocks * w.block_r * 4 + w.rows * kRowCost) * std::max<int64_t>(batch, 1);
}

int threads_for(const QView& w, int64_t batch, int nthreads) {
  nthreads = nthreads <= 0 ? get_num_threads() : std::min(nthreads, get_num_threads());
  const int64_t work = work_of(w, batch);
  return static_cast<int>(std::min<int64_t>(
      {static_cast<int64_t>(nthreads), std::max<int64_t>(1, work / kMinQWorkPerThread),
       std::max<int64_t>(1, w.block_rows())}));
}

}  // namespace

void qs8_quantize(const float* x, int64_t ldx, int64_t batch, int64_t cols, int64_t stride, int8_t* xq, float* scale,
                  QIsa isa, int32_t flip) {
  const int64_t groups = (cols + 3) / 4;
  select_quantize(isa)(QuantizeArgs{x, ldx, 0, batch, stride, cols, groups, xq, scale, flip});
}

void qlinear(const QMatrix& w, const float* x, int64_t ldx, int64_t batch, float* y, const float* bias, bool relu,
             int nthreads, const QKernelInfo* kernel, const Epilogue& ep) {
  const QView& v = w.view();
  const int64_t M = v.rows, G = v.groups;
  if (batch == 0 || M == 0) return;
  const QIsa isa = kernel != nullptr ? kernel->isa : active_qisa();
  // Wide batches: the ISA's nt kernel (token tiles, Y written in place) when it has one.
  const QKernelInfo* nt = nullptr;
  if (batch > 1) nt = kernel != nullptr ? (kernel->batch == QBatch::nt ? kernel : nullptr)
                                        : find_nt_qkernel(isa, v.format, v.block_r);
  const QBatch kind = batch == 1 ? QBatch::n1 : QBatch::nx;
  const QKernelFn fn = nt != nullptr ? nt->fn
                       : kernel != nullptr ? kernel->fn : select_qkernel(isa, v.format, v.block_r, kind).fn;
  const int T = threads_for(v, batch, nthreads);
  const int32_t flip = qisa_flips_input(isa) ? 0x80 : 0;
  const QuantizeFn quant = select_quantize(isa);
  const TransposeFn tr = select_transpose(active_isa());
  const EpilogueFn efn = ep.identity() ? nullptr : select_epilogue(active_isa());
  const int64_t B = v.block_rows();
  // Tokens [j0, j0 + n) of x, quantized into the calling thread's buffers: activation tiles
  // of `tile` rows (kQTile for nt, one tile of the padded batch for nx), their scales and,
  // for the nx path, Y^T (M x npad).
  struct Act {
    int64_t j0, n, npad;
    int8_t* xq;
    float* xs;
    float* yt;
  };
  auto quantize = [&](int64_t j0, int64_t n, int threads) {
    const int64_t tile = n == 1 ? 1 : nt != nullptr ? kQTile : (n + 7) / 8 * 8;
    const int64_t npad = (n + tile - 1) / tile * tile;
    int8_t* xq = grow(tl_xq, static_cast<size_t>(G * npad * 4 + kQValuePad));
    float* xs = grow(tl_floats, static_cast<size_t>(npad + (n == 1 || nt != nullptr ? 0 : M * npad)));
    if (npad != n) {  // the padding rows of the last tile: zero activations, scale 0
      std::memset(xq + (npad - tile) * G * 4, nt != nullptr ? flip : 0, static_cast<size_t>(G * tile * 4));
      std::fill(xs + n, xs + npad, 0.0f);
    }
    std::memset(xq + G * npad * 4, 0, static_cast<size_t>(kQValuePad));
    const QuantizeArgs qa{x + j0 * ldx, ldx, 0, n, tile, v.cols, G, xq, xs, flip};
    // A few tokens quantize faster on the calling thread than a fork-join costs.
    const int Tq = static_cast<int>(
        std::min<int64_t>({static_cast<int64_t>(threads), n, std::max<int64_t>(1, n * v.cols / kMinQuantizePerThread)}));
    if (Tq <= 1) {
      quant(qa);
    } else {
      parallel_for(Tq, Tq, [&](int t) {
        QuantizeArgs a = qa;
        a.row_begin = n * t / Tq;
        a.row_end = n * (t + 1) / Tq;
        quant(a);
      });
    }
    return Act{j0, n, npad, xq, xs, xs + npad};
  };
  // The epilogue on tokens [t0, t1) x output features [r0, r1) of y (batch x M).
  auto finish = [&](int64_t t0, int64_t t1, int64_t r0, int64_t r1) {
    if (efn == nullptr) return;
    Epilogue e = ep;
    if (e.residual != nullptr) e.residual += r0;
    apply_epilogue(efn, e, y + r0, M, 1, t0, t1, r1 - r0);
  };
  // Token chunks of the nt path: the outputs of one chunk are still in cache for the epilogue.
  constexpr int64_t kChunk = 2 * kQTile;
  // Block rows [b0, b1) of W times the tokens of a.
  auto rows = [&](const Act& a, int64_t b0, int64_t b1) {
    const int64_t r0 = b0 * v.block_r, r1 = std::min(b1 * v.block_r, M);
    const int64_t G4 = G * 4;
    float* ya = y + a.j0 * M;
    if (a.n == 1) {
      fn(QArgs{&v, b0, b1, 1, a.xq, a.xs, ya, 1, 1, bias, relu ? 1 : 0, 0});
      finish(a.j0, a.j0 + 1, r0, r1);
    } else if (nt != nullptr) {
      for (int64_t j = 0; j < a.n; j += kChunk) {
        const int64_t n = std::min(kChunk, a.n - j);
        fn(QArgs{&v, b0, b1, n, a.xq + j * G4, a.xs + j, ya + j * M, 1, M, bias, relu ? 1 : 0, 0});
        finish(a.j0 + j, a.j0 + j + n, r0, r1);
      }
    } else {
      fn(QArgs{&v, b0, b1, a.npad, a.xq, a.xs, a.yt, a.npad, 1, bias, relu ? 1 : 0, 0});
      tr(TransposeArgs{a.yt, a.npad, r0, r1, a.n, ya, M});
      finish(a.j0, a.j0 + a.n, r0, r1);
    }
  };
  // Several threads and at least two activation tiles per thread (a batch 8 tokens apart for
  // nx, kQTile for nt): split by tokens. Each thread quantizes its own tokens, multiplies every
  // row of W with them and writes its own rows of y, as linear() does in f32 (spmm.cc): split by
  // W's rows, every thread reads all of x's activations, quantized by both cores. The int32
  // sums and the per-element dequantization do not depend on the split: the same bits.
  const int64_t quantum = nt != nullptr ? kQTile : 8;
  if (T > 1 && batch >= 2 * quantum) {
    const int64_t chunks = batch / quantum;
    const int parts = static_cast<int>(std::min<int64_t>(T, chunks));
    std::atomic<bool> no_memory{false};
    parallel_for(parts, parts, [&](int t) {
      const int64_t j0 = chunks * t / parts * quantum, j1 = t + 1 == parts ? batch : chunks * (t + 1) / parts * quantum;
      try {
        rows(quantize(j0, j1 - j0, 1), 0, B);
      } catch (const std::bad_alloc&) {
        no_memory = true;
      }
      trim_all();
    });
    if (no_memory) throw std::bad_alloc();
    return;
  }
  // Split by W's rows, every thread reads every quantized token (written by the caller) and
  // writes a strip of every row of y: at MiniLM's sizes with 16 tokens that lost on 2 threads
  // (384x384 .. 1536x384, 2-core Zen 4 VM: 0.26-0.98x of 1 thread), so a batch > 1 takes a
  // second thread only for kMinRowSplitQWork of work per thread.
  const int Tr = batch == 1 ? T
                             : std::min<int>(T, static_cast<int>(std::max<int64_t>(1, work_of(v, batch) / kMinRowSplitQWork)));
  const Act a = quantize(0, batch, Tr);
  if (Tr == 1) {
    rows(a, 0, B);
    trim_all();
    return;
  }
  const int parts = static_cast<int>(std::min<int64_t>(B, Tr * kPartsPerThread));
  const Costs costs{v};
  // Whole cache lines of y's rows on each side of a boundary (16 floats).
  const int64_t align = std::max(1, 16 / v.block_r);
  auto boundary = [&](int t) {
    const int64_t b = costs.boundary(t, parts);
    return b >= B ? B : b / align * align;
  };
  parallel_for(parts, Tr, [&](int t) {
    const int64_t b0 = boundary(t), b1 = boundary(t + 1);
    if (b0 < b1) rows(a, b0, b1);
  });
  trim_all();
}

}  // namespace pysparse
