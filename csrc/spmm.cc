#include "spmm.h"

#include <algorithm>
#include <atomic>
#include <new>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/simd-widths.h"
#include "parallel.h"

namespace pysparse {

namespace {

// Multiply-adds below which one more thread does not pay for its wake-up.
constexpr int64_t kMinWorkPerThread = 32 * 1024;
// A row costs something even when empty (pointer loads, horizontal sum, store).
constexpr int64_t kRowCost = 8;
// linear() with a few tokens split by W's rows: work per thread it needs (see there).
constexpr int64_t kMinRowSplitWork = 512 * 1024;
// Parts of balanced cost per thread: threads claim parts as they get to them,
// so one that starts late (a wake-up, a core busy elsewhere) takes fewer.
constexpr int64_t kPartsPerThread = 8;

int parts_for(const SparseView& w, int T) {
  return static_cast<int>(std::min<int64_t>(w.block_rows(), T * kPartsPerThread));
}

// Block rows [begin, end) for thread t of T, balanced by stored weights (plus a
// per-row cost) rather than by rows: pruned layers are far from uniform.
struct Partition {
  const SparseView& w;
  int T;
  int64_t cost(int64_t b) const {
    if (w.format == Format::nm) return b;  // every block row costs the same
    return w.ptr[b] * w.block_r * w.block_c + b * w.block_r * kRowCost;
  }
  int64_t boundary(int t) const {
    const int64_t B = w.block_rows();
    if (t <= 0) return 0;
    if (t >= T) return B;
    const int64_t target = cost(B) * t / T;
    int64_t lo = 0, hi = B;  // first b with cost(b) >= target
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (cost(mid) < target) lo = mid + 1; else hi = mid;
    }
    return lo;
  }
};

// Per calling thread, 64-byte aligned: threads that write neighbouring parts
// of it must not share a cache line because malloc returned a 16-byte offset.
thread_local std::vector<float> tl_scratch;

float* scratch(size_t floats) {
  constexpr size_t kAlignFloats = 64 / sizeof(float);
  if (tl_scratch.size() < floats + kAlignFloats) tl_scratch.resize(floats + kAlignFloats);
  const uintptr_t p = reinterpret_cast<uintptr_t>(tl_scratch.data());
  return tl_scratch.data() + ((64 - p % 64) % 64) / sizeof(float);
}

// Scratch larger than this is released after the call that needed it: one huge
// batch should not pin its buffers to the thread for good (a 1.5 GB linear
// used to keep 1.5 GB). Below it, the buffer stays for the next call.
constexpr size_t kKeepScratchFloats = size_t{4} << 20;  // 16 MiB

void trim(std::vector<float>& v) {
  if (v.capacity() > kKeepScratchFloats) std::vector<float>().swap(v);
}

// A gathered copy of a strided x column (spmm with n == 1, ldx != 1).
thread_local std::vector<float> tl_column;

float* column_scratch(int64_t floats) {
  if (tl_column.size() < static_cast<size_t>(floats)) tl_column.resize(static_cast<size_t>(floats));
  return tl_column.data();
}

}  // namespace

namespace {

// Multiply-adds (plus a per-row cost) of w at batch n: what the thread counts are measured in.
int64_t work_of(const SparseMatrix& w, int64_t n) {
  return (w.stored_values() + w.rows() * kRowCost) * std::max<int64_t>(n, 1);
}

}  // namespace

int threads_for(const SparseMatrix& w, int64_t n, int nthreads) {
  // Never more threads than the pool has: set_num_threads() is the ceiling.
  nthreads = nthreads <= 0 ? get_num_threads() : std::min(nthreads, get_num_threads());
  const int64_t work = work_of(w, n);
  const int64_t by_work = std::max<int64_t>(1, work / kMinWorkPerThread);
  const int64_t by_rows = std::max<int64_t>(1, w.block_rows());
  return static_cast<int>(std::min<int64_t>({static_cast<int64_t>(nthreads), by_work, by_rows}));
}

namespace {

const KernelInfo& kernel_for(const SparseView& v, int64_t n, const KernelInfo* forced) {
  if (forced != nullptr) return *forced;
  return select_kernel(active_isa(), v.format, v.block_r, n == 1 ? Batch::n1 : Batch::nx);
}

}  // namespace

void spmm(const SparseMatrix& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t y_rs, int64_t y_cs,
          const float* bias, int nthreads, const KernelInfo* kernel, const Epilogue& ep) {
  const SparseView& v = w.view();
  if (v.rows == 0 || n == 0) return;
  const SpmmFn fn = kernel_for(v, n, kernel).fn;
  const EpilogueFn efn = select_epilogue(active_isa());
  // Block rows [b0, b1) through the kernel, then their rows through the epilogue.
  auto run = [&](const SpmmArgs& a) {
    fn(a);
    apply_epilogue(efn, ep, y, y_rs, y_cs, a.block_begin * v.block_r, std::min(a.block_end * v.block_r, v.rows), n);
  };
  if (n == 1 && ldx != 1) {
    // The n1 kernels read x as one contiguous column: a strided column (a
    // (K, 1) view of a wider X, ldx floats apart) is gathered first. Dropping
    // ldx instead read X's first row as the column (wrong values, tested).
    float* col = column_scratch(v.cols);
    for (int64_t k = 0; k < v.cols; ++k) col[k] = x[k * ldx];
    x = col;
    ldx = 1;
  }
  const int T = threads_for(w, n, nthreads);
  SpmmArgs base{&v, 0, v.block_rows(), n, x, ldx, y, y_rs, y_cs, bias};
  if (T == 1) {
    run(base);
    trim(tl_column);
    return;
  }
  const int parts = parts_for(v, T);
  const Partition part{v, parts};
  // SELL slices write the rows of their sort window in any order: with an
  // epilogue, parts hold whole windows so a part's rows are all its own.
  const int64_t align = v.format == Format::sell && !ep.identity() ? kSellWindow / 8 : 1;
  const int64_t B = v.block_rows();
  auto boundary = [&](int t) {
    const int64_t b = part.boundary(t);
    return b >= B ? B : b / align * align;
  };
  parallel_for(parts, T, [&](int t) {
    SpmmArgs a = base;
    a.block_begin = boundary(t);
    a.block_end = boundary(t + 1);
    if (a.block_begin < a.block_end) run(a);
  });
  trim(tl_column);
}

namespace {

// Transposes src (rows x cols) into dst (cols x rows) on up to nthreads threads.
// Threads split dst by rows (src by columns, in whole cache lines), so each one
// writes its own contiguous part of dst: split by src rows, both would write
// into every line of dst (a 2-thread batch-32 linear ran 2x slower than 1).
void transpose(const float* src, int64_t rows, int64_t cols, float* dst, int nthreads) {
  constexpr int64_t kMinPerThread = 8 * 1024;
  const int T = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nthreads, rows * cols / kMinPerThread)));
  const TransposeFn fn = select_transpose(active_isa());
  const TransposeArgs base{src, cols, 0, rows, cols, dst, rows};
  if (T == 1) {
    fn(base);
    return;
  }
  constexpr int64_t kLine = 16;  // floats per cache line
  const int64_t lines = (cols + kLine - 1) / kLine;
  parallel_for(T, T, [&](int t) {
    const int64_t c0 = std::min(cols, lines * t / T * kLine), c1 = std::min(cols, lines * (t + 1) / T * kLine);
    if (c0 >= c1) return;
    TransposeArgs a = base;
    a.src = src + c0;
    a.cols = c1 - c0;
    a.dst = dst + c0 * rows;
    fn(a);
  });
}

}  // namespace

namespace {

// Columns of the widest register tile of the tile engine (spmm-nx.inl, simd-widths.h) behind
// this kernel; 0 for kernels that are not that engine (scalar, N:M). The engine tiles [0, n)
// with these from column 0 and runs the last < q columns through narrower tiles, so parts of
// n that start at multiples of q (the tail in the last part) give every column the same tile,
// hence the same sums in the same order, as one call over all of n. SELL runs each lane as a
// row of R = 1. tests/core/test_threads.py (linear over tokens) checks those bits on every
// thread count.
int64_t token_quantum(const KernelInfo& k) {
  if (k.batch != Batch::nx || k.format == Format::nm) return 0;
  const int r = k.format == Format::sell ? 1 : k.block_r;
  switch (k.isa) {
    case Isa::avx512: return widths::widest_tile<widths::Avx512>(r);
    case Isa::avx2: return widths::widest_tile<widths::Avx2>(r);
    case Isa::neon: return widths::widest_tile<widths::Neon>(r);
    default: return 0;
  }
}

}  // namespace

void linear(const SparseMatrix& w, const float* x, bool x_transposed, int64_t batch, float* y, const float* bias,
            int nthreads, const KernelInfo* kernel, const Epilogue& ep) {
  const int64_t K = w.cols(), M = w.rows();
  if (batch == 0 || M == 0) return;
  if (batch == 1) {
    spmm(w, x, 1, 1, y, 1, 1, bias, nthreads, kernel, ep);
    return;
  }
  nthreads = nthreads <= 0 ? get_num_threads() : std::min(nthreads, get_num_threads());
  const SparseView& v = w.view();
  const KernelInfo& info = kernel_for(v, batch, kernel);
  const SpmmFn fn = info.fn;
  const TransposeFn tr = select_transpose(active_isa());
  const EpilogueFn efn = select_epilogue(active_isa());
  const Epilogue act_only{ep.act, nullptr};
  int T = threads_for(w, batch, nthreads);
  const int64_t q = token_quantum(info);
  const bool by_tokens = T > 1 && !x_transposed && q > 0 && batch >= 2 * q;
  if (T > 1 && !by_tokens && !x_transposed) {
    // Split by W's rows, every thread reads all of the X^T just written and writes a strip of
    // every row of y: with 16 tokens, MiniLM's 384x384 .. 384x1536 (4, 1) layers ran 0.63-1.05x
    // of 1 thread that way on the 2-core Zen 4 VM (1536x384: 1.1-1.17x), so a few tokens take
    // a second thread only for kMinRowSplitWork of work per thread.
    T = static_cast<int>(std::min<int64_t>(T, std::max<int64_t>(1, work_of(w, batch) / kMinRowSplitWork)));
  }
  if (by_tokens) {
    // Split by tokens: each thread transposes its own rows of x, multiplies every row of W
    // with them and writes its own rows of y. Split by W's rows instead, every thread reads
    // the whole X^T that this call has just written (the other core's lines) and writes a
    // column strip of every row of y: on the 2-core Xeon VM, MiniLM's 384-row layers at 128
    // tokens ran 0.78-0.85x on 2 threads that way, 1.9-2.2x split by tokens (same bits).
    const int64_t chunks = batch / q;
    const int parts = static_cast<int>(std::min<int64_t>(T, chunks));
    std::atomic<bool> no_memory{false};
    parallel_for(parts, parts, [&](int t) {
      const int64_t j0 = chunks * t / parts * q, j1 = t + 1 == parts ? batch : chunks * (t + 1) / parts * q;
      const int64_t nb = j1 - j0;
      float* xt = nullptr;
      try {
        xt = scratch(static_cast<size_t>((K + M) * nb));
      } catch (const std::bad_alloc&) {
        no_memory = true;
        return;
      }
      float* yt = xt + K * nb;
      tr(TransposeArgs{x + j0 * K, K, 0, nb, K, xt, nb});
      fn(SpmmArgs{&v, 0, v.block_rows(), nb, xt, nb, yt, nb, 1, bias});
      apply_epilogue(efn, act_only, yt, nb, 1, 0, M, nb);
      tr(TransposeArgs{yt, nb, 0, M, nb, y + j0 * M, M});
      if (ep.residual != nullptr) {
        for (int64_t j = j0; j < j1; ++j) efn(EpilogueArgs{y + j * M, ep.residual + j * M, M, Activation::none});
      }
      trim(tl_scratch);
    });
    if (no_memory) throw std::bad_alloc();
    return;
  }
  // The kernels want X^T (K, batch) with unit stride along the batch, and write
  // rows of Y^T (M, batch) contiguously. Both transposes are O((K + M) batch),
  // small beside the O(nnz batch) product; writing Y^T straight into the
  // (batch, M) output instead would touch `batch` cache lines per row.
  float* buf = scratch(static_cast<size_t>((x_transposed ? 0 : K * batch) + M * batch));
  const float* xt = x;
  if (!x_transposed) {
    transpose(x, batch, K, buf, T);
    xt = buf;
  }
  float* yt = buf + (x_transposed ? 0 : K * batch);
  // One parallel region: each thread computes its rows of Y^T, applies the
  // activation to them and transposes them into y while they are still in its
  // own cache; the residual (batch, M) is added to those columns of y there.
  auto rows = [&](int64_t b0, int64_t b1) {
    SpmmArgs a{&v, b0, b1, batch, xt, batch, yt, batch, 1, bias};
    fn(a);
    const int64_t r0 = b0 * v.block_r, r1 = std::min(b1 * v.block_r, M);
    apply_epilogue(efn, act_only, yt, batch, 1, r0, r1, batch);
    tr(TransposeArgs{yt, batch, r0, r1, batch, y, M});
    if (ep.residual != nullptr) {  // rows of y (batch, M), columns [r0, r1)
      for (int64_t j = 0; j < batch; ++j) efn(EpilogueArgs{y + j * M + r0, ep.residual + j * M + r0, r1 - r0, Activation::none});
    }
  };
  if (T == 1) {
    rows(0, v.block_rows());
    trim(tl_scratch);
    return;
  }
  // Boundaries on whole cache lines of y's rows (16 floats), so the two sides
  // of a boundary do not write into the same line of each of `batch` rows; for
  // SELL on whole sort windows, so a thread's slices write exactly the rows
  // [b0 * 8, b1 * 8) that it transposes.
  const int parts = parts_for(v, T);
  const Partition part{v, parts};
  const int64_t align = v.format == Format::sell ? kSellWindow / 8 : std::max<int64_t>(1, 16 / v.block_r);
  const int64_t B = v.block_rows();
  auto boundary = [&](int t) {
    const int64_t b = part.boundary(t);
    return b >= B ? B : b / align * align;
  };
  parallel_for(parts, T, [&](int t) {
    const int64_t b0 = boundary(t), b1 = boundary(t + 1);
    if (b0 < b1) rows(b0, b1);
  });
  trim(tl_scratch);
}

namespace {

// Separate from scratch(): the caller's padded input stays alive while the
// caller, as task 0 of the pool, also needs a wide-output buffer.
thread_local std::vector<float> tl_padded;
thread_local std::vector<float> tl_wide;

// Wide rows computed per kernel call: their scratch (rows x n floats) should
// stay in L1/L2 until cropped.
constexpr int64_t kWideFloats = 16 * 1024;

}  // namespace

ShiftedConv ShiftedConv::make(int64_t images, int64_t channels, int64_t height, int64_t width, const int64_t kernel[2],
                              const int64_t padding[2], const int64_t dilation[2], int64_t chunk) {
  constexpr int64_t kMaxDim = int64_t{1} << 20;
  for (int i = 0; i < 2; ++i) {
    if (kernel[i] < 1 || kernel[i] > kMaxDim || dilation[i] < 1 || dilation[i] > kMaxDim || padding[i] < 0 ||
        padding[i] > kMaxDim) {
      throw std::invalid_argument("kernel_size and dilation must be in [1, 2**20] and padding in [0, 2**20]");
    }
  }
  if (chunk < 1 || chunk > kMaxDim) throw std::invalid_argument("chunk must be in [1, 2**20], got " + std::to_string(chunk));
  const ShiftedConv g{images, channels, height, width, padding[0], padding[1],
                      dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1), chunk};
  if (g.out_h() < 1 || g.out_w() < 1) {
    throw std::invalid_argument("the kernel (with dilation) is larger than the padded input: output " +
                                std::to_string(g.out_h()) + "x" + std::to_string(g.out_w()));
  }
  // As doubles first: no int64 product below may overflow.
  const double buffer = static_cast<double>(g.channels) * g.padded_h() * g.padded_w() * g.chunk + g.span_w;
  if (buffer > 1e12) throw std::invalid_argument("the padded input is too large");
  return g;
}

void ShiftedConv::check_shiftable(const SparseMatrix& w, const char* what) {
  if (block_layout(w.format()) && w.block_c() == 1) return;
  const std::string got = w.is_nm()     ? std::string("an N:M matrix")
                          : w.is_sell() ? std::string("a SELL matrix (use its to_csr())")
                                        : "a BSR matrix with " + std::to_string(w.block_r()) + "x" +
                                              std::to_string(w.block_c()) + " blocks";
  throw std::invalid_argument(std::string(what) +
                              " needs a CSR matrix or a BSR matrix with (R, 1) blocks (a block of C > 1 consecutive "
                              "columns does not map to consecutive offsets); got " + got);
}

void ShiftedConv::check_weight(const SparseMatrix& w) const {
  check_shiftable(w, "conv2d_shifted");
  if (w.cols() - 1 + wide_n() > buffer()) {
    throw std::invalid_argument("W's offsets do not fit this geometry: W has " + std::to_string(w.cols()) +
                                " columns, the padded chunk of " + std::to_string(chunk) + " image(s) holds " +
                                std::to_string(buffer()) + " floats and the wide product needs K - 1 + " +
                                std::to_string(wide_n()) + "; build W for this input size");
  }
}

void conv2d_shifted(const SparseMatrix& w, const float* x, const ShiftedConv& g, float* y, const float* bias,
                    int nthreads, const Epilogue& ep) {
  const SparseView& v = w.view();
  if (v.format == Format::sell) throw std::invalid_argument("conv2d_shifted needs CSR or BSR (R, 1), not SELL");
  const int64_t M = v.rows, C = g.channels, H = g.height, W = g.width;
  const int64_t Hp = g.padded_h(), Wp = g.padded_w(), Ho = g.out_h(), Wo = g.out_w();
  const int64_t S = g.row(), n = g.wide_n(), plane = Hp * S;
  if (g.images == 0 || M == 0) return;
  const SpmmFn fn = kernel_for(v, n, nullptr).fn;
  const EpilogueFn efn = select_epilogue(active_isa());
  const int T = threads_for(w, n, nthreads);
  const int parts = parts_for(v, T);
  const Partition part{v, parts};
  const int64_t R = v.block_r;
  const int64_t per_call = std::max<int64_t>(1, kWideFloats / (R * n));  // block rows per kernel call
  if (tl_padded.size() < static_cast<size_t>(g.buffer())) tl_padded.resize(static_cast<size_t>(g.buffer()));
  float* buf = tl_padded.data();
  for (int64_t i0 = 0; i0 < g.images; i0 += g.chunk) {
    const int64_t nb = std::min(g.chunk, g.images - i0);
    // Zero borders (and the slots of images this chunk lacks), then the images.
    std::fill(buf, buf + g.buffer(), 0.0f);
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < nb; ++i)
        for (int64_t h = 0; h < H; ++h)
          std::copy_n(x + (((i0 + i) * C + c) * H + h) * W, W, buf + c * plane + (h + g.pad_h) * S + i * Wp + g.pad_w);
    // Block rows [b0, b1): wide rows into this thread's scratch, cropped into y.
    auto rows = [&](int64_t b0, int64_t b1) {
      const int64_t cap = std::min(per_call, b1 - b0) * R * n;
      if (tl_wide.size() < static_cast<size_t>(cap)) tl_wide.resize(static_cast<size_t>(cap));
      float* wide = tl_wide.data();
      for (int64_t c0 = b0; c0 < b1; c0 += per_call) {
        const int64_t c1 = std::min(b1, c0 + per_call);
        SparseView sub = v;  // block row c0 becomes block row 0, so rows land at the top of `wide`
        sub.ptr = v.ptr + c0;
        sub.rows = v.rows - c0 * R;
        fn(SpmmArgs{&sub, 0, c1 - c0, n, buf, 1, wide, n, 1, bias == nullptr ? nullptr : bias + c0 * R});
        const int64_t r_end = std::min(c1 * R, M);
        for (int64_t r = c0 * R; r < r_end; ++r) {
          const float* src = wide + (r - c0 * R) * n;
          for (int64_t i = 0; i < nb; ++i) {
            float* dst = y + ((i0 + i) * M + r) * Ho * Wo;
            for (int64_t oh = 0; oh < Ho; ++oh) std::copy_n(src + oh * S + i * Wp, Wo, dst + oh * Wo);
            if (!ep.identity()) {  // the cropped plane, while in cache
              const int64_t off = ((i0 + i) * M + r) * Ho * Wo;
              efn(EpilogueArgs{dst, ep.residual ? ep.residual + off : nullptr, Ho * Wo, ep.act});
            }
          }
        }
      }
    };
    if (T == 1) {
      rows(0, v.block_rows());
    } else {
      parallel_for(parts, T, [&](int t) {
        const int64_t b0 = part.boundary(t), b1 = part.boundary(t + 1);
        if (b0 < b1) rows(b0, b1);
      });
    }
  }
  // A one-off huge image should not pin its buffer to this thread for good.
  trim(tl_padded);
  trim(tl_wide);
}

}  // namespace pysparse
