// What this build and CPU run: cpu_info() and kernels(), both derived from the
// one kernel list (kernels.inc via all_kernels()), never listed again here.
#include <pybind11/pybind11.h>

#include <set>
#include <string>
#include <tuple>

#include "bindings/bindings.h"
#include "dispatch.h"
#include "parallel.h"

namespace pysparse::bind {

namespace {

// "f32_spmm_bsr_8xc_nx__avx2" -> "bsr_8xc_nx": the dispatch slot a kernel fills.
std::string slot_name(const KernelInfo& k) {
  std::string s = k.name;
  const std::string prefix = "f32_spmm_";
  if (s.rfind(prefix, 0) == 0) s = s.substr(prefix.size());
  return s.substr(0, s.find("__"));
}

const char* batch_name(Batch b) { return b == Batch::n1 ? "n1" : "nx"; }

}  // namespace

py::dict cpu_info() {
  const CpuFeatures& f = cpu_features();
  py::dict d;
  d["isa"] = isa_name(active_isa());
  d["arch"] = f.arch;
  py::list runnable, built;
  for (Isa isa : runnable_isas()) runnable.append(isa_name(isa));
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::neon})
    if (isa_built(isa)) built.append(isa_name(isa));
  d["runnable"] = runnable;
  d["built"] = built;
  py::dict feats;
  feats["avx2"] = f.avx2;
  feats["fma"] = f.fma;
  feats["bmi1"] = f.bmi1;
  feats["f16c"] = f.f16c;
  feats["avx512f"] = f.avx512f;
  feats["avx512bw"] = f.avx512bw;
  feats["avx512dq"] = f.avx512dq;
  feats["avx512vl"] = f.avx512vl;
  feats["avx512_os"] = f.avx512_os;
  feats["avx512vnni"] = f.avx512vnni;
  feats["avx512bf16"] = f.avx512bf16;
  feats["neon"] = f.neon;
  feats["asimddp"] = f.asimddp;
  d["features"] = feats;
  d["threads"] = get_num_threads();
  d["default_threads"] = default_num_threads();
  // Per dispatch slot (every slot has its scalar kernel), the kernel that runs.
  py::dict in_use;
  const Isa isa = active_isa();
  for (const KernelInfo& k : all_kernels()) {
    if (k.isa != Isa::scalar) continue;
    in_use[py::str(slot_name(k))] = select_kernel(isa, k.format, k.block_r, k.batch).name;
  }
  d["kernels"] = in_use;
  return d;
}

py::list kernels() {
  py::list out;
  for (const KernelInfo& k : all_kernels()) {
    py::dict d;
    d["name"] = k.name;
    d["isa"] = isa_name(k.isa);
    d["format"] = format_name(k.format);
    d["block_r"] = k.block_r;
    d["batch"] = batch_name(k.batch);
    d["runnable"] = isa_supported(k.isa);
    out.append(d);
  }
  return out;
}

}  // namespace pysparse::bind
