// Multi-head attention for one (batch item, head, block of query rows), over
// vector traits: scores = q k^T * scale + mask, softmax, context = p v, all in
// the task's scratch, so scores never go to memory the caller sees.
//
// Layout (all in `scratch`, sizes rounded up to kAttentionPad = 16 floats, the
// widest vector (AVX-512), so the scratch size does not depend on the ISA):
//   kt  [dim][Tp]  K^T: keys along a row, so one vector holds the scores of
//                  `width` keys and q's elements are broadcast: dim FMAs per
//                  vector of scores, no horizontal sums. Keys past T are 0.
//   vp  [T][Dp]    V with rows padded to whole vectors (zeros), so context
//                  rows are whole vectors for any head dim (17, 3, 1 ...);
//                  unused (V read in place) when dim is a multiple of 16
//                  and V's rows are packed (ldv == dim).
//   mp  [Tp]       the mask, padded with 0.
//   sc  [4][Tp]    the score / probability rows of 4 query rows.
// Copying K (through the ISA's 8x8 register transpose) and V costs dim * T per
// task against 2 rows * T * dim * 2 FLOPs; a task has at least
// kAttentionRowBlock (32) query rows (or all of them), a whole head when there
// are enough heads to go round the threads (transformer.cc).
//
// Scores: 4 query rows x 2 vectors of keys per step (8 independent FMA chains,
// each K^T vector loaded once for 4 rows; 4 vectors on AVX-512: attention_scores). Softmax: row max (keys past T are
// -inf), exp(s - max) (vmath.inl), sum; the context is accumulated with the
// unnormalised weights and multiplied by 1 / sum at the end. Context: 4 rows x
// 2 vectors of the head dim per pass over the keys (attention_context_rows).
//
// Masks and non-finite values, as torch: a finite large negative mask (Hugging
// Face's finfo.min) on every key leaves equal scores, so the row is uniform; a
// row whose scores are all -inf (a -inf mask on every key) gives zeros, as
// torch's scaled_dot_product_attention does, not NaN; a NaN score makes the
// row's sum NaN, so the whole row is NaN (NaN in q: its row; in k: every row;
// in v: that column of every row); +inf scores give NaN (inf - inf), as torch.
//
// Contract: no alignment of q/k/v/out; reads q rows [0, rows) x [0, dim), k/v
// rows [0, T) x [0, dim), mask [0, T); writes out rows [0, rows) x [0, dim)
// only. keys >= 1, dim >= 1.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "kernels.h"
#include "kernels/vmath.inl"

namespace pysparse {
namespace {

inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Accumulator vectors a register tile may hold: the traits' kTileAcc (simd-*.h:
// 8 of AVX2's and NEON's 16 registers, 16 of AVX-512's 32), 8 for traits
// without one (the scalar twin).
template <class M, class = void>
struct TileAcc {
  static constexpr int value = 8;
};
template <class M>
struct TileAcc<M, std::void_t<decltype(M::kTileAcc)>> {
  static constexpr int value = M::kTileAcc;
};

// Scores of NR query rows (q_r at q + r * ldq) against keys [j, j + NC * W).
template <class M, int NR, int NC>
void attention_score_tile(const AttentionArgs& a, const float* kt, const float* mp, int64_t Tp, const float* q,
                          float* sc, int64_t j) {
  using V = typename M::V;
  constexpr int64_t W = M::kWidth;
  V acc[NR][NC];
  for (int r = 0; r < NR; ++r)
    for (int c = 0; c < NC; ++c) acc[r][c] = M::zero();
  for (int64_t d = 0; d < a.dim; ++d) {
    V kv[NC];
    for (int c = 0; c < NC; ++c) kv[c] = M::load(kt + d * Tp + j + c * W);
    for (int r = 0; r < NR; ++r) {
      const V qd = M::broadcast(q + r * a.ldq + d);
      for (int c = 0; c < NC; ++c) acc[r][c] = M::fma(qd, kv[c], acc[r][c]);
    }
  }
  const V scale = M::set1(a.scale);
  for (int c = 0; c < NC; ++c) {
    const V m = M::load(mp + j + c * W);
    for (int r = 0; r < NR; ++r) M::store(sc + r * Tp + j + c * W, M::fma(acc[r][c], scale, m));
  }
}

// Scores of NR query rows against all Tp keys into sc: 4 rows x 2 vectors of
// keys per step on AVX2 / NEON (8 accumulators), 4 x 4 on AVX-512 (16 of its 32
// registers: twice the FMAs per broadcast of q and enough independent chains
// to cover the FMA latency at 16 lanes), then 2- and 1-vector steps for the
// rest. Each score sums over d in the same order whatever its tile: the same
// bits as any other blocking.
template <class M, int NR>
void attention_scores(const AttentionArgs& a, const float* kt, const float* mp, int64_t Tp, const float* q,
                      float* sc) {
  constexpr int64_t W = M::kWidth;
  constexpr int NC = TileAcc<M>::value / 4 > 2 ? TileAcc<M>::value / 4 : 2;
  int64_t j = 0;
  for (; j + NC * W <= Tp; j += NC * W) attention_score_tile<M, NR, NC>(a, kt, mp, Tp, q, sc, j);
  if (NC > 2)
    for (; j + 2 * W <= Tp; j += 2 * W) attention_score_tile<M, NR, 2>(a, kt, mp, Tp, q, sc, j);
  for (; j < Tp; j += W) attention_score_tile<M, NR, 1>(a, kt, mp, Tp, q, sc, j);
}

// sc row -> exp(s - max) in place; returns the factor the context is scaled by
// (1 / sum; 0 for a row of -inf scores; NaN for a NaN sum).
template <class M>
float attention_softmax(float* s, int64_t T, int64_t Tp) {
  using V = typename M::V;
  constexpr int64_t W = M::kWidth;
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t j = T; j < Tp; ++j) s[j] = ninf;
  V mx0 = M::set1(ninf), mx1 = mx0;
  int64_t j = 0;
  for (; j + 2 * W <= Tp; j += 2 * W) {
    mx0 = M::max(M::load(s + j), mx0);
    mx1 = M::max(M::load(s + j + W), mx1);
  }
  for (; j < Tp; j += W) mx0 = M::max(M::load(s + j), mx0);
  float mx = M::hmax(M::max(mx0, mx1));
  if (mx == ninf) mx = 0.0f;  // every score -inf: weights exp(-inf) = 0, the sum 0
  const V mv = M::set1(mx);
  V s0 = M::zero(), s1 = M::zero();
  for (j = 0; j + 2 * W <= Tp; j += 2 * W) {
    const V e0 = exp_nonpositive<M>(M::sub(M::load(s + j), mv));
    const V e1 = exp_nonpositive<M>(M::sub(M::load(s + j + W), mv));
    M::store(s + j, e0);
    M::store(s + j + W, e1);
    s0 = M::add(s0, e0);
    s1 = M::add(s1, e1);
  }
  for (; j < Tp; j += W) {
    const V e0 = exp_nonpositive<M>(M::sub(M::load(s + j), mv));
    M::store(s + j, e0);
    s0 = M::add(s0, e0);
  }
  const float sum = M::hsum(M::add(s0, s1));
  if (sum == 0.0f) return 0.0f;
  return 1.0f / sum;  // NaN for a NaN sum; sum >= 1 otherwise (the max's own weight)
}

// out rows r < NR (at out + r * ldo) = inv[r] * sum_j p[r][j] vp[j], columns
// [c0, c0 + NC * W) of Dp; only the first dim columns are written. V row j at
// vp + j * ldv (the padded copy, or V itself when dim is a whole number of
// kAttentionPad vectors).
template <class M, int NR, int NC>
void attention_context(const AttentionArgs& a, const float* vp, int64_t ldv, const float* p, int64_t Tp,
                       const float* inv, int64_t c0, float* out) {
  using V = typename M::V;
  constexpr int64_t W = M::kWidth;
  V acc[NR][NC];
  for (int r = 0; r < NR; ++r)
    for (int c = 0; c < NC; ++c) acc[r][c] = M::zero();
  const int64_t T = a.keys;
  for (int64_t j = 0; j < T; ++j) {
    V vv[NC];
    for (int c = 0; c < NC; ++c) vv[c] = M::load(vp + j * ldv + c0 + c * W);
    for (int r = 0; r < NR; ++r) {
      const V pj = M::broadcast(p + r * Tp + j);
      for (int c = 0; c < NC; ++c) acc[r][c] = M::fma(pj, vv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < NR; ++r) {
    const V iv = M::set1(inv[r]);
    for (int c = 0; c < NC; ++c) {
      const int64_t col = c0 + c * W;
      const V y = M::mul(acc[r][c], iv);
      if (col + W <= a.dim) {
        M::store(out + r * a.ldo + col, y);
      } else if (col < a.dim) {
        float buf[W];
        M::store(buf, y);
        std::memcpy(out + r * a.ldo + col, buf, static_cast<size_t>(a.dim - col) * sizeof(float));
      }
    }
  }
}

// The context of NR rows over all Dp columns. 4 rows x 2 vectors per pass over
// the keys (8 accumulators; per key 2 loads of V and 4 broadcasts of p for 8
// FMAs) rather than 2 rows x 4 vectors (4 loads of V, which the compiler
// folds into the FMAs and so issues twice, and 2 broadcasts): load ports, not
// FMA ports, were the limit (perf on Zen 4: the context loop was 28% of a
// MiniLM seq-128 attention call). Every output element sums its keys in the
// same order whatever the blocking, so the result is the same bits.
template <class M, int NR>
void attention_context_rows(const AttentionArgs& a, const float* vp, int64_t ldv, int64_t Dp, const float* p,
                            int64_t Tp, const float* inv, float* out) {
  constexpr int64_t W = M::kWidth;
  constexpr int NC = NR >= 4 ? 2 : 4;
  int64_t c0 = 0;
  for (; c0 + NC * W <= Dp; c0 += NC * W) attention_context<M, NR, NC>(a, vp, ldv, p, Tp, inv, c0, out);
  for (; c0 < Dp; c0 += W) attention_context<M, NR, 1>(a, vp, ldv, p, Tp, inv, c0, out);
}

// transpose: the ISA's x32_transpose (kernels.h), which writes K^T.
template <class M>
void attention(const AttentionArgs& a, TransposeFn transpose) {
  const int64_t T = a.keys, D = a.dim;
  const int64_t Tp = round_up(T, kAttentionPad), Dp = round_up(D, kAttentionPad);
  float* kt = a.scratch;
  float* vp = kt + D * Tp;
  float* mp = vp + T * Dp;
  float* sc = mp + Tp;
  transpose(TransposeArgs{a.k, a.ldk, 0, T, D, kt, Tp});
  for (int64_t d = 0; d < D; ++d) std::fill(kt + d * Tp + T, kt + (d + 1) * Tp, 0.0f);
  // V is read in place only when its rows are whole vectors of every ISA (dim
  // a multiple of kAttentionPad) and already packed (ldv == dim); otherwise it
  // is copied. A fused QKV output's V rows are 3 * hidden floats apart (4.5 KiB
  // for MiniLM), which puts a head's 128 rows into 8 of L1's 64 sets: the
  // context pass, which reads every V row once per block of 4 query rows, then
  // missed L1 on most of them (perf: 35% of the AVX-512 kernel's samples on the
  // V loads). The packed copy is T * dim floats per task, 16 KiB at seq 128.
  const bool v_in_place = D == Dp && a.ldv == Dp;
  const float* vrows = v_in_place ? a.v : vp;
  const int64_t ldv = v_in_place ? a.ldv : Dp;
  if (!v_in_place) {
    for (int64_t j = 0; j < T; ++j) {
      std::memcpy(vp + j * Dp, a.v + j * a.ldv, static_cast<size_t>(D) * sizeof(float));
      std::fill(vp + j * Dp + D, vp + (j + 1) * Dp, 0.0f);
    }
  }
  if (a.mask != nullptr) {
    std::memcpy(mp, a.mask, static_cast<size_t>(T) * sizeof(float));
  } else {
    std::fill(mp, mp + T, 0.0f);
  }
  std::fill(mp + T, mp + Tp, 0.0f);
  for (int64_t i = 0; i < a.rows; i += 4) {
    const int nr = static_cast<int>(std::min<int64_t>(4, a.rows - i));
    const float* q = a.q + i * a.ldq;
    switch (nr) {
      case 4: attention_scores<M, 4>(a, kt, mp, Tp, q, sc); break;
      case 3: attention_scores<M, 3>(a, kt, mp, Tp, q, sc); break;
      case 2: attention_scores<M, 2>(a, kt, mp, Tp, q, sc); break;
      default: attention_scores<M, 1>(a, kt, mp, Tp, q, sc); break;
    }
    float inv[4];
    for (int r = 0; r < nr; ++r) inv[r] = attention_softmax<M>(sc + r * Tp, T, Tp);
    float* out = a.out + i * a.ldo;
    switch (nr) {
      case 4: attention_context_rows<M, 4>(a, vrows, ldv, Dp, sc, Tp, inv, out); break;
      case 3: attention_context_rows<M, 3>(a, vrows, ldv, Dp, sc, Tp, inv, out); break;
      case 2: attention_context_rows<M, 2>(a, vrows, ldv, Dp, sc, Tp, inv, out); break;
      default: attention_context_rows<M, 1>(a, vrows, ldv, Dp, sc, Tp, inv, out); break;
    }
  }
}

}  // namespace
}  // namespace pysparse
