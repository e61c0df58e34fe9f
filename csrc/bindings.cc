// pybind11 only: type and shape checks, buffer views, GIL release. Everything
// that reaches the C++ core from Python passes through a check here first.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "dispatch.h"
#include "matrix.h"
#include "parallel.h"
#include "spmm.h"

namespace py = pybind11;
using namespace pysparse;

namespace {

std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

py::array as_array(const py::handle& obj, const char* what) {
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(std::string(what) + " must be a numpy array, got " +
                         py::str(py::type::of(obj)).cast<std::string>());
  }
  return py::reinterpret_borrow<py::array>(obj);
}

// A float32 array, or TypeError that says how to get one.
py::array float32_array(const py::handle& obj, const char* what) {
  py::array a = as_array(obj, what);
  if (!a.dtype().is(py::dtype::of<float>())) {
    throw py::type_error(std::string(what) + " must be float32, got " + dtype_str(a) + "; convert it with " +
                         what + ".astype(numpy.float32)");
  }
  return a;
}

// An integer array converted to int64 (values are range-checked in C++ later).
// numpy.require, looked up once and never released (no destructor may run
// after the interpreter has gone at exit).
const py::object& numpy_require() {
  static const py::object* f = new py::object(py::module_::import("numpy").attr("require"));
  return *f;
}

py::array_t<int64_t, py::array::c_style> index_array(const py::handle& obj, const char* what) {
  py::array a = as_array(obj, what);
  const char kind = a.dtype().kind();
  if (kind != 'i' && kind != 'u') {
    throw py::type_error(std::string(what) + " must be an integer array, got " + dtype_str(a));
  }
  if (a.ndim() != 1) throw py::value_error(std::string(what) + " must be 1-D, got " + std::to_string(a.ndim()) + "-D");
  if (kind == 'u' && a.itemsize() == 8) {
    // uint64 above 2**63 would wrap to negative: still rejected as out of range.
  }
  // numpy makes the copy, so a failed allocation is a MemoryError.
  return py::reinterpret_borrow<py::array_t<int64_t, py::array::c_style>>(
      numpy_require()(a, py::dtype::of<int64_t>(), "CA"));
}

// Whether the kernels may read a's memory as float32 where it lies: float loads
// from an unaligned address are undefined behaviour (UBSan reports them), so an
// unaligned numpy array (np.frombuffer at an odd offset) is copied first.
bool aligned(const py::array& a) { return (a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_) != 0; }

// A C-contiguous, aligned float32 copy of a (or a itself when it already is
// one), made by numpy so that its errors arrive as Python exceptions: a copy
// that cannot be allocated (a broadcast view of 2**40 rows) raises MemoryError.
// pybind11's array_t::ensure returned a null array there, and the kernels read
// through its null pointer (a segfault).
py::array_t<float, py::array::c_style> c_contiguous(const py::array& a) {
  py::object c = numpy_require()(a, py::dtype::of<float>(), "CA");
  auto out = py::reinterpret_borrow<py::array_t<float, py::array::c_style>>(c);
  if (out.ptr() == nullptr || (out.size() > 0 && out.data() == nullptr)) throw std::bad_alloc();
  return out;
}

// A Python int (not bool) in [lo, hi], or TypeError / ValueError naming `what`:
// pybind11's own int cast raises RuntimeError past 64 bits and a signature dump
// for a wrong type.
int64_t int_arg(const py::handle& v, const char* what, int64_t lo, int64_t hi) {
  if (PyBool_Check(v.ptr()) || !PyLong_Check(v.ptr())) {
    throw py::type_error(std::string(what) + " must be an int, got " + py::str(py::type::of(v)).cast<std::string>());
  }
  int overflow = 0;
  const long long x = PyLong_AsLongLongAndOverflow(v.ptr(), &overflow);
  if (overflow != 0 || x < lo || x > hi) {
    throw py::value_error(std::string(what) + " must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                          ", got " + py::str(v).cast<std::string>().substr(0, 40));
  }
  return x;
}

int threads_arg(const py::handle& v) { return static_cast<int>(int_arg(v, "threads", 0, kMaxThreads)); }

// (rows, cols) from a Python sequence of two ints.
std::array<int64_t, 2> shape_arg(const py::object& shape, const char* what) {
  if (!py::isinstance<py::sequence>(shape) || py::len(shape) != 2) {
    throw py::value_error(std::string(what) + " must be a pair of ints (rows, cols)");
  }
  py::sequence seq = shape;
  std::array<int64_t, 2> out{};
  for (int i = 0; i < 2; ++i) {
    py::object v = seq[i];
    if (PyBool_Check(v.ptr()) || !PyLong_Check(v.ptr())) {
      throw py::type_error(std::string(what) + " must hold ints, got " + py::str(py::type::of(v)).cast<std::string>());
    }
    int overflow = 0;
    out[i] = PyLong_AsLongLongAndOverflow(v.ptr(), &overflow);
    if (overflow != 0 || out[i] < 0) {
      throw py::value_error(std::string(what) + " must be non-negative and below 2**63, got " +
                            py::str(shape).cast<std::string>().substr(0, 80));
    }
  }
  return out;
}

// A read-only numpy view of memory owned by `owner`.
template <class T>
py::array readonly_view(const T* data, int64_t n, py::handle owner) {
  py::array a(py::dtype::of<T>(), {n}, {static_cast<int64_t>(sizeof(T))}, data, owner);
  py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return a;
}

const KernelInfo* kernel_by_name(const py::object& name) {
  if (name.is_none()) return nullptr;
  const std::string s = name.cast<std::string>();
  const KernelInfo* k = find_kernel(s);
  if (k == nullptr) throw py::value_error("unknown kernel '" + s + "'; see pysparse._core.kernels()");
  if (!isa_supported(k->isa)) throw py::value_error("kernel '" + s + "' cannot run on this CPU");
  return k;
}

const float* bias_ptr(const py::object& bias, int64_t M, py::object& keep) {
  if (bias.is_none()) return nullptr;
  py::array b = float32_array(bias, "bias");
  if (b.ndim() != 1 || b.shape(0) != M) {
    throw py::value_error("bias must have shape (" + std::to_string(M) + ",), got " +
                          py::str(b.attr("shape")).cast<std::string>());
  }
  auto c = c_contiguous(b);
  keep = c;
  return c.data();
}

void check_kernel_matches(const KernelInfo* k, const SparseMatrix& w, int64_t n) {
  if (k == nullptr) return;
  const Layout layout = w.view().layout;
  const bool format_ok = k->format == Format::csr    ? w.is_csr()
                         : k->format == Format::sell ? layout == Layout::sell
                         : k->format == Format::nm   ? layout == Layout::nm
                                                     : layout == Layout::bsr;
  if (!format_ok || k->block_r != w.block_r() || (k->batch == Batch::n1) != (n == 1)) {
    throw py::value_error(std::string("kernel ") + k->name + " does not fit this matrix / batch");
  }
}

py::array spmm_py(const SparseMatrix& w, const py::object& x_obj, const py::object& bias, const py::object& threads_obj,
                  const py::object& kernel_name) {
  const int threads = threads_arg(threads_obj);
  py::array x = float32_array(x_obj, "x");
  if (x.ndim() != 1 && x.ndim() != 2) {
    throw py::value_error("x must be 1-D (K,) or 2-D (K, N), got " + std::to_string(x.ndim()) + "-D");
  }
  const int64_t K = w.cols(), M = w.rows();
  if (x.shape(0) != K) {
    throw py::value_error("shape mismatch: W is " + std::to_string(M) + "x" + std::to_string(K) + " but x has " +
                          std::to_string(x.shape(0)) + " rows; x must be (K, N) = (" + std::to_string(K) + ", N)");
  }
  const int64_t n = x.ndim() == 2 ? x.shape(1) : 1;
  const KernelInfo* k = kernel_by_name(kernel_name);
  check_kernel_matches(k, w, n);
  // Rows of X need unit stride along N; any row stride >= N is fine.
  int64_t ldx = n;
  // (A strided column, n == 1 with a row stride > 4, is fine too: the driver
  // gathers it.)
  const bool usable = aligned(x) && (x.ndim() == 1 ? (x.strides(0) == 4 || K <= 1)
                                                    : ((x.strides(1) == 4 || n <= 1) && x.strides(0) >= 4 * n &&
                                                       x.strides(0) % 4 == 0));
  if (usable) {
    if (x.ndim() == 2 && K > 1) ldx = x.strides(0) / 4;
  } else {
    x = c_contiguous(x);
  }
  py::object keep;
  const float* b = bias_ptr(bias, M, keep);
  py::array_t<float> y = x.ndim() == 2 ? py::array_t<float>({M, n}) : py::array_t<float>({M});
  const float* xp = static_cast<const float*>(x.data());
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    spmm(w, xp, ldx, n, yp, n, 1, b, threads, k);
  }
  return y;
}

// The direct ("shifted rows") convolution: Y[i, j] = sum_p w_p x[idx_p + j]
// (+ bias[i]) for j < n, i.e. the SpMM with ldx = 1 and W's indices read as
// offsets into one flat buffer. ops.conv2d builds such a W from a conv weight
// (offset of column (ci, a, b) = ci * plane + a * dh * row + b * dw) and x is the
// zero-padded image, so no im2col copy is made. Every index of W is < W.cols,
// so a buffer of W.cols - 1 + n floats keeps every read in bounds.
void check_shiftable(const SparseMatrix& w, const char* what) {
  if (w.is_nm() || w.is_sell() || w.block_c() != 1) {
    const std::string got = w.is_nm() ? std::string("an N:M matrix")
                            : w.is_sell() ? std::string("a SELL matrix (use its to_csr())")
                                      : "a BSR matrix with " + std::to_string(w.block_r()) + "x" +
                                            std::to_string(w.block_c()) + " blocks";
    throw py::value_error(std::string(what) +
                          " needs a CSR matrix or a BSR matrix with (R, 1) blocks (a block of C > 1 consecutive "
                          "columns does not map to consecutive offsets); got " + got);
  }
}

py::array spmm_shifted_py(const SparseMatrix& w, const py::object& x_obj, const py::object& n_obj,
                          const py::object& bias, const py::object& threads_obj) {
  const int threads = threads_arg(threads_obj);
  const int64_t n = int_arg(n_obj, "n", INT64_MIN, INT64_MAX);
  check_shiftable(w, "spmm_shifted");
  py::array x = float32_array(x_obj, "x");
  if (x.ndim() != 1) {
    throw py::value_error("x must be the 1-D flat padded input, got " + std::to_string(x.ndim()) +
                          "-D; use x.reshape(-1)");
  }
  const int64_t len = x.shape(0);
  if (len > 1 && x.strides(0) != static_cast<py::ssize_t>(sizeof(float))) {
    throw py::value_error("x must be contiguous; use numpy.ascontiguousarray(x)");
  }
  if (!aligned(x)) x = c_contiguous(x);
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
    spmm(w, xp, 1, n, yp, n, 1, b, threads);
  }
  return y;
}

// The whole direct convolution in one call (spmm.h, conv2d_shifted): pads
// `chunk` images side by side, runs the shifted product and crops the wide
// result into y (N, M, Ho, Wo) per thread while it is in cache. W is the offset
// matrix ops._conv_shifted builds for this geometry; whatever W holds, every
// read stays inside the padded buffer (checked below).
py::array conv2d_shifted_py(const SparseMatrix& w, const py::object& x_obj, std::array<int64_t, 2> kernel_size,
                            std::array<int64_t, 2> padding, std::array<int64_t, 2> dilation, int64_t chunk,
                            const py::object& bias, const py::object& threads_obj) {
  const int threads = threads_arg(threads_obj);
  check_shiftable(w, "conv2d_shifted");
  py::array x = float32_array(x_obj, "x");
  if (x.ndim() != 4) throw py::value_error("x must be 4-D (N, C, H, W), got " + std::to_string(x.ndim()) + "-D");
  if (!(x.flags() & py::array::c_style)) {
    throw py::value_error("x must be C-contiguous; use numpy.ascontiguousarray(x)");
  }
  if (!aligned(x)) x = c_contiguous(x);
  constexpr int64_t kMaxDim = int64_t{1} << 20;
  for (int i = 0; i < 2; ++i) {
    if (kernel_size[i] < 1 || kernel_size[i] > kMaxDim || dilation[i] < 1 || dilation[i] > kMaxDim ||
        padding[i] < 0 || padding[i] > kMaxDim) {
      throw py::value_error("kernel_size and dilation must be in [1, 2**20] and padding in [0, 2**20]");
    }
  }
  if (chunk < 1 || chunk > kMaxDim) throw py::value_error("chunk must be in [1, 2**20], got " + std::to_string(chunk));
  ShiftedConv g{x.shape(0), x.shape(1), x.shape(2), x.shape(3), padding[0], padding[1],
                dilation[0] * (kernel_size[0] - 1), dilation[1] * (kernel_size[1] - 1), chunk};
  if (g.out_h() < 1 || g.out_w() < 1) {
    throw py::value_error("the kernel (with dilation) is larger than the padded input: output " +
                          std::to_string(g.out_h()) + "x" + std::to_string(g.out_w()));
  }
  // Sizes as doubles first: no int64 product below may overflow.
  const double buffer = static_cast<double>(g.channels) * g.padded_h() * g.padded_w() * g.chunk + g.span_w;
  if (buffer > 1e12) throw py::value_error("the padded input is too large");
  const int64_t M = w.rows(), K = w.cols(), n = g.wide_n();
  if (K - 1 + n > g.buffer()) {
    throw py::value_error("W's offsets do not fit this geometry: W has " + std::to_string(K) +
                          " columns, the padded chunk of " + std::to_string(g.chunk) + " image(s) holds " +
                          std::to_string(g.buffer()) + " floats and the wide product needs K - 1 + " +
                          std::to_string(n) + "; build W for this input size");
  }
  py::object keep;
  const float* b = bias_ptr(bias, M, keep);
  py::array_t<float> y({g.images, M, g.out_h(), g.out_w()});
  const float* xp = static_cast<const float*>(x.data());
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    conv2d_shifted(w, xp, g, yp, b, threads);
  }
  return y;
}

py::array linear_py(const py::object& x_obj, const SparseMatrix& w, const py::object& bias,
                    const py::object& threads_obj, const py::object& kernel_name) {
  const int threads = threads_arg(threads_obj);
  py::array x = float32_array(x_obj, "x");
  if (x.ndim() != 1 && x.ndim() != 2) {
    throw py::value_error("x must be 1-D (K,) or 2-D (batch, K), got " + std::to_string(x.ndim()) + "-D");
  }
  const int64_t K = w.cols(), M = w.rows();
  const int64_t kx = x.shape(x.ndim() - 1);
  if (kx != K) {
    throw py::value_error("shape mismatch: W is " + std::to_string(M) + "x" + std::to_string(K) + " (out x in) but x has " +
                          std::to_string(kx) + " features; x must be (batch, " + std::to_string(K) + ")");
  }
  const int64_t batch = x.ndim() == 2 ? x.shape(0) : 1;
  const KernelInfo* k = kernel_by_name(kernel_name);
  check_kernel_matches(k, w, batch);
  bool transposed = false;
  const int flags = x.flags();
  if (!aligned(x)) {
    x = c_contiguous(x);
  } else if (x.ndim() == 2 && batch > 1 && !(flags & py::array::c_style) && (flags & py::array::f_style)) {
    transposed = true;  // memory is X^T (K, batch), C-contiguous: zero copy
  } else if (!(flags & py::array::c_style)) {
    x = c_contiguous(x);
  }
  py::object keep;
  const float* b = bias_ptr(bias, M, keep);
  py::array_t<float> y = x.ndim() == 2 ? py::array_t<float>({batch, M}) : py::array_t<float>({M});
  const float* xp = static_cast<const float*>(x.data());
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    linear(w, xp, transposed, batch, yp, b, threads, k);
  }
  return y;
}

SparseMatrix from_dense_py(const py::object& a_obj, int block_r, int block_c) {
  py::array a = float32_array(a_obj, "a");
  if (a.ndim() != 2) throw py::value_error("a must be 2-D, got " + std::to_string(a.ndim()) + "-D");
  auto c = c_contiguous(a);
  const int64_t rows = c.shape(0), cols = c.shape(1);
  py::gil_scoped_release nogil;
  return SparseMatrix::from_dense(c.data(), rows, cols, cols, block_r, block_c);
}

SparseMatrix from_dense_nm_py(const py::object& a_obj, int n, int m) {
  py::array a = float32_array(a_obj, "a");
  if (a.ndim() != 2) throw py::value_error("a must be 2-D, got " + std::to_string(a.ndim()) + "-D");
  auto c = c_contiguous(a);
  const int64_t rows = c.shape(0), cols = c.shape(1);
  py::gil_scoped_release nogil;
  return SparseMatrix::from_dense_nm(c.data(), rows, cols, cols, n, m);
}

SparseMatrix from_arrays_nm_py(const py::object& shape, int n, int m, const py::object& values,
                               const py::object& offsets) {
  const auto [rows, cols] = shape_arg(shape, "shape");
  py::array v = float32_array(values, "values");
  auto vc = c_contiguous(v.attr("reshape")(-1));
  auto o = index_array(py::array(offsets.attr("reshape")(-1)), "offsets");
  py::gil_scoped_release nogil;
  return SparseMatrix::from_arrays_nm(rows, cols, n, m, vc.data(), vc.size(), o.data(), o.size());
}

SparseMatrix from_arrays_py(const py::object& shape, const py::object& block, const py::object& indptr,
                            const py::object& indices, const py::object& data) {
  const auto [rows, cols] = shape_arg(shape, "shape");
  const auto [r64, c64] = shape_arg(block, "block");
  const int R = static_cast<int>(std::min<int64_t>(r64, 1 << 20)), C = static_cast<int>(std::min<int64_t>(c64, 1 << 20));
  auto p = index_array(indptr, "indptr");
  auto i = index_array(indices, "indices");
  py::array d = float32_array(data, "data");
  auto dc = c_contiguous(d.attr("reshape")(-1));
  py::gil_scoped_release nogil;
  return SparseMatrix::from_arrays(rows, cols, R, C, p.data(), p.size(), i.data(), i.size(), dc.data(), dc.size());
}

py::dict cpu_info_py() {
  const CpuFeatures& f = cpu_features();
  py::dict d;
  d["isa"] = isa_name(active_isa());
  d["arch"] = f.arch;
  py::list runnable, built;
  for (Isa isa : runnable_isas()) runnable.append(isa_name(isa));
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::neon})
    if (isa_built(isa)) built.append(isa_name(isa));
  d["runnable"] = runnable;
  d["built"] = built;
  py::dict feats;
  feats["avx2"] = f.avx2;
  feats["fma"] = f.fma;
  feats["bmi1"] = f.bmi1;
  feats["f16c"] = f.f16c;
  feats["avx512f"] = f.avx512f;
  feats["avx512vnni"] = f.avx512vnni;
  feats["avx512bf16"] = f.avx512bf16;
  feats["neon"] = f.neon;
  feats["asimddp"] = f.asimddp;
  d["features"] = feats;
  d["threads"] = get_num_threads();
  d["default_threads"] = default_num_threads();
  py::dict in_use;
  const Isa isa = active_isa();
  in_use["csr_n1"] = select_kernel(isa, Format::csr, 1, Batch::n1).name;
  in_use["csr_nx"] = select_kernel(isa, Format::csr, 1, Batch::nx).name;
  for (int r : {1, 2, 4, 8, 16}) {
    in_use[py::str("bsr_" + std::to_string(r) + "xc_n1")] = select_kernel(isa, Format::bsr, r, Batch::n1).name;
    in_use[py::str("bsr_" + std::to_string(r) + "xc_nx")] = select_kernel(isa, Format::bsr, r, Batch::nx).name;
  }
  in_use["nm_8xm_n1"] = select_kernel(isa, Format::nm, 8, Batch::n1).name;
  in_use["nm_8xm_nx"] = select_kernel(isa, Format::nm, 8, Batch::nx).name;
  in_use["sell_n1"] = select_kernel(isa, Format::sell, 8, Batch::n1).name;
  in_use["sell_nx"] = select_kernel(isa, Format::sell, 8, Batch::nx).name;
  d["kernels"] = in_use;
  return d;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "pysparse C++ core: sparse formats, SIMD SpMM kernels, dispatch and thread pool";

  // Resolve PYSPARSE_ISA now, so a bad value fails the import with its reason.
  (void)active_isa();

  py::class_<SparseMatrix>(m, "SparseMatrix")
      .def_static("from_dense", &from_dense_py, py::arg("a"), py::arg("block_r") = 1, py::arg("block_c") = 1)
      .def_static("from_arrays", &from_arrays_py, py::arg("shape"), py::arg("block"), py::arg("indptr"),
                  py::arg("indices"), py::arg("data"))
      .def_static("from_dense_nm", &from_dense_nm_py, py::arg("a"), py::arg("n"), py::arg("m"))
      .def_static("from_arrays_nm", &from_arrays_nm_py, py::arg("shape"), py::arg("n"), py::arg("m"),
                  py::arg("values"), py::arg("offsets"))
      .def_property_readonly("layout",
                             [](const SparseMatrix& s) { return s.is_nm() ? "nm" : s.is_sell() ? "sell" : "bsr"; })
      .def("to_sell",
           [](const SparseMatrix& s) {
             if (!s.is_csr()) throw py::value_error("to_sell() needs a CSR matrix (1x1 blocks)");
             py::gil_scoped_release nogil;
             return SparseMatrix::sell_from_csr(s);
           })
      .def("to_csr",
           [](const SparseMatrix& s) {
             if (!s.is_sell()) throw py::value_error("to_csr() needs a SELL matrix");
             py::gil_scoped_release nogil;
             return s.csr_from_sell();
           })
      .def_property_readonly("row_of",
                             [](py::object self) {
                               const SparseMatrix& s = self.cast<const SparseMatrix&>();
                               if (!s.is_sell()) return py::object(py::none());
                               return py::object(readonly_view(s.view().row_of, s.block_rows() * 8, self));
                             })
      .def_property_readonly("row_len",
                             [](py::object self) {
                               const SparseMatrix& s = self.cast<const SparseMatrix&>();
                               if (!s.is_sell()) return py::object(py::none());
                               return py::object(readonly_view(s.view().row_len, s.block_rows() * 8, self));
                             })
      .def_property_readonly("nm", [](const SparseMatrix& s) {
        return py::make_tuple(static_cast<int>(s.view().nm_n), s.block_c());
      })
      .def_property_readonly("shape", [](const SparseMatrix& s) { return py::make_tuple(s.rows(), s.cols()); })
      .def_property_readonly("block", [](const SparseMatrix& s) { return py::make_tuple(s.block_r(), s.block_c()); })
      .def_property_readonly("nblocks", &SparseMatrix::nblocks)
      .def_property_readonly("stored_values", &SparseMatrix::stored_values)
      .def_property_readonly("nbytes", &SparseMatrix::nbytes)
      .def_property_readonly("index_dtype",
                             [](const SparseMatrix& s) {
                               switch (s.view().index_width) {
                                 case IndexWidth::u16: return "uint16";
                                 case IndexWidth::u32: return "uint32";
                                 default: return "uint8";
                               }
                             })
      .def_property_readonly("indptr",
                             [](py::object self) {
                               const SparseMatrix& s = self.cast<const SparseMatrix&>();
                               if (s.is_nm()) return py::object(py::none());
                               return py::object(readonly_view(s.view().ptr, s.block_rows() + 1, self));
                             })
      .def_property_readonly("indices",
                             [](py::object self) {
                               const SparseMatrix& s = self.cast<const SparseMatrix&>();
                               if (s.is_nm()) return readonly_view(s.view().idx8(), s.stored_values(), self);
                               const int64_t count = s.is_sell() ? s.stored_values() : s.nblocks();
                               if (s.view().index_width == IndexWidth::u16)
                                 return readonly_view(s.view().idx16(), count, self);
                               return readonly_view(s.view().idx32(), count, self);
                             })
      .def_property_readonly("values",
                             [](py::object self) {
                               const SparseMatrix& s = self.cast<const SparseMatrix&>();
                               return readonly_view(s.view().values, s.stored_values(), self);
                             })
      .def("to_dense", [](const SparseMatrix& s) {
        py::array_t<float> out({s.rows(), s.cols()});
        float* p = out.mutable_data();
        py::gil_scoped_release nogil;
        s.to_dense(p);
        return out;
      });

  m.def("spmm", &spmm_py, py::arg("w"), py::arg("x"), py::arg("bias") = py::none(), py::arg("threads") = 0,
        py::arg("kernel") = py::none(), "Y = W @ X (+ bias[:, None]); X (K,) or (K, N) float32.");
  m.def("spmm_shifted", &spmm_shifted_py, py::arg("w"), py::arg("x"), py::arg("n"), py::arg("bias") = py::none(),
        py::arg("threads") = 0,
        "Y[i, j] = sum_p W_p x[idx_p + j] (+ bias[i]), j < n: the direct convolution over a flat padded x "
        "(1-D float32, at least W.cols - 1 + n long); W is CSR or BSR (R, 1). Returns Y (rows, n).");
  m.def("conv2d_shifted", &conv2d_shifted_py, py::arg("w"), py::arg("x"), py::arg("kernel_size"),
        py::arg("padding"), py::arg("dilation"), py::arg("chunk"), py::arg("bias") = py::none(),
        py::arg("threads") = 0,
        "The direct stride-1 convolution of x (N, C, H, W) float32, `chunk` images side by side per product, "
        "with W the offset matrix for that geometry (pysparse.ops builds it). Returns y (N, rows, Ho, Wo).");
  m.def("linear", &linear_py, py::arg("x"), py::arg("w"), py::arg("bias") = py::none(), py::arg("threads") = 0,
        py::arg("kernel") = py::none(), "y = x @ W.T (+ bias); x (K,) or (batch, K) float32.");
  m.def("threads_for",
        [](const SparseMatrix& w, const py::object& n, const py::object& threads) {
          return threads_for(w, int_arg(n, "n", 0, INT64_MAX), threads_arg(threads));
        },
        py::arg("w"), py::arg("n"), py::arg("threads") = 0);

  m.def("set_num_threads", [](const py::object& n_obj) {
    const int n = static_cast<int>(int_arg(n_obj, "the number of threads", 1, kMaxThreads));
    py::gil_scoped_release nogil;
    set_num_threads(n);
  }, py::arg("n"));
  m.def("get_num_threads", &get_num_threads);
  m.def("default_num_threads", &default_num_threads);
  m.def("cpu_info", &cpu_info_py);
  m.def("get_isa", [] { return std::string(isa_name(active_isa())); });
  m.def("set_isa", [](const std::string& name) { set_active_isa(isa_from_name(name)); }, py::arg("name"));
  m.def("runnable_isas", [] {
    py::list out;
    for (Isa isa : runnable_isas()) out.append(isa_name(isa));
    return out;
  });
  m.def("kernels", [] {
    py::list out;
    for (const KernelInfo& k : all_kernels()) {
      py::dict d;
      d["name"] = k.name;
      d["isa"] = isa_name(k.isa);
      d["format"] = k.format == Format::csr    ? "csr"
                    : k.format == Format::bsr  ? "bsr"
                    : k.format == Format::sell ? "sell"
                                               : "nm";
      d["block_r"] = k.block_r;
      d["batch"] = k.batch == Batch::n1 ? "n1" : "nx";
      d["runnable"] = isa_supported(k.isa);
      out.append(d);
    }
    return out;
  });
}
