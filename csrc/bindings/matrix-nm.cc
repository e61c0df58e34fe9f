// N:M constructors and properties of SparseMatrix (validated in matrix-nm.cc).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bindings/arrays.h"
#include "bindings/bindings.h"
#include "matrix-nm.h"

namespace pysparse::bind {

namespace {

SparseMatrix from_dense_nm(const py::object& a, int n, int m) {
  return from_dense_2d(a, [&](const float* p, int64_t rows, int64_t cols, int64_t lda) {
    return nm::from_dense(p, rows, cols, lda, n, m);
  });
}

SparseMatrix from_arrays_nm(const py::object& shape, int n, int m, const py::object& values, const py::object& offsets) {
  const auto [rows, cols] = pair_arg(shape, "shape");
  auto vc = flat_values(values, "values");
  py::array off = as_array(offsets, "offsets");
  auto o = index_array(off.attr("reshape")(-1), "offsets");
  py::gil_scoped_release nogil;
  return nm::from_arrays(rows, cols, n, m, vc.data(), vc.size(), o.data(), o.size());
}

}  // namespace

void def_nm_matrix(MatrixClass& cls) {
  using S = SparseMatrix;
  cls.def_static("from_dense_nm", &from_dense_nm, py::arg("a"), py::arg("n"), py::arg("m"))
      .def_static("from_arrays_nm", &from_arrays_nm, py::arg("shape"), py::arg("n"), py::arg("m"),
                  py::arg("values"), py::arg("offsets"))
      .def_property_readonly("nm", [](const S& s) { return py::make_tuple(static_cast<int>(s.view().nm_n), s.view().nm_m()); });
}

}  // namespace pysparse::bind
