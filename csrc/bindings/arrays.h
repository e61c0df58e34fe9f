// numpy in, numpy out: the checks every binding shares. Nothing reaches the C++
// core from Python without passing one of these first.
//
// The rules: a float input is float32 (TypeError otherwise, saying how to
// convert); an index input is any integer dtype, range-checked in C++ later;
// every copy is made by numpy (numpy.require), so a copy that cannot be
// allocated raises MemoryError instead of handing back a null array; memory
// the kernels read in place is aligned (an unaligned float load is undefined
// behaviour); ints arrive as Python ints and are range-checked here, so a value
// past 64 bits is a ValueError, not pybind11's RuntimeError.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <cstdint>
#include <string>

namespace pysparse::bind {

namespace py = pybind11;

inline std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }
inline std::string type_str(const py::handle& v) { return py::str(py::type::of(v)).cast<std::string>(); }

inline py::array as_array(const py::handle& obj, const char* what) {
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(std::string(what) + " must be a numpy array, got " + type_str(obj));
  }
  return py::reinterpret_borrow<py::array>(obj);
}

// A float32 array, or TypeError that says how to get one.
inline py::array float32_array(const py::handle& obj, const char* what) {
  py::array a = as_array(obj, what);
  if (!a.dtype().is(py::dtype::of<float>())) {
    throw py::type_error(std::string(what) + " must be float32, got " + dtype_str(a) + "; convert it with " + what +
                         ".astype(numpy.float32)");
  }
  return a;
}

inline bool aligned(const py::array& a) { return (a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_) != 0; }

// numpy.require, looked up once and never released (no destructor may run
// after the interpreter has gone at exit).
inline const py::object& numpy_require() {
  static const py::object* f = new py::object(py::module_::import("numpy").attr("require"));
  return *f;
}

// A C-contiguous, aligned copy of a with dtype T (a itself when it already is
// one). pybind11's array_t::ensure returned a null array when the copy failed
// (a broadcast view of 2**40 rows) and the kernels read through it.
template <class T>
py::array_t<T, py::array::c_style> contiguous(const py::array& a) {
  // Already right (the common case, e.g. every bias): no Python call on the hot path.
  if (a.dtype().is(py::dtype::of<T>()) && (a.flags() & py::array::c_style) && aligned(a)) {
    return py::reinterpret_borrow<py::array_t<T, py::array::c_style>>(a);
  }
  py::object c = numpy_require()(a, py::dtype::of<T>(), "CA");
  return py::reinterpret_borrow<py::array_t<T, py::array::c_style>>(c);
}

// An integer array of any dtype, as contiguous int64 (values are range-checked
// by the C++ constructors; uint64 above 2**63 wraps negative and is refused there).
inline py::array_t<int64_t, py::array::c_style> index_array(const py::handle& obj, const char* what) {
  py::array a = as_array(obj, what);
  const char kind = a.dtype().kind();
  if (kind != 'i' && kind != 'u') {
    throw py::type_error(std::string(what) + " must be an integer array, got " + dtype_str(a));
  }
  if (a.ndim() != 1) throw py::value_error(std::string(what) + " must be 1-D, got " + std::to_string(a.ndim()) + "-D");
  return contiguous<int64_t>(a);
}

// build(data, rows, cols, lda) on the 2-D float32 array a (C-contiguous,
// aligned), with the GIL released: a format's from_dense.
template <class Build>
auto from_dense_2d(const py::object& a_obj, Build&& build) {
  py::array a = float32_array(a_obj, "a");
  if (a.ndim() != 2) throw py::value_error("a must be 2-D, got " + std::to_string(a.ndim()) + "-D");
  auto c = contiguous<float>(a);
  const int64_t rows = c.shape(0), cols = c.shape(1);
  py::gil_scoped_release nogil;
  return build(c.data(), rows, cols, cols);
}

// Any-rank float32 array, flattened (C order) into a contiguous copy or view.
inline py::array_t<float, py::array::c_style> flat_values(const py::object& obj, const char* what) {
  py::array v = float32_array(obj, what);
  return contiguous<float>(py::reinterpret_borrow<py::array>(v.attr("reshape")(-1)));
}

// A read-only numpy view of memory owned by `owner`.
template <class T>
py::array readonly_view(const T* data, int64_t n, py::handle owner) {
  py::array a(py::dtype::of<T>(), {n}, {static_cast<int64_t>(sizeof(T))}, data, owner);
  py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return a;
}

// A Python int (not bool) in [lo, hi], or TypeError / ValueError naming `what`.
inline int64_t int_arg(const py::handle& v, const char* what, int64_t lo, int64_t hi) {
  if (PyBool_Check(v.ptr()) || !PyLong_Check(v.ptr())) {
    throw py::type_error(std::string(what) + " must be an int, got " + type_str(v));
  }
  int overflow = 0;
  const long long x = PyLong_AsLongLongAndOverflow(v.ptr(), &overflow);
  if (overflow != 0 || x < lo || x > hi) {
    throw py::value_error(std::string(what) + " must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                          ", got " + py::str(v).cast<std::string>().substr(0, 40));
  }
  return x;
}

// (a, b) from a Python sequence of two non-negative ints below 2**63.
inline std::array<int64_t, 2> pair_arg(const py::object& seq_obj, const char* what) {
  if (!py::isinstance<py::sequence>(seq_obj) || py::len(seq_obj) != 2) {
    throw py::type_error(std::string(what) + " must be a pair of ints");
  }
  py::sequence seq = seq_obj;
  std::array<int64_t, 2> out{};
  for (int i = 0; i < 2; ++i) {
    py::object v = seq[i];
    if (PyBool_Check(v.ptr()) || !PyLong_Check(v.ptr())) {
      throw py::type_error(std::string(what) + " must hold ints, got " + type_str(v));
    }
    int overflow = 0;
    out[i] = PyLong_AsLongLongAndOverflow(v.ptr(), &overflow);
    if (overflow != 0 || out[i] < 0) {
      throw py::value_error(std::string(what) + " must be non-negative and below 2**63, got " +
                            py::str(seq_obj).cast<std::string>().substr(0, 80));
    }
  }
  return out;
}

// x of linear / qlinear: float32, 1-D (K,) or 2-D (batch, K) with K = W's columns;
// returns it and sets batch. The one place these checks and their messages live.
inline py::array linear_input(const py::object& x_obj, int64_t M, int64_t K, int64_t& batch) {
  py::array x = float32_array(x_obj, "x");
  if (x.ndim() != 1 && x.ndim() != 2) {
    throw py::value_error("x must be 1-D (K,) or 2-D (batch, K), got " + std::to_string(x.ndim()) + "-D");
  }
  const int64_t kx = x.shape(x.ndim() - 1);
  if (kx != K) {
    throw py::value_error("shape mismatch: W is " + std::to_string(M) + "x" + std::to_string(K) +
                          " (out x in) but x has " + std::to_string(kx) + " features; x must be (batch, " +
                          std::to_string(K) + ")");
  }
  batch = x.ndim() == 2 ? x.shape(0) : 1;
  return x;
}

// bias: None or float32 (M,); `keep` holds the (possibly copied) array alive.
inline const float* bias_ptr(const py::object& bias, int64_t M, py::object& keep) {
  if (bias.is_none()) return nullptr;
  py::array b = float32_array(bias, "bias");
  if (b.ndim() != 1 || b.shape(0) != M) {
    throw py::value_error("bias must have shape (" + std::to_string(M) + ",), got " +
                          py::str(b.attr("shape")).cast<std::string>());
  }
  auto c = contiguous<float>(b);
  keep = c;
  return c.data();
}

}  // namespace pysparse::bind
