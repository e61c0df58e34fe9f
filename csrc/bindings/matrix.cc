// class SparseMatrix: its constructors (every one validates in C++, matrix.cc)
// and read-only numpy views of its storage, kept alive by the matrix.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <string>

#include "bindings/arrays.h"
#include "bindings/bindings.h"

namespace pysparse::bind {

namespace {

// A 2-D float32 array as a C-contiguous, aligned one.
py::array_t<float, py::array::c_style> dense_2d(const py::object& a_obj) {
  py::array a = float32_array(a_obj, "a");
  if (a.ndim() != 2) throw py::value_error("a must be 2-D, got " + std::to_string(a.ndim()) + "-D");
  return contiguous<float>(a);
}

// Any-rank float32 array, flattened (C order) into a contiguous copy or view.
py::array_t<float, py::array::c_style> flat_values(const py::object& obj, const char* what) {
  py::array v = float32_array(obj, what);
  return contiguous<float>(py::reinterpret_borrow<py::array>(v.attr("reshape")(-1)));
}

SparseMatrix from_dense(const py::object& a_obj, int block_r, int block_c) {
  auto c = dense_2d(a_obj);
  const int64_t rows = c.shape(0), cols = c.shape(1);
  py::gil_scoped_release nogil;
  return SparseMatrix::from_dense(c.data(), rows, cols, cols, block_r, block_c);
}

SparseMatrix from_dense_nm(const py::object& a_obj, int n, int m) {
  auto c = dense_2d(a_obj);
  const int64_t rows = c.shape(0), cols = c.shape(1);
  py::gil_scoped_release nogil;
  return SparseMatrix::from_dense_nm(c.data(), rows, cols, cols, n, m);
}

SparseMatrix from_arrays_nm(const py::object& shape, int n, int m, const py::object& values, const py::object& offsets) {
  const auto [rows, cols] = pair_arg(shape, "shape");
  auto vc = flat_values(values, "values");
  py::array off = as_array(offsets, "offsets");
  auto o = index_array(off.attr("reshape")(-1), "offsets");
  py::gil_scoped_release nogil;
  return SparseMatrix::from_arrays_nm(rows, cols, n, m, vc.data(), vc.size(), o.data(), o.size());
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
  return SparseMatrix::from_arrays(rows, cols, R, C, p.data(), p.size(), i.data(), i.size(), dc.data(), dc.size());
}

const char* index_dtype(const SparseMatrix& s) {
  switch (s.view().index_width) {
    case IndexWidth::u16: return "uint16";
    case IndexWidth::u32: return "uint32";
    default: return "uint8";
  }
}

}  // namespace

void def_sparse_matrix(py::module_& m) {
  using S = SparseMatrix;
  py::class_<S>(m, "SparseMatrix")
      .def_static("from_dense", &from_dense, py::arg("a"), py::arg("block_r") = 1, py::arg("block_c") = 1)
      .def_static("from_arrays", &from_arrays, py::arg("shape"), py::arg("block"), py::arg("indptr"),
                  py::arg("indices"), py::arg("data"))
      .def_static("from_dense_nm", &from_dense_nm, py::arg("a"), py::arg("n"), py::arg("m"))
      .def_static("from_arrays_nm", &from_arrays_nm, py::arg("shape"), py::arg("n"), py::arg("m"),
                  py::arg("values"), py::arg("offsets"))
      .def_property_readonly("format", [](const S& s) { return format_name(s.format()); })
      // "bsr" for CSR too (its storage is the 1x1 BSR layout); kept for old callers: read .format.
      .def_property_readonly("layout", [](const S& s) { return s.is_csr() ? "bsr" : format_name(s.format()); })
      .def("to_sell",
           [](const S& s) {
             if (!s.is_csr()) throw py::value_error("to_sell() needs a CSR matrix (1x1 blocks)");
             py::gil_scoped_release nogil;
             return S::sell_from_csr(s);
           })
      .def("to_csr",
           [](const S& s) {
             if (!s.is_sell()) throw py::value_error("to_csr() needs a SELL matrix");
             py::gil_scoped_release nogil;
             return s.csr_from_sell();
           })
      .def_property_readonly("row_of",
                             [](py::object self) {
                               const S& s = self.cast<const S&>();
                               if (!s.is_sell()) return py::object(py::none());
                               return py::object(readonly_view(s.view().row_of, s.view().sell_slices() * 8, self));
                             })
      .def_property_readonly("row_len",
                             [](py::object self) {
                               const S& s = self.cast<const S&>();
                               if (!s.is_sell()) return py::object(py::none());
                               return py::object(readonly_view(s.view().row_len, s.view().sell_slices() * 8, self));
                             })
      .def_property_readonly("nm", [](const S& s) { return py::make_tuple(static_cast<int>(s.view().nm_n), s.view().nm_m()); })
      .def_property_readonly("shape", [](const S& s) { return py::make_tuple(s.rows(), s.cols()); })
      .def_property_readonly("block", [](const S& s) { return py::make_tuple(s.block_r(), s.block_c()); })
      .def_property_readonly("nblocks", &S::nblocks)
      .def_property_readonly("stored_values", &S::stored_values)
      .def_property_readonly("nbytes", &S::nbytes)
      .def_property_readonly("index_dtype", &index_dtype)
      .def_property_readonly("indptr",
                             [](py::object self) {
                               const S& s = self.cast<const S&>();
                               if (s.is_nm()) return py::object(py::none());
                               return py::object(readonly_view(s.view().ptr, s.block_rows() + 1, self));
                             })
      .def_property_readonly("indices",
                             [](py::object self) {
                               const S& s = self.cast<const S&>();
                               if (s.is_nm()) return readonly_view(s.view().idx8(), s.stored_values(), self);
                               const int64_t count = s.is_sell() ? s.stored_values() : s.nblocks();
                               if (s.view().index_width == IndexWidth::u16)
                                 return readonly_view(s.view().idx16(), count, self);
                               return readonly_view(s.view().idx32(), count, self);
                             })
      .def_property_readonly("values",
                             [](py::object self) {
                               const S& s = self.cast<const S&>();
                               return readonly_view(s.view().values, s.stored_values(), self);
                             })
      .def("to_dense", [](const S& s) {
        py::array_t<float> out({s.rows(), s.cols()});
        float* p = out.mutable_data();
        py::gil_scoped_release nogil;
        s.to_dense(p);
        return out;
      });
}

}  // namespace pysparse::bind
