// pysparse._core.testing: entry points the tests need and the package does not.
//   spmm_shifted(w, x, n, bias, threads): the shifted product alone, over a flat
//     padded x (the package runs it only inside conv2d_shifted);
//   threads_for(w, n, threads): how many threads a call of this size uses.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <string>

#include "bindings/arrays.h"
#include "bindings/bindings.h"
#include "spmm.h"

namespace pysparse::bind {

namespace {

// Y[i, j] = sum_p W_p x[idx_p + j] (+ bias[i]) for j < n: the SpMM with ldx = 1
// and W's indices read as offsets into one flat buffer. Every index of W is
// < W.cols, so a buffer of W.cols - 1 + n floats keeps every read in bounds.
py::array spmm_shifted(const SparseMatrix& w, const py::object& x_obj, const py::object& n_obj,
                       const py::object& bias, const py::object& threads_obj) {
  const int threads = threads_arg(threads_obj);
  ShiftedConv::check_shiftable(w, "spmm_shifted");
  py::array x = float32_array(x_obj, "x");
  if (x.ndim() != 1) {
    throw py::value_error("x must be the 1-D flat padded input, got " + std::to_string(x.ndim()) + "-D; use x.reshape(-1)");
  }
  const int64_t len = x.shape(0);
  if (len > 1 && x.strides(0) != static_cast<py::ssize_t>(sizeof(float))) {
    throw py::value_error("x must be contiguous; use numpy.ascontiguousarray(x)");
  }
  if (!aligned(x)) x = contiguous<float>(x);
  const int64_t n = int_arg(n_obj, "n", INT64_MIN, INT64_MAX);
  if (n < 1) throw py::value_error("n must be >= 1, got " + std::to_string(n));
  const int64_t K = w.cols(), M = w.rows();
  // len >= K - 1 + n, written so that no sum can overflow.
  if (len < K || n > len - std::max<int64_t>(K - 1, 0)) {
    throw py::value_error("x is too short: W has " + std::to_string(K) + " columns (offsets) and n = " +
                          std::to_string(n) + ", so x needs at least K - 1 + n = " +
                          (n > INT64_MAX - K ? std::string("(overflow)") : std::to_string(K - 1 + n)) +
                          " floats, got " + std::to_string(len));
  }
  py::object keep;
  const float* b = bias_ptr(bias, M, keep);
  py::array_t<float> y({M, n});
  const float* xp = static_cast<const float*>(x.data());
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    pysparse::spmm(w, xp, 1, n, yp, n, 1, b, threads);
  }
  return y;
}

}  // namespace

void def_testing(py::module_& m) {
  py::module_ t = m.def_submodule("testing", "hooks for pysparse's tests; not part of the package's API");
  t.def("spmm_shifted", &spmm_shifted, py::arg("w"), py::arg("x"), py::arg("n"), py::arg("bias") = py::none(),
        py::arg("threads") = 0,
        "Y[i, j] = sum_p W_p x[idx_p + j] (+ bias[i]), j < n: the direct convolution over a flat padded x "
        "(1-D float32, at least W.cols - 1 + n long); W is CSR or BSR (R, 1). Returns Y (rows, n).");
  t.def("threads_for",
        [](const SparseMatrix& w, const py::object& n, const py::object& threads) {
          return threads_for(w, int_arg(n, "n", 0, INT64_MAX), threads_arg(threads));
        },
        py::arg("w"), py::arg("n"), py::arg("threads") = 0);
}

}  // namespace pysparse::bind
