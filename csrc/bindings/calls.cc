// The checked calls: spmm, linear, conv2d_shifted. Each checks x (dtype, rank,
// shape, strides, alignment), decides once whether it can be read in place or
// must be copied (numpy makes the copy: MemoryError when it cannot), then runs
// the core with the GIL released. Attributes of the weight were validated when
// it was built; geometry is checked by ShiftedConv::make.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/arrays.h"
#include "bindings/bindings.h"
#include "dispatch.h"
#include "epilogue.h"
#include "parallel.h"
#include "spmm.h"

namespace pysparse::bind {

int threads_arg(const py::handle& v) { return static_cast<int>(int_arg(v, "threads", 0, kMaxThreads)); }

namespace {

const KernelInfo* kernel_by_name(const py::object& name) {
  if (name.is_none()) return nullptr;
  const std::string s = name.cast<std::string>();
  const KernelInfo* k = find_kernel(s);
  if (k == nullptr) throw py::value_error("unknown kernel '" + s + "'; see pysparse._core.kernels()");
  if (!isa_supported(k->isa)) throw py::value_error("kernel '" + s + "' cannot run on this CPU");
  return k;
}

// A forced kernel must fit: same format (BSR kernels also run CSR, its 1x1
// case), same block rows, n1 exactly for n == 1.
void check_kernel_matches(const KernelInfo* k, const SparseMatrix& w, int64_t n) {
  if (k == nullptr) return;
  const bool format_ok = k->format == w.format() || (k->format == Format::bsr && w.is_csr());
  if (!format_ok || k->block_r != w.block_r() || (k->batch == Batch::n1) != (n == 1)) {
    throw py::value_error(std::string("kernel ") + k->name + " does not fit this matrix / batch");
  }
}

std::string dims(int64_t m, int64_t k) { return std::to_string(m) + "x" + std::to_string(k); }

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

}  // namespace

// activation= and residual= (epilogue.h): a name, and None or a float32 array
// of exactly the output's shape (copied C-contiguous when it is not; `keep`
// holds the copy alive for the call).
Epilogue epilogue_arg(const py::object& activation, const py::object& residual, const std::vector<int64_t>& out_shape,
                      py::object& keep) {
  Epilogue ep;
  if (!py::isinstance<py::str>(activation)) {
    throw py::type_error("activation must be a str ('none', 'relu', 'relu6', 'gelu_erf', 'gelu_tanh'), got " +
                         type_str(activation));
  }
  try {
    ep.act = activation_from_name(activation.cast<std::string>());
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
  if (residual.is_none()) return ep;
  py::array r = float32_array(residual, "residual");
  std::vector<int64_t> got(r.shape(), r.shape() + r.ndim());
  if (got != out_shape) {
    throw py::value_error("residual must have the output's shape " + shape_str(out_shape) + ", got " +
                          shape_str(got));
  }
  r = contiguous<float>(r);
  keep = r;
  ep.residual = static_cast<const float*>(r.data());
  return ep;
}

py::array spmm(const SparseMatrix& w, const py::object& x_obj, const py::object& bias, const py::object& threads_obj,
               const py::object& kernel_name, const py::object& activation, const py::object& residual) {
  const int threads = threads_arg(threads_obj);
  py::array x = float32_array(x_obj, "x");
  if (x.ndim() != 1 && x.ndim() != 2) {
    throw py::value_error("x must be 1-D (K,) or 2-D (K, N), got " + std::to_string(x.ndim()) + "-D");
  }
  const int64_t K = w.cols(), M = w.rows();
  if (x.shape(0) != K) {
    throw py::value_error("shape mismatch: W is " + dims(M, K) + " but x has " + std::to_string(x.shape(0)) +
                          " rows; x must be (K, N) = (" + std::to_string(K) + ", N)");
  }
  const int64_t n = x.ndim() == 2 ? x.shape(1) : 1;
  const KernelInfo* k = kernel_by_name(kernel_name);
  check_kernel_matches(k, w, n);
  // In place when rows of X have unit stride along N and any row stride >= N
  // (a strided column, n == 1 with a row stride > 4, too: the driver gathers it).
  int64_t ldx = n;
  const bool usable = aligned(x) && (x.ndim() == 1 ? (x.strides(0) == 4 || K <= 1)
                                                    : ((x.strides(1) == 4 || n <= 1) && x.strides(0) >= 4 * n &&
                                                       x.strides(0) % 4 == 0));
  if (usable) {
    if (x.ndim() == 2 && K > 1) ldx = x.strides(0) / 4;
  } else {
    x = contiguous<float>(x);
  }
  py::object keep, keep_r;
  const float* b = bias_ptr(bias, M, keep);
  const Epilogue ep = epilogue_arg(activation, residual, x.ndim() == 2 ? std::vector<int64_t>{M, n} : std::vector<int64_t>{M}, keep_r);
  py::array_t<float> y = x.ndim() == 2 ? py::array_t<float>({M, n}) : py::array_t<float>({M});
  const float* xp = static_cast<const float*>(x.data());
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    pysparse::spmm(w, xp, ldx, n, yp, n, 1, b, threads, k, ep);
  }
  return y;
}

py::array linear(const py::object& x_obj, const SparseMatrix& w, const py::object& bias, const py::object& threads_obj,
                 const py::object& kernel_name, const py::object& activation, const py::object& residual) {
  const int threads = threads_arg(threads_obj);
  const int64_t K = w.cols(), M = w.rows();
  int64_t batch = 0;
  py::array x = linear_input(x_obj, M, K, batch);
  const KernelInfo* k = kernel_by_name(kernel_name);
  check_kernel_matches(k, w, batch);
  bool transposed = false;
  const int flags = x.flags();
  if (!aligned(x)) {
    x = contiguous<float>(x);
  } else if (x.ndim() == 2 && batch > 1 && !(flags & py::array::c_style) && (flags & py::array::f_style)) {
    transposed = true;  // memory is X^T (K, batch), C-contiguous: zero copy
  } else if (!(flags & py::array::c_style)) {
    x = contiguous<float>(x);
  }
  py::object keep, keep_r;
  const float* b = bias_ptr(bias, M, keep);
  const Epilogue ep =
      epilogue_arg(activation, residual, x.ndim() == 2 ? std::vector<int64_t>{batch, M} : std::vector<int64_t>{M}, keep_r);
  py::array_t<float> y = x.ndim() == 2 ? py::array_t<float>({batch, M}) : py::array_t<float>({M});
  const float* xp = static_cast<const float*>(x.data());
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    pysparse::linear(w, xp, transposed, batch, yp, b, threads, k, ep);
  }
  return y;
}

// The whole direct convolution in one call (spmm.h, conv2d_shifted): pads
// `chunk` images side by side, runs the shifted product and crops the wide
// result into y (N, M, Ho, Wo) per thread while it is in cache. W is the offset
// matrix ops builds for this geometry; whatever W holds, every read stays
// inside the padded buffer (ShiftedConv::check_weight).
py::array conv2d_shifted(const SparseMatrix& w, const py::object& x_obj, const py::object& kernel_size,
                         const py::object& padding, const py::object& dilation, const py::object& chunk,
                         const py::object& bias, const py::object& threads_obj, const py::object& activation,
                         const py::object& residual) {
  const int threads = threads_arg(threads_obj);
  ShiftedConv::check_shiftable(w, "conv2d_shifted");
  py::array x = float32_array(x_obj, "x");
  if (x.ndim() != 4) throw py::value_error("x must be 4-D (N, C, H, W), got " + std::to_string(x.ndim()) + "-D");
  if (!(x.flags() & py::array::c_style)) {
    throw py::value_error("x must be C-contiguous; use numpy.ascontiguousarray(x)");
  }
  if (!aligned(x)) x = contiguous<float>(x);
  const auto ks = pair_arg(kernel_size, "kernel_size"), pad = pair_arg(padding, "padding"),
             dil = pair_arg(dilation, "dilation");
  const ShiftedConv g = ShiftedConv::make(x.shape(0), x.shape(1), x.shape(2), x.shape(3), ks.data(), pad.data(),
                                          dil.data(), int_arg(chunk, "chunk", INT64_MIN, INT64_MAX));
  g.check_weight(w);
  py::object keep, keep_r;
  const float* b = bias_ptr(bias, w.rows(), keep);
  const Epilogue ep = epilogue_arg(activation, residual, {g.images, w.rows(), g.out_h(), g.out_w()}, keep_r);
  py::array_t<float> y({g.images, w.rows(), g.out_h(), g.out_w()});
  const float* xp = static_cast<const float*>(x.data());
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    pysparse::conv2d_shifted(w, xp, g, yp, b, threads, ep);
  }
  return y;
}

}  // namespace pysparse::bind
