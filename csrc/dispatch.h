// Which kernels run: CPU features, the ISA in use, and the kernel table.
#pragma once

#include <string>
#include <vector>

#include "formats.h"

namespace pysparse {

enum class Isa : int { scalar = 0, avx2 = 1, neon = 2, avx512 = 3 };
enum class Batch : int { n1 = 0, nx = 1 };

struct CpuFeatures {
  std::string arch;     // "x86_64", "aarch64", ...
  bool avx2 = false;
  bool fma = false;
  bool bmi1 = false;  // bextr: every AVX2 CPU shipped has it, but it is a separate flag
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512dq = false;
  bool avx512vl = false;
  bool avx512_os = false;  // XCR0: the OS saves opmask and all 32 ZMM registers
  bool avx512vnni = false;
  bool avx512bf16 = false;
  bool neon = false;
  bool asimddp = false;  // aarch64 dot product
};

struct KernelInfo {
  const char* name;
  Isa isa;
  Format format;
  int block_r;
  Batch batch;
  SpmmFn fn;
};

const char* isa_name(Isa isa);
// Throws std::invalid_argument for a name that is not an ISA.
Isa isa_from_name(const std::string& name);

const CpuFeatures& cpu_features();
bool isa_built(Isa isa);
bool isa_supported(Isa isa);  // built and this CPU can run it
std::vector<Isa> runnable_isas();  // best first; scalar always last
// The ISA whose kernels run when `isa` has none for a slot: avx512 -> avx2 ->
// scalar, neon -> scalar, scalar -> scalar. Every select_* walks this one chain.
Isa isa_fallback(Isa isa);

// The ISA the dispatcher uses: the best runnable one, or PYSPARSE_ISA if set.
Isa active_isa();
// Throws std::invalid_argument if `isa` is not runnable here.
void set_active_isa(Isa isa);

const std::vector<KernelInfo>& all_kernels();  // every kernel built into this module
const KernelInfo* find_kernel(const std::string& name);
// The kernel for (format, block_r, batch) at `isa`, else at isa_fallback(isa), ... scalar.
const KernelInfo& select_kernel(Isa isa, Format format, int block_r, Batch batch);
// The transpose for `isa`, else for the first ISA down isa_fallback(isa) that has one.
TransposeFn select_transpose(Isa isa);

}  // namespace pysparse
