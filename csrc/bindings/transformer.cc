// The checked transformer calls: layer_norm, gelu, attention, and the kernel
// list transformer_kernels(). Every argument is checked here (dtype, rank,
// shape, strides, alignment, overlap, sizes) before a pointer reaches the core;
// an input that cannot be read in place (a stride that is not a whole float, a
// last axis that is not contiguous, misaligned memory) is copied by numpy
// (MemoryError when that fails), then the core runs with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

#include "bindings/arrays.h"
#include "bindings/bindings.h"
#include "dispatch.h"
#include "transformer.h"

namespace pysparse::bind {

namespace {

std::string shape_str(const py::array& a) { return py::str(a.attr("shape")).cast<std::string>(); }

// An array as (rows, cols) with unit stride along cols and one row stride: the
// leading axes must collapse into one (C order among themselves).
struct Rows {
  float* data;
  int64_t rows, cols, ld;
};

std::optional<Rows> as_rows(const py::array& a) {
  if (!aligned(a)) return std::nullopt;
  const int nd = static_cast<int>(a.ndim());
  const int64_t cols = a.shape(nd - 1);
  if (cols > 1 && a.strides(nd - 1) != static_cast<py::ssize_t>(sizeof(float))) return std::nullopt;
  int64_t rows = 1, ld = cols;
  bool have_ld = false;
  int64_t inner = 0;  // the stride (in floats) the next axis up must have
  for (int i = nd - 2; i >= 0; --i) {
    const int64_t n = a.shape(i);
    rows *= n;
    if (n == 1) continue;
    if (a.strides(i) % static_cast<py::ssize_t>(sizeof(float)) != 0) return std::nullopt;
    const int64_t st = a.strides(i) / static_cast<int64_t>(sizeof(float));
    if (!have_ld) {
      if (st < cols) return std::nullopt;  // rows must not overlap
      ld = st;
      have_ld = true;
    } else if (st != inner) {
      return std::nullopt;
    }
    inner = st * n;
  }
  return Rows{static_cast<float*>(const_cast<void*>(a.data())), rows, cols, ld};
}

// [lo, hi) bytes an array's elements span.
std::pair<uintptr_t, uintptr_t> extent(const py::array& a) {
  uintptr_t lo = reinterpret_cast<uintptr_t>(a.data()), hi = lo;
  if (a.size() == 0) return {lo, lo};
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    const py::ssize_t span = (a.shape(i) - 1) * a.strides(i);
    if (span < 0) lo += span; else hi += span;
  }
  return {lo, hi + a.itemsize()};
}

// out may be exactly `in` (same memory, same layout: in place) or disjoint from it.
void check_overlap(const py::array& out, const py::array& in, const char* what) {
  const auto [a0, a1] = extent(out);
  const auto [b0, b1] = extent(in);
  if (a0 >= b1 || b0 >= a1) return;
  bool same = out.data() == in.data() && out.ndim() == in.ndim();
  for (py::ssize_t i = 0; same && i < out.ndim(); ++i)
    same = out.shape(i) == in.shape(i) && (out.shape(i) == 1 || out.strides(i) == in.strides(i));
  if (!same) {
    throw py::value_error(std::string("out overlaps ") + what +
                          " without being the same array; pass the same array (in place) or a separate one");
  }
}

py::array writable_out(const py::object& out_obj, const py::array& like) {
  py::array out = float32_array(out_obj, "out");
  if (!out.writeable()) throw py::value_error("out must be writable");
  if (out.ndim() != like.ndim() || !std::equal(out.shape(), out.shape() + out.ndim(), like.shape())) {
    throw py::value_error("out must have the input's shape " + shape_str(like) + ", got " + shape_str(out));
  }
  return out;
}

bool is_real_number(const py::handle& v) {
  if (PyBool_Check(v.ptr())) return false;
  if (PyFloat_Check(v.ptr()) || PyLong_Check(v.ptr())) return true;  // the common case: no numpy lookup
  const py::module_ np = py::module_::import("numpy");
  return py::isinstance(v, np.attr("floating")) || py::isinstance(v, np.attr("integer"));
}

float finite_float(const py::handle& v, const char* what, bool non_negative) {
  if (!is_real_number(v)) throw py::type_error(std::string(what) + " must be a real number, got " + type_str(v));
  const double d = py::float_(py::reinterpret_borrow<py::object>(v)).cast<double>();
  if (!std::isfinite(d) || std::fabs(d) > 3.4e38 || (non_negative && d < 0)) {
    throw py::value_error(std::string(what) + " must be a finite " + (non_negative ? "non-negative " : "") +
                          "float32 number, got " + py::str(v).cast<std::string>().substr(0, 40));
  }
  return static_cast<float>(d);
}

// A (C,) float32 vector or null.
const float* vector_arg(const py::object& obj, int64_t C, const char* what, py::object& keep) {
  if (obj.is_none()) return nullptr;
  py::array a = float32_array(obj, what);
  if (a.ndim() != 1 || a.shape(0) != C) {
    throw py::value_error(std::string(what) + " must have shape (" + std::to_string(C) + ",) (the last axis of x), got " +
                          shape_str(a));
  }
  auto c = contiguous<float>(a);
  keep = c;
  return c.data();
}

py::array layer_norm(const py::object& x_obj, const py::object& weight, const py::object& bias,
                     const py::object& eps_obj, const py::object& residual, const py::object& out_obj,
                     const py::object& threads_obj) {
  const int threads = threads_arg(threads_obj);
  py::array x = float32_array(x_obj, "x");
  if (x.ndim() < 1) throw py::value_error("x must have at least one axis (the one normalised), got a 0-D array");
  const int64_t C = x.shape(x.ndim() - 1);
  if (C < 1) throw py::value_error("x's last axis (the one normalised) must not be empty, got shape " + shape_str(x));
  const float eps = finite_float(eps_obj, "eps", true);
  py::object keep_w, keep_b;
  const float* w = vector_arg(weight, C, "weight", keep_w);
  const float* b = vector_arg(bias, C, "bias", keep_b);
  std::optional<py::array> res;
  if (!residual.is_none()) {
    res = float32_array(residual, "residual");
    if (res->ndim() != x.ndim() || !std::equal(x.shape(), x.shape() + x.ndim(), res->shape())) {
      throw py::value_error("residual must have x's shape " + shape_str(x) + ", got " + shape_str(*res));
    }
  }
  py::array out = out_obj.is_none() ? py::array(py::array_t<float>(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim())))
                                    : writable_out(out_obj, x);
  if (!out_obj.is_none()) {
    check_overlap(out, x, "x");
    if (res) check_overlap(out, *res, "residual");
  }
  std::optional<Rows> xr = as_rows(x);
  if (!xr) xr = as_rows(x = contiguous<float>(x));
  std::optional<Rows> rr;
  if (res) {
    rr = as_rows(*res);
    if (!rr) rr = as_rows(*res = contiguous<float>(*res));
  }
  const std::optional<Rows> yr = as_rows(out);
  if (!yr) throw py::value_error("out must be C-contiguous along its last axis with one row stride (e.g. numpy.empty_like(x))");
  LayerNormArgs a{xr->data, xr->ld, rr ? rr->data : nullptr, rr ? rr->ld : 0, w, b, yr->data, yr->ld, xr->rows, C, eps};
  {
    py::gil_scoped_release nogil;
    pysparse::layer_norm(a, threads);
  }
  return out;
}

py::array gelu(const py::object& x_obj, const std::string& approximate, const py::object& out_obj,
               const py::object& threads_obj) {
  const int threads = threads_arg(threads_obj);
  TfOp op;
  if (approximate == "none") {
    op = TfOp::gelu_erf;
  } else if (approximate == "tanh") {
    op = TfOp::gelu_tanh;
  } else {
    throw py::value_error("gelu: approximate must be 'none' or 'tanh', got '" + approximate.substr(0, 40) + "'");
  }
  py::array x = float32_array(x_obj, "x");
  py::array out = out_obj.is_none() ? py::array(py::array_t<float>(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim())))
                                    : writable_out(out_obj, x);
  if (!out_obj.is_none()) {
    if (!(out.flags() & py::array::c_style) || !aligned(out)) {
      throw py::value_error("out must be C-contiguous and aligned (e.g. numpy.empty_like(x))");
    }
    check_overlap(out, x, "x");
  }
  const bool in_place = out.data() == x.data();
  if (!in_place) x = contiguous<float>(x);  // in place: x is out, already C-contiguous
  const ElementwiseArgs a{static_cast<const float*>(x.data()), static_cast<float*>(out.mutable_data()),
                          static_cast<int64_t>(x.size())};
  {
    py::gil_scoped_release nogil;
    pysparse::elementwise(op, a, threads);
  }
  return out;
}

// q/k/v: float32 (B, rows, HD), readable in place when its last axis is
// contiguous and its strides are whole floats; copied otherwise.
py::array qkv_arg(const py::object& obj, const char* what) {
  py::array a = float32_array(obj, what);
  if (a.ndim() != 3) {
    throw py::value_error(std::string(what) + " must be 3-D (batch, sequence, heads * head_dim), got shape " + shape_str(a));
  }
  const auto f = static_cast<py::ssize_t>(sizeof(float));
  const bool ok = aligned(a) && (a.shape(2) <= 1 || a.strides(2) == f) && a.strides(0) % f == 0 && a.strides(1) % f == 0;
  return ok ? a : py::array(contiguous<float>(a));
}

int64_t st(const py::array& a, int axis) { return a.strides(axis) / static_cast<int64_t>(sizeof(float)); }

py::array attention(const py::object& q_obj, const py::object& k_obj, const py::object& v_obj,
                    const py::object& heads_obj, const py::object& mask_obj, const py::object& scale_obj,
                    const py::object& threads_obj) {
  const int threads = threads_arg(threads_obj);
  py::array q = qkv_arg(q_obj, "q"), k = qkv_arg(k_obj, "k"), v = qkv_arg(v_obj, "v");
  const int64_t B = q.shape(0), S = q.shape(1), HD = q.shape(2), T = k.shape(1);
  if (k.shape(0) != B || v.shape(0) != B || k.shape(2) != HD || v.shape(2) != HD || v.shape(1) != T) {
    throw py::value_error("shapes do not fit: q " + shape_str(q) + ", k " + shape_str(k) + ", v " + shape_str(v) +
                          "; expected q (B, S, H*D), k and v (B, T, H*D)");
  }
  const int64_t heads = int_arg(heads_obj, "num_heads", 1, INT32_MAX);
  if (HD % heads != 0) {
    throw py::value_error("num_heads (" + std::to_string(heads) + ") must divide the last axis of q, k, v (" +
                          std::to_string(HD) + ")");
  }
  const int64_t D = HD / heads;
  if (T < 1) throw py::value_error("k and v must hold at least one key (T >= 1), got shape " + shape_str(k));
  // One head's scratch: (T + 8) (D + 8) * 2 + 5 (T + 8) floats must be allocatable as an int64 count.
  if (static_cast<double>(T + 8) * static_cast<double>(D + 8) * 3.0 > 1e15) {
    throw py::value_error("keys x head dim (" + std::to_string(T) + " x " + std::to_string(D) +
                          ") is too large for one attention head; split the sequence");
  }
  const float scale = scale_obj.is_none() ? static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)))
                                          : finite_float(scale_obj, "scale", false);
  const float* mask = nullptr;
  py::object keep_mask;
  if (!mask_obj.is_none()) {
    py::array m = as_array(mask_obj, "mask");
    if (!m.dtype().is(py::dtype::of<float>())) {
      throw py::type_error("mask must be an additive float32 mask (0 where a key is attended, a large negative number "
                           "where it is padding), got " + dtype_str(m) +
                           "; from a 0/1 attention_mask: (1.0 - attention_mask.astype(numpy.float32)) * "
                           "numpy.finfo(numpy.float32).min");
    }
    const bool bt = m.ndim() == 2 && m.shape(0) == B && m.shape(1) == T;
    const bool b11t = m.ndim() == 4 && m.shape(0) == B && m.shape(1) == 1 && m.shape(2) == 1 && m.shape(3) == T;
    if (!bt && !b11t) {
      throw py::value_error("mask must have shape (B, T) = (" + std::to_string(B) + ", " + std::to_string(T) +
                            ") or (B, 1, 1, T), got " + shape_str(m));
    }
    auto c = contiguous<float>(m);
    keep_mask = c;
    mask = c.data();
  }
  py::array_t<float> out({B, S, HD});
  AttentionProblem p{};
  p.q = static_cast<const float*>(q.data());
  p.q_b = st(q, 0);
  p.q_s = st(q, 1);
  p.k = static_cast<const float*>(k.data());
  p.k_b = st(k, 0);
  p.k_s = st(k, 1);
  p.v = static_cast<const float*>(v.data());
  p.v_b = st(v, 0);
  p.v_s = st(v, 1);
  p.mask = mask;
  p.m_b = T;
  p.out = out.mutable_data();
  p.o_b = S * HD;
  p.o_s = HD;
  p.batch = B;
  p.queries = S;
  p.keys = T;
  p.heads = heads;
  p.dim = D;
  p.scale = scale;
  {
    py::gil_scoped_release nogil;
    pysparse::attention(p, threads);
  }
  return out;
}

py::list transformer_kernels() {
  py::list out;
  for (const TfKernelInfo& k : all_tf_kernels()) {
    py::dict d;
    d["name"] = k.name;
    d["isa"] = isa_name(k.isa);
    d["op"] = tf_op_name(k.op);
    d["runnable"] = isa_supported(k.isa);
    d["active"] = &select_tf_kernel(active_isa(), k.op) == &k;
    out.append(d);
  }
  return out;
}

}  // namespace

void def_transformer(py::module_& m) {
  m.def("layer_norm", &layer_norm, py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("eps"),
        py::arg("residual") = py::none(), py::arg("out") = py::none(), py::arg("threads") = 0,
        "Layer norm of x + residual over the last axis, * weight + bias; x (..., C) float32; weight, bias (C,) or "
        "None. out: None, or a float32 array of x's shape (may be x or residual: in place).");
  m.def("gelu", &gelu, py::arg("x"), py::arg("approximate") = "none", py::arg("out") = py::none(),
        py::arg("threads") = 0,
        "GELU of float32 x, torch's definitions ('none': erf, 'tanh'). out: None, or a C-contiguous float32 "
        "array of x's shape (may be x: in place).");
  m.def("attention", &attention, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("num_heads"),
        py::arg("mask") = py::none(), py::arg("scale") = py::none(), py::arg("threads") = 0,
        "softmax(q k^T * scale + mask) v per head; q (B, S, H*D), k and v (B, T, H*D) float32 with any strides "
        "along B and S; mask None or additive float32 (B, T) or (B, 1, 1, T); scale defaults to 1/sqrt(D). "
        "Returns (B, S, H*D).");
  m.def("transformer_kernels", &transformer_kernels);
}

}  // namespace pysparse::bind
