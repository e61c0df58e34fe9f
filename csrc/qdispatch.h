// Which int8 kernels run. The int8 ISA ladder extends the f32 one:
//   x86-64:  scalar < avx2 < avxvnni < avx512vnni
//   aarch64: scalar < neon < neondot
// PYSPARSE_ISA names a level: f32 kernels run the best f32 ISA at or below it
// (avxvnni -> avx2, avx512vnni -> avx512, neondot -> neon), int8 kernels the best
// int8 ISA at or below it (avx512, an f32 level, -> avxvnni or avx2;
// PYSPARSE_ISA=avx2 forces the AVX2 int8 path on a VNNI
// CPU); unset, both run the best the CPU has. At run time _core.set_qisa sets
// the int8 ISA alone; _core.set_isa with an f32 name sets the f32 ISA alone,
// with an int8 level both (bindings/qmatrix.cc).
#pragma once

#include <string>
#include <vector>

#include "dispatch.h"
#include "qformats.h"

namespace pysparse {

enum class QIsa : int { scalar = 0, avx2 = 1, avxvnni = 2, avx512vnni = 3, neon = 4, neondot = 5 };

// The int8 kernels' batch kinds (kernels-qs8.inc): n1 one activation row; nx
// n a multiple of 8, column-interleaved activations, Y^T written (the driver
// transposes); nt token tiles of kQTile, any n, Y written token-major in place.
enum class QBatch : int { n1 = 0, nx = 1, nt = 2 };
inline const char* qbatch_name(QBatch b) { return b == QBatch::n1 ? "n1" : b == QBatch::nx ? "nx" : "nt"; }

struct QKernelInfo {
  const char* name;
  QIsa isa;
  QFormat format;
  int block_r;
  QBatch batch;
  QKernelFn fn;
};

const char* qisa_name(QIsa isa);
// Throws std::invalid_argument for a name that is not an int8 ISA level.
QIsa qisa_from_name(const std::string& name);
bool qisa_supported(QIsa isa);        // built and this CPU runs it
std::vector<QIsa> runnable_qisas();   // best first; scalar last
// The best runnable int8 ISA at or below the level `name` (an f32 or int8 name).
QIsa qisa_at_most(const std::string& name);
QIsa active_qisa();
void set_active_qisa(QIsa isa);  // throws std::invalid_argument if not runnable

const std::vector<QKernelInfo>& all_qkernels();
const QKernelInfo* find_qkernel(const std::string& name);
const QKernelInfo& select_qkernel(QIsa isa, QFormat format, int block_r, QBatch batch);
// The nt kernel of exactly this ISA, or null (that ISA runs wide batches as nx).
const QKernelInfo* find_nt_qkernel(QIsa isa, QFormat format, int block_r);
QuantizeFn select_quantize(QIsa isa);
// Whether the kernels of `isa` read the activations as u8 = q + 128 (VNNI).
inline bool qisa_flips_input(QIsa isa) { return isa == QIsa::avxvnni || isa == QIsa::avx512vnni; }

}  // namespace pysparse
