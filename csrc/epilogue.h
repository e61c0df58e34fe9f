// The fp32 epilogue of the sparse products: y = act(W x + b) + r, applied by
// the drivers (spmm.cc) to each thread's rows of the output right after the
// kernel wrote them, while they are still in that thread's cache. The kernels
// themselves add only the bias; the activation and the residual are one more
// pass over rows that are hot, so a Linear + GELU + residual add costs one
// trip through memory instead of three (and no temporaries in Python).
//
// Owner: issue 13 (tf). Shared by linear, spmm and conv2d_shifted; conv fuses
// its pointwise / k x k convolutions through it.
#pragma once

#include <cstdint>
#include <string>

#include "dispatch.h"

namespace pysparse {

// torch's definitions: relu max(x, 0), relu6 min(max(x, 0), 6), gelu_erf the
// exact GELU x/2 (1 + erf(x / sqrt 2)), gelu_tanh the tanh form. NaN stays NaN.
enum class Activation : int { none = 0, relu, relu6, gelu_erf, gelu_tanh };

const char* activation_name(Activation a);
// Throws std::invalid_argument naming the accepted values.
Activation activation_from_name(const std::string& name);

// What the driver applies after the product. residual: null or an array laid
// out exactly like y (the same element strides), added after the activation.
struct Epilogue {
  Activation act = Activation::none;
  const float* residual = nullptr;
  bool identity() const { return act == Activation::none && residual == nullptr; }
};

// n contiguous floats: y[i] = act(y[i]) (+ r[i] when r is not null). No
// alignment; reads y[0, n) and r[0, n), writes y[0, n).
struct EpilogueArgs {
  float* y;
  const float* r;
  int64_t n;
  Activation act;
};
using EpilogueFn = void (*)(const EpilogueArgs&);

void f32_epilogue__scalar(const EpilogueArgs& a);
#if PYSPARSE_HAVE_AVX2
void f32_epilogue__avx2(const EpilogueArgs& a);
#endif
#if PYSPARSE_HAVE_AVX512
void f32_epilogue__avx512(const EpilogueArgs& a);
#endif
#if PYSPARSE_HAVE_NEON
void f32_epilogue__neon(const EpilogueArgs& a);
#endif

// The epilogue kernel for `isa` (its scalar twin when the ISA has none).
EpilogueFn select_epilogue(Isa isa);

// Applies ep to rows [r0, r1) of Y (n columns), Y[i, j] = y[i * rs + j * cs],
// the residual indexed the same way. Contiguous spans go to fn in one call.
void apply_epilogue(EpilogueFn fn, const Epilogue& ep, float* y, int64_t rs, int64_t cs, int64_t r0, int64_t r1,
                    int64_t n);

}  // namespace pysparse
