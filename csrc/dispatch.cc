// Dispatch: a path runs only if it is built *and* the CPU has it.
//
// Every kernel file for an ISA is compiled with that ISA's flags and nothing
// else is, so the module itself loads on any CPU of its architecture. Here, once,
// the CPU is asked what it supports; the best runnable ISA becomes the default,
// and PYSPARSE_ISA (scalar | avx2 | avx512 | neon) may force any other runnable one, which
// is how the tests cover every path and how a bug report pins one down. Asking
// for an ISA that is not built or not supported is an error, not a silent
// fallback: a forced path that quietly runs another one would hide the bug.
//
// Kernels are looked up per call from a table built from kernels.inc; when the
// active ISA has no kernel for a (format, block, batch) combination the next ISA
// down isa_fallback() runs it (avx512 -> avx2 -> scalar, neon -> scalar), so a
// new ISA registers only the kernels that measure faster than the rung below;
// cpu_info() reports which kernel fills each slot.
//
// AVX-512 takes two checks: CPUID for F + BW + DQ + VL (the subset the kernels
// use: 16-lane floats, opmask tails, 256-bit forms of the same instructions)
// and XCR0 for the OS saving the opmask and the 32 ZMM registers across context
// switches; a CPU with the instructions under an OS (or hypervisor) that does
// not save that state must not run them.
#include "dispatch.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

#include "kernels.h"

#if defined(__linux__) && defined(__aarch64__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#include <cpuid.h>
#endif

namespace pysparse {

namespace {

#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
// CPUID.(EAX=7, ECX=0):EBX bits of AVX-512 F / DQ / BW / VL, and whether XCR0
// has SSE, AVX, opmask, ZMM_Hi256 and Hi16_ZMM state enabled (bits 1, 2, 5-7).
// xgetbv by its encoding, so this file needs no -mxsave.
bool avx512_os_support() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  if ((c & (1u << 27)) == 0) return false;  // OSXSAVE: xgetbv usable
  unsigned lo, hi;
  __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
  constexpr unsigned kState = (1u << 1) | (1u << 2) | (1u << 5) | (1u << 6) | (1u << 7);
  return (lo & kState) == kState;
}

void avx512_cpuid(CpuFeatures& f) {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
  f.avx512f = (b >> 16) & 1;
  f.avx512dq = (b >> 17) & 1;
  f.avx512bw = (b >> 30) & 1;
  f.avx512vl = (b >> 31) & 1;
  f.avx512_os = avx512_os_support();
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(_M_X64)
  f.arch = "x86_64";
#if defined(__GNUC__)
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.bmi1 = __builtin_cpu_supports("bmi");
  f.f16c = __builtin_cpu_supports("f16c");
  avx512_cpuid(f);
  f.avx512vnni = __builtin_cpu_supports("avx512vnni");
  f.avx512bf16 = __builtin_cpu_supports("avx512bf16");
#endif
#elif defined(__aarch64__)
  f.arch = "aarch64";
  f.neon = true;  // Advanced SIMD is mandatory in ARMv8-A
#if defined(__linux__)
  const unsigned long hw = getauxval(AT_HWCAP);
#ifdef HWCAP_ASIMDDP
  f.asimddp = (hw & HWCAP_ASIMDDP) != 0;
#endif
  (void)hw;
#endif
#else
  f.arch = "unknown";
#endif
  return f;
}

Isa initial_isa() {
  const char* env = std::getenv("PYSPARSE_ISA");
  if (env != nullptr && env[0] != '\0') {
    const Isa isa = isa_from_name(env);
    if (!isa_supported(isa)) {
      throw std::invalid_argument(std::string("PYSPARSE_ISA=") + env +
                                  " is not runnable here (not built into this module, or this CPU lacks it); "
                                  "unset it or choose one of the runnable ISAs");
    }
    return isa;
  }
  return runnable_isas().front();
}

std::atomic<int>& active_slot() {
  static std::atomic<int> slot{static_cast<int>(initial_isa())};
  return slot;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::neon: return "neon";
  }
  return "?";
}

Isa isa_from_name(const std::string& name) {
  if (name == "scalar") return Isa::scalar;
  if (name == "avx2") return Isa::avx2;
  if (name == "avx512") return Isa::avx512;
  if (name == "neon") return Isa::neon;
  // The int8 levels (qdispatch.h): f32 kernels run the ISA those extend. Every
  // AVX512-VNNI CPU has F/BW/DQ/VL; avx2 only where this module lacks avx512.
  if (name == "avxvnni") return Isa::avx2;
  if (name == "avx512vnni") return isa_supported(Isa::avx512) ? Isa::avx512 : Isa::avx2;
  if (name == "neondot") return Isa::neon;
  throw std::invalid_argument("unknown ISA '" + name +
                              "'; expected one of: scalar, avx2, avx512, avxvnni, avx512vnni, neon, neondot");
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

bool isa_built(Isa isa) {
  switch (isa) {
    case Isa::scalar: return true;
    case Isa::avx2: return PYSPARSE_HAVE_AVX2 != 0;
    case Isa::avx512: return PYSPARSE_HAVE_AVX512 != 0;
    case Isa::neon: return PYSPARSE_HAVE_NEON != 0;
  }
  return false;
}

bool isa_supported(Isa isa) {
  if (!isa_built(isa)) return false;
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case Isa::scalar: return true;
    case Isa::avx2: return f.avx2 && f.fma && f.bmi1;
    // The avx512 rung falls back to avx2 kernels for the slots it lacks: it needs both.
    case Isa::avx512:
      return isa_supported(Isa::avx2) && f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl && f.avx512_os;
    case Isa::neon: return f.neon;
  }
  return false;
}

std::vector<Isa> runnable_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::avx512, Isa::avx2, Isa::neon, Isa::scalar}) {
    if (isa_supported(isa)) out.push_back(isa);
  }
  return out;
}

Isa isa_fallback(Isa isa) {
  switch (isa) {
    case Isa::avx512: return Isa::avx2;
    case Isa::avx2: case Isa::neon: case Isa::scalar: return Isa::scalar;
  }
  return Isa::scalar;
}

Isa active_isa() { return static_cast<Isa>(active_slot().load(std::memory_order_relaxed)); }

void set_active_isa(Isa isa) {
  if (!isa_supported(isa)) {
    throw std::invalid_argument(std::string("ISA '") + isa_name(isa) +
                                "' is not runnable here (not built into this module, or this CPU lacks it)");
  }
  active_slot().store(static_cast<int>(isa), std::memory_order_relaxed);
}

const std::vector<KernelInfo>& all_kernels() {
  static const std::vector<KernelInfo> table = {
#define PYSPARSE_KERNEL(name, isa, format, block_r, batch) \
  KernelInfo{#name, Isa::isa, Format::format, block_r, Batch::batch, &name},
#include "kernels.inc"
#undef PYSPARSE_KERNEL
  };
  return table;
}

const KernelInfo* find_kernel(const std::string& name) {
  for (const KernelInfo& k : all_kernels()) {
    if (name == k.name) return &k;
  }
  return nullptr;
}

const KernelInfo& select_kernel(Isa isa, Format format, int block_r, Batch batch) {
  for (;; isa = isa_fallback(isa)) {
    for (const KernelInfo& k : all_kernels()) {
      if (k.format == format && k.block_r == block_r && k.batch == batch && k.isa == isa) return k;
    }
    if (isa == Isa::scalar) throw std::logic_error("no scalar kernel for this format; kernels.inc is incomplete");
  }
}

TransposeFn select_transpose(Isa isa) {
  for (;; isa = isa_fallback(isa)) {
    switch (isa) {
#if PYSPARSE_HAVE_AVX2
      case Isa::avx2: return &x32_transpose__avx2;
#endif
#if PYSPARSE_HAVE_NEON
      case Isa::neon: return &x32_transpose__neon;
#endif
      case Isa::scalar: return &x32_transpose__scalar;
      default: break;
    }
  }
}

}  // namespace pysparse
