#include "epilogue.h"

#include <stdexcept>

namespace pysparse {

namespace {
constexpr const char* kNames[] = {"none", "relu", "relu6", "gelu_erf", "gelu_tanh"};
}  // namespace

const char* activation_name(Activation a) { return kNames[static_cast<int>(a)]; }

Activation activation_from_name(const std::string& name) {
  for (int i = 0; i < 5; ++i) {
    if (name == kNames[i]) return static_cast<Activation>(i);
  }
  throw std::invalid_argument("unknown activation '" + name +
                              "'; use one of 'none', 'relu', 'relu6', 'gelu_erf', 'gelu_tanh'");
}

EpilogueFn select_epilogue(Isa isa) {
  for (; isa != Isa::scalar; isa = isa_fallback(isa)) {
#if PYSPARSE_HAVE_AVX512
    if (isa == Isa::avx512) return &f32_epilogue__avx512;
#endif
#if PYSPARSE_HAVE_AVX2
    if (isa == Isa::avx2) return &f32_epilogue__avx2;
#endif
#if PYSPARSE_HAVE_NEON
    if (isa == Isa::neon) return &f32_epilogue__neon;
#endif
  }
  return &f32_epilogue__scalar;
}

void apply_epilogue(EpilogueFn fn, const Epilogue& ep, float* y, int64_t rs, int64_t cs, int64_t r0, int64_t r1,
                    int64_t n) {
  if (ep.identity() || r0 >= r1 || n <= 0) return;
  const float* res = ep.residual;
  auto at = [&](int64_t i, int64_t j) { return i * rs + j * cs; };
  if (n == 1 || cs == 1) {
    if (n == 1 ? rs == 1 : rs == n) {  // rows [r0, r1) are one contiguous span
      fn(EpilogueArgs{y + at(r0, 0), res ? res + at(r0, 0) : nullptr, (r1 - r0) * n, ep.act});
      return;
    }
    if (cs == 1) {
      for (int64_t i = r0; i < r1; ++i) fn(EpilogueArgs{y + at(i, 0), res ? res + at(i, 0) : nullptr, n, ep.act});
      return;
    }
  }
  for (int64_t i = r0; i < r1; ++i)
    for (int64_t j = 0; j < n; ++j) fn(EpilogueArgs{y + at(i, j), res ? res + at(i, j) : nullptr, 1, ep.act});
}

}  // namespace pysparse
