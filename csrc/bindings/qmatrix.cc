// The int8 side of _core: class QMatrix (bsr_int8 / dense_int8, validated in
// matrix-qs8.cc), qlinear, the prologue alone (tests) and the int8 ISA and
// kernel facts. Registered by def_qmatrix (module.cc).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "bindings/arrays.h"
#include "bindings/bindings.h"
#include "parallel.h"
#include "qdispatch.h"
#include "qlinear.h"
#include "qmatrix.h"

namespace pysparse::bind {

namespace {

py::array int8_array(const py::handle& obj, const char* what) {
  py::array a = as_array(obj, what);
  if (!a.dtype().is(py::dtype::of<int8_t>())) {
    throw py::type_error(std::string(what) + " must be int8, got " + dtype_str(a) +
                         "; quantize it first (pysparse.formats.quantize_rows) or use .astype(numpy.int8)");
  }
  return a;
}

py::array_t<float, py::array::c_style> scales_arg(const py::object& obj) {
  py::array s = float32_array(obj, "scales");
  if (s.ndim() != 1) throw py::value_error("scales must be 1-D (one per row), got " + std::to_string(s.ndim()) + "-D");
  return contiguous<float>(s);
}

QFormat qformat_arg(const std::string& f) {
  if (f == "bsr_int8") return QFormat::qbsr;
  if (f == "dense_int8") return QFormat::qdense;
  throw py::value_error("int8 format must be 'bsr_int8' or 'dense_int8', got '" + f + "'");
}

QMatrix from_int8(const py::object& q_obj, const py::object& scales, int block_r, const std::string& format) {
  py::array q = int8_array(q_obj, "q");
  if (q.ndim() != 2) throw py::value_error("q must be 2-D, got " + std::to_string(q.ndim()) + "-D");
  auto c = contiguous<int8_t>(q);
  auto s = scales_arg(scales);
  const QFormat f = qformat_arg(format);
  const int64_t rows = c.shape(0), cols = c.shape(1);
  py::gil_scoped_release nogil;
  return QMatrix::from_int8(c.data(), rows, cols, cols, s.data(), s.size(), block_r, f);
}

QMatrix from_arrays(const py::object& shape, int block_r, const py::object& indptr, const py::object& indices,
                    const py::object& data, const py::object& scales) {
  const auto [rows, cols] = pair_arg(shape, "shape");
  auto p = index_array(indptr, "indptr");
  auto i = index_array(indices, "indices");
  py::array d = int8_array(data, "data");
  auto dc = contiguous<int8_t>(py::reinterpret_borrow<py::array>(d.attr("reshape")(-1)));
  auto s = scales_arg(scales);
  py::gil_scoped_release nogil;
  return QMatrix::from_arrays(rows, cols, block_r, p.data(), p.size(), i.data(), i.size(), dc.data(), dc.size(),
                              s.data(), s.size());
}

const QKernelInfo* qkernel_by_name(const py::object& name) {
  if (name.is_none()) return nullptr;
  const std::string s = name.cast<std::string>();
  const QKernelInfo* k = find_qkernel(s);
  if (k == nullptr) throw py::value_error("unknown kernel '" + s + "'; see pysparse._core.qkernels()");
  if (!qisa_supported(k->isa)) throw py::value_error("kernel '" + s + "' cannot run on this CPU");
  return k;
}

py::array qlinear_call(const py::object& x_obj, const QMatrix& w, const py::object& bias, bool relu,
                       const py::object& threads_obj, const py::object& kernel_name, const py::object& activation,
                       const py::object& residual) {
  const int threads = threads_arg(threads_obj);
  const int64_t K = w.cols(), M = w.rows();
  int64_t batch = 0;
  py::array x = linear_input(x_obj, M, K, batch);
  const QKernelInfo* k = qkernel_by_name(kernel_name);
  if (k != nullptr && (k->format != w.format() || k->block_r != w.block_r() || (k->batch == QBatch::n1) != (batch == 1))) {
    throw py::value_error(std::string("kernel ") + k->name + " does not fit this matrix / batch");
  }
  // In place when each row is contiguous and aligned; any row stride.
  int64_t ldx = K;
  const bool usable = aligned(x) && (x.ndim() == 1 ? (x.strides(0) == 4 || K <= 1)
                                                    : ((x.strides(1) == 4 || K <= 1) && x.strides(0) % 4 == 0 &&
                                                       (x.strides(0) >= 4 * K || batch <= 1)));
  if (usable) {
    if (x.ndim() == 2 && batch > 1) ldx = x.strides(0) / 4;
  } else {
    x = contiguous<float>(x);
  }
  py::object keep;
  const float* b = bias_ptr(bias, M, keep);
  py::object keep_r;
  const Epilogue ep =
      epilogue_arg(activation, residual, x.ndim() == 2 ? std::vector<int64_t>{batch, M} : std::vector<int64_t>{M}, keep_r);
  py::array_t<float> y = x.ndim() == 2 ? py::array_t<float>({batch, M}) : py::array_t<float>({M});
  const float* xp = static_cast<const float*>(x.data());
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    qlinear(w, xp, ldx, batch, yp, b, relu, threads, k, ep);
  }
  return y;
}

// The prologue alone: (q (batch, K) int8, scales (batch,)) as the kernels see them.
py::tuple quantize_call(const py::object& x_obj, const std::string& isa_name_) {
  py::array x = float32_array(x_obj, "x");
  if (x.ndim() != 2) throw py::value_error("x must be 2-D (batch, K)");
  auto c = contiguous<float>(x);
  const int64_t batch = c.shape(0), K = c.shape(1), G = (K + 3) / 4;
  const QIsa isa = qisa_from_name(isa_name_);
  if (!qisa_supported(isa)) throw py::value_error("ISA '" + isa_name_ + "' cannot run here");
  const int64_t stride = batch == 1 ? 1 : (batch + 7) / 8 * 8;
  std::vector<int8_t> xq(static_cast<size_t>(G * stride * 4 + kQValuePad), 0);
  py::array_t<float> scales({batch});
  py::array_t<int8_t> q({batch, K});
  {
    py::gil_scoped_release nogil;
    qs8_quantize(c.data(), K, batch, K, stride, xq.data(), scales.mutable_data(), isa);
  }
  int8_t* out = q.mutable_data();
  for (int64_t j = 0; j < batch; ++j)
    for (int64_t k = 0; k < K; ++k) out[j * K + k] = xq[((k / 4) * stride + j) * 4 + k % 4];
  return py::make_tuple(q, scales);
}

}  // namespace

void def_qmatrix(py::module_& m) {
  using Q = QMatrix;
  py::class_<Q>(m, "QMatrix")
      .def_static("from_int8", &from_int8, py::arg("q"), py::arg("scales"), py::arg("block_r") = 8,
                  py::arg("format") = "bsr_int8")
      .def_static("from_arrays", &from_arrays, py::arg("shape"), py::arg("block_r"), py::arg("indptr"),
                  py::arg("indices"), py::arg("data"), py::arg("scales"))
      .def_property_readonly("format", [](const Q& s) { return qformat_name(s.format()); })
      .def_property_readonly("shape", [](const Q& s) { return py::make_tuple(s.rows(), s.cols()); })
      .def_property_readonly("block", [](const Q& s) { return py::make_tuple(s.block_r(), 4); })
      .def_property_readonly("nblocks", &Q::nblocks)
      .def_property_readonly("stored_values", &Q::stored_values)
      .def_property_readonly("nbytes", &Q::nbytes)
      .def_property_readonly("indptr",
                             [](py::object self) {
                               const Q& s = self.cast<const Q&>();
                               if (s.view().ptr == nullptr) return py::object(py::none());
                               return py::object(readonly_view(s.view().ptr, s.block_rows() + 1, self));
                             })
      .def_property_readonly("indices",
                             [](const Q& s) {
                               // First column of each block (4 * its group), as int64.
                               py::array_t<int64_t> out({s.nblocks()});
                               int64_t* o = out.mutable_data();
                               const QView& v = s.view();
                               for (int64_t b = 0; b < v.block_rows(); ++b)
                                 for (int64_t p = v.begin(b); p < v.end(b); ++p) o[p] = v.group(b, p) * 4;
                               return out;
                             })
      .def_property_readonly("values",
                             [](py::object self) {
                               const Q& s = self.cast<const Q&>();
                               return readonly_view(s.view().values, s.stored_values(), self);
                             })
      .def_property_readonly("scales",
                             [](py::object self) {
                               const Q& s = self.cast<const Q&>();
                               return readonly_view(s.view().scales, s.rows(), self);
                             })
      .def("to_int8", [](const Q& s) {
        py::array_t<int8_t> out({s.rows(), s.cols()});
        int8_t* p = out.mutable_data();
        py::gil_scoped_release nogil;
        s.to_int8(p);
        return out;
      });

  m.def("qlinear", &qlinear_call, py::arg("x"), py::arg("w"), py::arg("bias") = py::none(), py::arg("relu") = false,
        py::arg("threads") = 0, py::arg("kernel") = py::none(), py::kw_only(), py::arg("activation") = "none",
        py::arg("residual") = py::none(),
        "y = act(x @ dequant(W).T + bias) (+ residual) with int8 W and activations quantized per row in the "
        "kernel; x (K,) or (batch, K) float32; relu in the kernel, activation ('none', 'relu', 'relu6', "
        "'gelu_erf', 'gelu_tanh') and residual (the output's shape) in the fused epilogue.");
  m.def("qs8_quantize", &quantize_call, py::arg("x"), py::arg("isa"),
        "The activation prologue alone: (q int8 (batch, K), scales float32 (batch,)).");
  m.def("get_qisa", [] { return std::string(qisa_name(active_qisa())); });
  m.def("set_qisa", [](const std::string& name) { set_active_qisa(qisa_from_name(name)); }, py::arg("name"));
  m.def("runnable_qisas", [] {
    py::list out;
    for (QIsa isa : runnable_qisas()) out.append(qisa_name(isa));
    return out;
  });
  m.def("qkernels", [] {
    py::list out;
    for (const QKernelInfo& k : all_qkernels()) {
      py::dict d;
      d["name"] = k.name;
      d["isa"] = qisa_name(k.isa);
      d["format"] = qformat_name(k.format);
      d["block_r"] = k.block_r;
      d["batch"] = qbatch_name(k.batch);
      d["runnable"] = qisa_supported(k.isa);
      out.append(d);
    }
    return out;
  });
}

// set_isa: an f32 name (scalar, avx2, avx512, neon) sets the f32 ISA only, so
// set_isa(get_isa()) restores what it found (the tests' fixture does that); an
// int8 level (avxvnni, avx512vnni, neondot) sets the int8 ISA to it and the f32
// ISA to the one it extends. PYSPARSE_ISA caps both at import (qdispatch.h).
void set_isa_level(const std::string& name) {
  const bool int8_level = name == "avxvnni" || name == "avx512vnni" || name == "neondot";
  if (int8_level) {
    const QIsa runnable = qisa_at_most(name);  // throws if not runnable
    set_active_isa(isa_from_name(name));
    set_active_qisa(runnable);
  } else {
    set_active_isa(isa_from_name(name));
  }
}

}  // namespace pysparse::bind
