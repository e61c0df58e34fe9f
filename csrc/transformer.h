// The transformer pieces between a BERT layer's Linears: layer norm with the
// residual add fused, GELU (erf and tanh forms) and multi-head attention fused
// per head. The kernels are listed in kernels-transformer.inc; each takes one
// plain argument struct and checks nothing (bindings/transformer.cc has). The
// drivers below split the work across the pool and pick the kernel by the
// active ISA (dispatch.h: the same PYSPARSE_ISA / set_isa as the SpMM kernels).
#pragma once

#include <cstdint>
#include <vector>

#include "dispatch.h"

namespace pysparse {

// rows x cols, row r at x + r * ldx (likewise res, y). res, weight, bias may be
// null (no residual; weight 1; bias 0). y may be x or res (the same rows, in
// place); any other overlap is undefined.
struct LayerNormArgs {
  const float* x;
  int64_t ldx;
  const float* res;
  int64_t ldr;
  const float* weight;
  const float* bias;
  float* y;
  int64_t ldy;
  int64_t rows;
  int64_t cols;
  float eps;
};

// n contiguous floats; y may be x (in place).
struct ElementwiseArgs {
  const float* x;
  float* y;
  int64_t n;
};

// One head of one batch item, query rows [0, rows): row i of q at q + i * ldq,
// key/value j at k + j * ldk, v + j * ldv, each `dim` contiguous floats; the
// context row i goes to out + i * ldo (dim floats). mask: null or `keys`
// additive floats. scratch: attention_scratch_floats(keys, dim) floats of the
// caller's, 64-byte aligned, not shared with another task.
struct AttentionArgs {
  const float* q;
  int64_t ldq;
  const float* k;
  int64_t ldk;
  const float* v;
  int64_t ldv;
  const float* mask;
  float* out;
  int64_t ldo;
  int64_t rows;
  int64_t keys;
  int64_t dim;
  float scale;
  float* scratch;
};

// The scratch one attention task needs: K^T padded to whole vectors of keys,
// V padded to whole vectors of dim, and a block of score rows.
int64_t attention_scratch_floats(int64_t keys, int64_t dim);
// The fewest query rows an attention task gets (transformer.cc picks the split
// from the shape and the thread count; a row's result depends on neither).
inline constexpr int64_t kAttentionRowBlock = 32;
// Width every kernel pads to (the widest vector of any ISA: AVX-512's 16), so
// the scratch size does not depend on the ISA. Narrower ISAs pad further than
// they need; the extra keys are -inf scores (weight 0) and the extra columns
// zeros never written, so no result changes (a head dim of 8 or 24 now takes
// the padded copy of V on AVX2 too: T * dim floats, small beside the products).
inline constexpr int64_t kAttentionPad = 16;

using LayerNormFn = void (*)(const LayerNormArgs&);
using ElementwiseFn = void (*)(const ElementwiseArgs&);
using AttentionFn = void (*)(const AttentionArgs&);

enum class TfOp : int { layernorm, gelu_erf, gelu_tanh, erf, attention };
const char* tf_op_name(TfOp op);

template <TfOp op>
struct TfFn;
template <> struct TfFn<TfOp::layernorm> { using type = LayerNormFn; using Args = LayerNormArgs; };
template <> struct TfFn<TfOp::gelu_erf> { using type = ElementwiseFn; using Args = ElementwiseArgs; };
template <> struct TfFn<TfOp::gelu_tanh> { using type = ElementwiseFn; using Args = ElementwiseArgs; };
template <> struct TfFn<TfOp::erf> { using type = ElementwiseFn; using Args = ElementwiseArgs; };
template <> struct TfFn<TfOp::attention> { using type = AttentionFn; using Args = AttentionArgs; };

#define PYSPARSE_TF_KERNEL(name, isa, op) void name(const TfFn<TfOp::op>::Args& args);
#include "kernels-transformer.inc"
#undef PYSPARSE_TF_KERNEL

struct TfKernelInfo {
  const char* name;
  Isa isa;
  TfOp op;
  void (*fn)();  // the kernel, cast back by tf_kernel<op>()
};

const std::vector<TfKernelInfo>& all_tf_kernels();
// The kernel of `op` for `isa`, or its scalar twin when the ISA has none.
const TfKernelInfo& select_tf_kernel(Isa isa, TfOp op);
template <TfOp op>
typename TfFn<op>::type tf_kernel(const TfKernelInfo& k) {
  return reinterpret_cast<typename TfFn<op>::type>(k.fn);
}

// The drivers: validated arguments in, the pool and the active ISA's kernel
// (or `kernel`, forced by the tests) out. nthreads <= 0: get_num_threads().
void layer_norm(const LayerNormArgs& a, int nthreads, const TfKernelInfo* kernel = nullptr);
// op: gelu_erf, gelu_tanh or erf.
void elementwise(TfOp op, const ElementwiseArgs& a, int nthreads, const TfKernelInfo* kernel = nullptr);

// q (B, S, H*D), k and v (B, T, H*D), out (B, S, H*D) with element strides
// (batch, row); the last axis is contiguous. mask null or (B, T) at mask + b * ldm.
struct AttentionProblem {
  const float* q;
  int64_t q_b, q_s;
  const float* k;
  int64_t k_b, k_s;
  const float* v;
  int64_t v_b, v_s;
  const float* mask;
  int64_t m_b;
  float* out;
  int64_t o_b, o_s;
  int64_t batch, queries, keys, heads, dim;
  float scale;
};
void attention(const AttentionProblem& p, int nthreads, const TfKernelInfo* kernel = nullptr);

}  // namespace pysparse
