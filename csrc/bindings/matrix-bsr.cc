// CSR and BSR constructors of SparseMatrix (validated in matrix-bsr.cc).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>

#include "bindings/arrays.h"
#include "bindings/bindings.h"
#include "matrix-bsr.h"

namespace pysparse::bind {

namespace {

SparseMatrix from_dense(const py::object& a, int block_r, int block_c) {
  return from_dense_2d(a, [&](const float* p, int64_t rows, int64_t cols, int64_t lda) {
    return bsr::from_dense(p, rows, cols, lda, block_r, block_c);
  });
}

SparseMatrix from_arrays(const py::object& shape, const py::object& block, const py::object& indptr,
                         const py::object& indices, const py::object& data) {
  const auto [rows, cols] = pair_arg(shape, "shape");
  const auto [r64, c64] = pair_arg(block, "block");
  // Out-of-range blocks stay out of range (check_shape names them) without overflowing int.
  const int R = static_cast<int>(std::min<int64_t>(r64, 1 << 20)), C = static_cast<int>(std::min<int64_t>(c64, 1 << 20));
  auto p = index_array(indptr, "indptr");
  auto i = index_array(indices, "indices");
  auto dc = flat_values(data, "data");
  py::gil_scoped_release nogil;
  return bsr::from_arrays(rows, cols, R, C, p.data(), p.size(), i.data(), i.size(), dc.data(), dc.size());
}

}  // namespace

void def_bsr_matrix(MatrixClass& cls) {
  cls.def_static("from_dense", &from_dense, py::arg("a"), py::arg("block_r") = 1, py::arg("block_c") = 1)
      .def_static("from_arrays", &from_arrays, py::arg("shape"), py::arg("block"), py::arg("indptr"),
                  py::arg("indices"), py::arg("data"));
}

}  // namespace pysparse::bind
