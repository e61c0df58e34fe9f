// Int8 dispatch (qdispatch.h): CPUID / HWCAP once, the kernel table from
// kernels-qs8.inc, PYSPARSE_ISA read as a level of the ladder. The VNNI and
// dot-product kernels are target-attribute functions in files compiled for the
// baseline, so they run only after the check here says the CPU has them.
#include "qdispatch.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

#include "qkernels.h"

#if defined(__linux__) && defined(__aarch64__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace pysparse {

namespace {

struct QFeatures {
  bool avx2 = false, avxvnni = false, avx512vnni = false, neon = false, neondot = false;
};

QFeatures detect() {
  QFeatures f;
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  f.avxvnni = f.avx2 && __builtin_cpu_supports("avxvnni");
  f.avx512vnni = f.avx2 && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl") &&
                 __builtin_cpu_supports("avx512bw");
#elif defined(__aarch64__)
  f.neon = true;
#if defined(__linux__) && defined(HWCAP_ASIMDDP)
  f.neondot = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#endif
#endif
  return f;
}

const QFeatures& features() {
  static const QFeatures f = detect();
  return f;
}

// The ladder position of a level name, for "at or below".
int rank(QIsa isa) {
  switch (isa) {
    case QIsa::scalar: return 0;
    case QIsa::avx2: case QIsa::neon: return 1;
    case QIsa::avxvnni: case QIsa::neondot: return 2;
    case QIsa::avx512vnni: return 3;
  }
  return 0;
}

bool same_family(QIsa a, QIsa b) {
  auto x86 = [](QIsa i) { return i == QIsa::avx2 || i == QIsa::avxvnni || i == QIsa::avx512vnni; };
  return a == QIsa::scalar || b == QIsa::scalar || x86(a) == x86(b);
}

QIsa initial() {
  const char* env = std::getenv("PYSPARSE_ISA");
  if (env != nullptr && env[0] != '\0') return qisa_at_most(env);
  return runnable_qisas().front();
}

std::atomic<int>& slot() {
  static std::atomic<int> s{static_cast<int>(initial())};
  return s;
}

}  // namespace

const char* qisa_name(QIsa isa) {
  switch (isa) {
    case QIsa::scalar: return "scalar";
    case QIsa::avx2: return "avx2";
    case QIsa::avxvnni: return "avxvnni";
    case QIsa::avx512vnni: return "avx512vnni";
    case QIsa::neon: return "neon";
    case QIsa::neondot: return "neondot";
  }
  return "?";
}

QIsa qisa_from_name(const std::string& name) {
  for (QIsa i : {QIsa::scalar, QIsa::avx2, QIsa::avxvnni, QIsa::avx512vnni, QIsa::neon, QIsa::neondot})
    if (name == qisa_name(i)) return i;
  throw std::invalid_argument("unknown ISA '" + name +
                              "'; expected one of: scalar, avx2, avxvnni, avx512vnni, neon, neondot");
}

bool qisa_supported(QIsa isa) {
  const QFeatures& f = features();
  switch (isa) {
    case QIsa::scalar: return true;
    case QIsa::avx2: return PYSPARSE_HAVE_AVX2 && f.avx2;
    case QIsa::avxvnni: return PYSPARSE_HAVE_AVX2 && f.avxvnni;
    case QIsa::avx512vnni: return PYSPARSE_HAVE_AVX2 && f.avx512vnni;
    case QIsa::neon: return PYSPARSE_HAVE_NEON && f.neon;
    case QIsa::neondot: return PYSPARSE_HAVE_NEON && f.neondot;
  }
  return false;
}

std::vector<QIsa> runnable_qisas() {
  std::vector<QIsa> out;
  for (QIsa i : {QIsa::avx512vnni, QIsa::avxvnni, QIsa::avx2, QIsa::neondot, QIsa::neon, QIsa::scalar})
    if (qisa_supported(i)) out.push_back(i);
  return out;
}

QIsa qisa_at_most(const std::string& name) {
  // "avx512" is an f32 level (dispatch.h), between avxvnni and avx512vnni on this ladder.
  const bool f32_avx512 = name == "avx512";
  const QIsa cap = f32_avx512 ? QIsa::avxvnni : qisa_from_name(name);
  if (f32_avx512 ? !isa_supported(Isa::avx512) : !qisa_supported(cap)) {
    throw std::invalid_argument("PYSPARSE_ISA / set_isa level '" + name +
                                "' is not runnable here (not built into this module, or this CPU lacks it)");
  }
  for (QIsa i : runnable_qisas())
    if (same_family(i, cap) && rank(i) <= rank(cap)) return i;
  return QIsa::scalar;
}

QIsa active_qisa() { return static_cast<QIsa>(slot().load(std::memory_order_relaxed)); }

void set_active_qisa(QIsa isa) {
  if (!qisa_supported(isa)) {
    throw std::invalid_argument(std::string("int8 ISA '") + qisa_name(isa) +
                                "' is not runnable here (not built into this module, or this CPU lacks it)");
  }
  slot().store(static_cast<int>(isa), std::memory_order_relaxed);
}

const std::vector<QKernelInfo>& all_qkernels() {
  static const std::vector<QKernelInfo> table = {
#define PYSPARSE_QKERNEL(name, isa, format, block_r, batch) \
  QKernelInfo{#name, QIsa::isa, QFormat::format, block_r, QBatch::batch, &name},
#include "kernels-qs8.inc"
#undef PYSPARSE_QKERNEL
  };
  return table;
}

const QKernelInfo* find_qkernel(const std::string& name) {
  for (const QKernelInfo& k : all_qkernels())
    if (name == k.name) return &k;
  return nullptr;
}

const QKernelInfo* find_nt_qkernel(QIsa isa, QFormat format, int block_r) {
  for (const QKernelInfo& k : all_qkernels())
    if (k.isa == isa && k.format == format && k.block_r == block_r && k.batch == QBatch::nt) return &k;
  return nullptr;
}

const QKernelInfo& select_qkernel(QIsa isa, QFormat format, int block_r, QBatch batch) {
  const QKernelInfo* fallback = nullptr;
  for (const QKernelInfo& k : all_qkernels()) {
    if (k.format != format || k.block_r != block_r || k.batch != batch) continue;
    if (k.isa == isa) return k;
    if (k.isa == QIsa::scalar) fallback = &k;
  }
  if (fallback == nullptr) throw std::logic_error("no scalar int8 kernel; kernels-qs8.inc is incomplete");
  return *fallback;
}

QuantizeFn select_quantize(QIsa isa) {
  switch (isa) {
#if PYSPARSE_HAVE_AVX2
    case QIsa::avx2: case QIsa::avxvnni: return &qs8_quantize__avx2;
    case QIsa::avx512vnni: return &qs8_quantize__avx512;
#endif
#if PYSPARSE_HAVE_NEON
    case QIsa::neon: case QIsa::neondot: return &qs8_quantize__neon;
#endif
    default: return &qs8_quantize__scalar;
  }
}

}  // namespace pysparse
