// class SparseMatrix: what every format shares (shape, storage views, to_dense).
// Each format's constructors and its own properties are in
// bindings/matrix-<format>.cc; every constructor validates in C++
// (matrix-<format>.cc).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bindings/arrays.h"
#include "bindings/bindings.h"

namespace pysparse::bind {

namespace {

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
  MatrixClass cls(m, "SparseMatrix");
  // The formats, one line each (bindings/matrix-<format>.cc).
  def_bsr_matrix(cls);
  def_nm_matrix(cls);
  def_sell_matrix(cls);

  cls.def_property_readonly("format", [](const S& s) { return format_name(s.format()); })
      // "bsr" for CSR too (its storage is the 1x1 BSR layout); kept for old callers: read .format.
      .def_property_readonly("layout", [](const S& s) { return s.is_csr() ? "bsr" : format_name(s.format()); })
      .def_property_readonly("shape", [](const S& s) { return py::make_tuple(s.rows(), s.cols()); })
      .def_property_readonly("block", [](const S& s) { return py::make_tuple(s.block_r(), s.block_c()); })
      .def_property_readonly("nblocks", &S::nblocks)
      .def_property_readonly("stored_values", &S::stored_values)
      .def_property_readonly("nbytes", &S::nbytes)
      .def_property_readonly("index_dtype", &index_dtype)
      .def_property_readonly("indptr",
                             [](py::object self) {
                               const S& s = self.cast<const S&>();
                               if (s.view().ptr == nullptr) return py::object(py::none());  // N:M has none
                               return py::object(readonly_view(s.view().ptr, s.block_rows() + 1, self));
                             })
      .def_property_readonly("indices",
                             [](py::object self) {
                               const S& s = self.cast<const S&>();
                               const int64_t count = s.stored_indices();
                               switch (s.view().index_width) {
                                 case IndexWidth::u8: return readonly_view(s.view().idx8(), count, self);
                                 case IndexWidth::u16: return readonly_view(s.view().idx16(), count, self);
                                 default: return readonly_view(s.view().idx32(), count, self);
                               }
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
