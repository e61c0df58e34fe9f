// The pysparse._core module: registrations only. The glue is in calls.cc,
// matrix.cc, info.cc and testing.cc; the checks in arrays.h.
#include <pybind11/pybind11.h>

#include <string>

#include "bindings/arrays.h"
#include "bindings/bindings.h"
#include "dispatch.h"
#include "parallel.h"
#include "qdispatch.h"

namespace py = pybind11;
using namespace pysparse;

PYBIND11_MODULE(_core, m) {
  m.doc() = "pysparse C++ core: sparse formats, SIMD SpMM kernels, dispatch and thread pool";

  // Resolve PYSPARSE_ISA now, so a bad value fails the import with its reason.
  (void)active_isa();

  bind::def_sparse_matrix(m);

  m.def("spmm", &bind::spmm, py::arg("w"), py::arg("x"), py::arg("bias") = py::none(), py::arg("threads") = 0,
        py::arg("kernel") = py::none(), py::kw_only(), py::arg("activation") = "none", py::arg("residual") = py::none(),
        "Y = act(W @ X (+ bias[:, None])) (+ residual); X (K,) or (K, N) float32; activation one of 'none', "
        "'relu', 'relu6', 'gelu_erf', 'gelu_tanh'; residual float32 of Y's shape.");
  m.def("linear", &bind::linear, py::arg("x"), py::arg("w"), py::arg("bias") = py::none(), py::arg("threads") = 0,
        py::arg("kernel") = py::none(), py::kw_only(), py::arg("activation") = "none", py::arg("residual") = py::none(),
        "y = act(x @ W.T (+ bias)) (+ residual); x (K,) or (batch, K) float32; activation one of 'none', 'relu', "
        "'relu6', 'gelu_erf', 'gelu_tanh'; residual float32 of y's shape.");
  m.def("conv2d_shifted", &bind::conv2d_shifted, py::arg("w"), py::arg("x"), py::arg("kernel_size"),
        py::arg("padding"), py::arg("dilation"), py::arg("chunk"), py::arg("bias") = py::none(),
        py::arg("threads") = 0, py::kw_only(), py::arg("activation") = "none", py::arg("residual") = py::none(),
        "The direct stride-1 convolution of x (N, C, H, W) float32, `chunk` images side by side per product, "
        "with W the offset matrix for that geometry (pysparse.ops builds it). Returns y (N, rows, Ho, Wo), "
        "act(conv + bias) (+ residual of y's shape) with the fp32 epilogue.");

  m.def("set_num_threads", [](const py::object& n_obj) {
    const int n = static_cast<int>(bind::int_arg(n_obj, "the number of threads", 1, kMaxThreads));
    py::gil_scoped_release nogil;
    set_num_threads(n);
  }, py::arg("n"));
  m.def("get_num_threads", &get_num_threads);
  m.def("default_num_threads", &default_num_threads);
  m.def("cpu_info", &bind::cpu_info);
  m.def("kernels", &bind::kernels);
  m.def("get_isa", [] { return std::string(isa_name(active_isa())); });
  m.def("set_isa", &bind::set_isa_level, py::arg("name"));
  m.def("runnable_isas", [] {
    py::list out;
    for (Isa isa : runnable_isas()) out.append(isa_name(isa));
    return out;
  });

  bind::def_testing(m);

  // The transformer pieces between the Linears (bindings/transformer.cc).
  bind::def_transformer(m);
  // int8 formats and kernels (bindings/qmatrix.cc); resolve PYSPARSE_ISA's int8 level now.
  bind::def_qmatrix(m);
  (void)active_qisa();

  // Depthwise convolution (bindings/dwconv.cc).
  bind::def_dwconv(m);
}
