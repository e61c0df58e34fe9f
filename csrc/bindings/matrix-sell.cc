// SELL conversions and row maps of SparseMatrix (matrix-sell.cc).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bindings/arrays.h"
#include "bindings/bindings.h"
#include "matrix-sell.h"

namespace pysparse::bind {

namespace {

// row_of or row_len: 8 per slice, None for other formats.
py::object row_map(py::object self, const int32_t* SparseView::*field) {
  const SparseMatrix& s = self.cast<const SparseMatrix&>();
  if (!s.is_sell()) return py::none();
  return readonly_view(s.view().*field, s.view().sell_slices() * 8, self);
}

}  // namespace

void def_sell_matrix(MatrixClass& cls) {
  using S = SparseMatrix;
  cls.def("to_sell",
          [](const S& s) {
            if (!s.is_csr()) throw py::value_error("to_sell() needs a CSR matrix (1x1 blocks)");
            py::gil_scoped_release nogil;
            return sell::from_csr(s);
          })
      .def("to_csr",
           [](const S& s) {
             if (!s.is_sell()) throw py::value_error("to_csr() needs a SELL matrix");
             py::gil_scoped_release nogil;
             return sell::to_csr(s);
           })
      .def_property_readonly("row_of", [](py::object self) { return row_map(self, &SparseView::row_of); })
      .def_property_readonly("row_len", [](py::object self) { return row_map(self, &SparseView::row_len); });
}

}  // namespace pysparse::bind
