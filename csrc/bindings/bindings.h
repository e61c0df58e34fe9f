// What module.cc registers: the checked calls (calls.cc), the SparseMatrix
// class (matrix.cc, plus one matrix-<format>.cc per format), CPU and kernel
// facts (info.cc) and the test hooks (testing.cc). Each takes Python objects, checks them (arrays.h) and hands
// plain pointers to the core with the GIL released.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "epilogue.h"
#include "matrix.h"

namespace pysparse::bind {

namespace py = pybind11;

// threads: 0 (default) .. kMaxThreads, as a Python int.
int threads_arg(const py::handle& v);

// activation / residual: the fp32 epilogue (epilogue.h), y = act(W x + b) + residual.
py::array spmm(const SparseMatrix& w, const py::object& x, const py::object& bias, const py::object& threads,
               const py::object& kernel, const py::object& activation, const py::object& residual);
py::array linear(const py::object& x, const SparseMatrix& w, const py::object& bias, const py::object& threads,
                 const py::object& kernel, const py::object& activation, const py::object& residual);
py::array conv2d_shifted(const SparseMatrix& w, const py::object& x, const py::object& kernel_size,
                         const py::object& padding, const py::object& dilation, const py::object& chunk,
                         const py::object& bias, const py::object& threads, const py::object& activation,
                         const py::object& residual);

// activation= and residual= as an Epilogue (calls.cc; qlinear takes them too):
// residual None or float32 of exactly out_shape (`keep` holds a copy alive).
Epilogue epilogue_arg(const py::object& activation, const py::object& residual, const std::vector<int64_t>& out_shape,
                      py::object& keep);

void def_sparse_matrix(py::module_& m);  // class SparseMatrix: shared views and to_dense (matrix.cc)

// Each format's constructors and own properties, on the shared class
// (bindings/matrix-<format>.cc); def_sparse_matrix calls them.
using MatrixClass = py::class_<SparseMatrix>;
void def_bsr_matrix(MatrixClass& cls);   // CSR and BSR
void def_nm_matrix(MatrixClass& cls);
void def_sell_matrix(MatrixClass& cls);

py::dict cpu_info();
py::list kernels();

void def_testing(py::module_& m);

void def_transformer(py::module_& m);  // layer_norm, gelu, attention, transformer_kernels (transformer.cc)  // _core.testing: hooks the tests need, not the package

// int8 (qmatrix.cc): class QMatrix, qlinear, the int8 ISA level.
void def_qmatrix(py::module_& m);
void set_isa_level(const std::string& name);  // f32 and int8 ISA from one PYSPARSE_ISA-style name

// Depthwise convolution (dwconv.cc): dwconv2d, dwconv_kernels.
void def_dwconv(py::module_& m);

}  // namespace pysparse::bind
