// The checked convolution kernels: the depthwise _core.dwconv2d, the direct
// dense _core.conv2d_direct (network stems) and their kernel lists
// dwconv_kernels() / conv_kernels(). Every argument is checked here (dtype, rank, shapes,
// geometry, sizes) before a pointer reaches the core; x that is not
// C-contiguous and aligned is copied by numpy (MemoryError when that fails).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "bindings/arrays.h"
#include "bindings/bindings.h"
#include "conv.h"
#include "dispatch.h"
#include "dwconv.h"

namespace pysparse::bind {

namespace {

// Kernel sizes, strides and paddings this far are any real network's; beyond
// them the scratch and loops would only serve a mistake.
constexpr int64_t kMaxKernel = 16, kMaxStride = 16, kMaxPadding = 64;
// The direct convolution's padded planes of one image (cin of them): at most this many floats
// (4 GiB), far beyond any stem.
constexpr int64_t kMaxPlaneFloats = int64_t{1} << 30;

// One of a few names (a str) to its enum value; what: the argument's name in the messages.
template <class E, size_t N>
E choice_arg(const py::object& obj, const char* what, const std::pair<const char*, E> (&choices)[N]) {
  std::string names;
  for (size_t i = 0; i < N; ++i) names += std::string(i == 0 ? "'" : i + 1 == N ? " or '" : ", '") + choices[i].first + "'";
  if (!py::isinstance<py::str>(obj)) throw py::type_error(std::string(what) + " must be a str: " + names);
  const std::string s = obj.cast<std::string>();
  for (const auto& [name, value] : choices) {
    if (s == name) return value;
  }
  throw py::value_error(std::string(what) + " must be " + names + ", got '" + s.substr(0, 40) + "'");
}

DwAct act_arg(const py::object& obj) {
  static const std::pair<const char*, DwAct> choices[] = {
      {"none", DwAct::none}, {"relu", DwAct::relu}, {"relu6", DwAct::relu6}};
  return choice_arg(obj, "activation", choices);
}

DwEngine engine_arg(const py::object& obj) {
  static const std::pair<const char*, DwEngine> choices[] = {
      {"auto", DwEngine::automatic}, {"planes", DwEngine::planes}, {"blocked", DwEngine::blocked}};
  return choice_arg(obj, "engine", choices);
}

const DwKernelInfo* dw_kernel_by_name(const py::object& name) {
  if (name.is_none()) return nullptr;
  if (!py::isinstance<py::str>(name)) throw py::type_error("kernel must be None or a kernel name (str)");
  const std::string s = name.cast<std::string>();
  for (const DwKernelInfo& k : all_dw_kernels()) {
    if (s != k.name) continue;
    if (!isa_supported(k.isa)) throw py::value_error("kernel '" + s + "' cannot run on this CPU");
    return &k;
  }
  throw py::value_error("unknown kernel '" + s + "'; see pysparse._core.dwconv_kernels()");
}

const char* engine_name(DwEngine e) { return e == DwEngine::blocked ? "blocked" : "planes"; }

const ConvKernelInfo* conv_kernel_by_name(const py::object& name) {
  if (name.is_none()) return nullptr;
  if (!py::isinstance<py::str>(name)) throw py::type_error("kernel must be None or a kernel name (str)");
  const std::string s = name.cast<std::string>();
  for (const ConvKernelInfo& k : all_conv_kernels()) {
    if (s != k.name) continue;
    if (!isa_supported(k.isa)) throw py::value_error("kernel '" + s + "' cannot run on this CPU");
    return &k;
  }
  throw py::value_error("unknown kernel '" + s + "'; see pysparse._core.conv_kernels()");
}

std::array<int64_t, 2> bounded_pair(const py::object& v, const char* what, int64_t lo, int64_t hi) {
  const auto p = pair_arg(v, what);
  for (int64_t x : p) {
    if (x < lo || x > hi) {
      throw py::value_error(std::string(what) + " must be between " + std::to_string(lo) + " and " +
                            std::to_string(hi) + ", got " + py::str(v).cast<std::string>().substr(0, 40));
    }
  }
  return p;
}

// The sliding-window geometry both convolutions share, validated: kernel size, stride and padding in
// range, the padded input at least one window, and fewer than 2**31 pixels per image (so every size
// below fits int64 and the scratch fits memory: such images are far beyond any model).
struct WindowGeometry {
  std::array<int64_t, 2> stride, padding;
  int64_t ho, wo;
};

WindowGeometry window_geometry(int64_t h, int64_t wd, int64_t kh, int64_t kw, const py::object& stride,
                               const py::object& padding) {
  if (kh < 1 || kw < 1 || kh > kMaxKernel || kw > kMaxKernel) {
    throw py::value_error("kernel size must be between 1 and " + std::to_string(kMaxKernel) + ", got " +
                          std::to_string(kh) + "x" + std::to_string(kw));
  }
  const auto s = bounded_pair(stride, "stride", 1, kMaxStride);
  const auto p = bounded_pair(padding, "padding", 0, kMaxPadding);
  const int64_t hp = h + 2 * p[0], wp = wd + 2 * p[1];
  if (hp < kh || wp < kw) {
    throw py::value_error("input " + std::to_string(h) + "x" + std::to_string(wd) + " is too small for a " +
                          std::to_string(kh) + "x" + std::to_string(kw) + " kernel with padding " +
                          std::to_string(p[0]) + "x" + std::to_string(p[1]));
  }
  if (h > (int64_t{1} << 31) / std::max<int64_t>(1, wd)) {
    throw py::value_error("each image must have fewer than 2**31 pixels");
  }
  return {s, p, (hp - kh) / s[0] + 1, (wp - kw) / s[1] + 1};
}

py::array dwconv2d(const py::object& x_obj, const py::object& w_obj, const py::object& bias,
                   const py::object& stride, const py::object& padding, const py::object& activation,
                   const py::object& threads_obj, const py::object& kernel_name, const py::object& engine_obj) {
  const int threads = threads_arg(threads_obj);
  const DwAct act = act_arg(activation);
  const DwKernelInfo* kernel = dw_kernel_by_name(kernel_name);
  const DwEngine engine = engine_arg(engine_obj);
  if (kernel != nullptr && engine != DwEngine::automatic && engine != kernel->engine) {
    throw py::value_error(std::string("kernel '") + kernel->name + "' is of the '" + engine_name(kernel->engine) +
                          "' engine, not '" + engine_name(engine) + "'");
  }
  py::array x = float32_array(x_obj, "x");
  if (x.ndim() != 4) throw py::value_error("x must be 4-D (N, C, H, W), got " + std::to_string(x.ndim()) + "-D");
  py::array w = float32_array(w_obj, "weight");
  if (w.ndim() != 3) {
    throw py::value_error("weight must be 3-D (C, kh, kw) like conv.weight[:, 0] of a depthwise conv, got " +
                          std::to_string(w.ndim()) + "-D");
  }
  const int64_t n = x.shape(0), c = x.shape(1), h = x.shape(2), wd = x.shape(3);
  const int64_t kh = w.shape(1), kw = w.shape(2);
  if (w.shape(0) != c) {
    throw py::value_error("channel mismatch: weight has " + std::to_string(w.shape(0)) + " channels, x has " +
                          std::to_string(c) + "; a depthwise weight is (C, kh, kw)");
  }
  const auto [s, p, ho, wo] = window_geometry(h, wd, kh, kw, stride, padding);
  if (!(x.flags() & py::array::c_style) || !aligned(x)) x = contiguous<float>(x);
  auto wc = contiguous<float>(w);
  py::object keep;
  const float* b = bias_ptr(bias, c, keep);
  py::array_t<float> y({n, c, ho, wo});
  const DwConvProblem prob{static_cast<const float*>(x.data()), wc.data(), b, y.mutable_data(),
                           n, c, h, wd, ho, wo, kh, kw, s[0], s[1], p[0], p[1], act};
  {
    py::gil_scoped_release nogil;
    dwconv2d(prob, threads, kernel, engine);
  }
  return y;
}

// A kernel table as dicts: name, isa, runnable, active (is_active(k): what the active ISA runs).
template <class Info, class Active>
py::list kernel_list(const std::vector<Info>& all, const Active& is_active) {
  py::list out;
  for (const Info& k : all) {
    py::dict d;
    d["name"] = k.name;
    d["isa"] = isa_name(k.isa);
    d["runnable"] = isa_supported(k.isa);
    d["active"] = is_active(k);
    out.append(d);
  }
  return out;
}

// Plus engine: 'planes' or 'blocked'; one kernel of each engine is active.
py::list dwconv_kernels() {
  py::list out = kernel_list(all_dw_kernels(), [](const DwKernelInfo& k) {
    return &select_dw_kernel(active_isa(), k.engine) == &k;
  });
  for (size_t i = 0; i < all_dw_kernels().size(); ++i) out[i]["engine"] = engine_name(all_dw_kernels()[i].engine);
  return out;
}

py::list conv_kernels() {
  const ConvKernelInfo& active = select_conv_kernel(active_isa());
  return kernel_list(all_conv_kernels(), [&](const ConvKernelInfo& k) { return &active == &k; });
}

py::array conv2d_direct(const py::object& x_obj, const py::object& w_obj, const py::object& bias,
                        const py::object& stride, const py::object& padding, const py::object& activation,
                        const py::object& threads_obj, const py::object& kernel_name) {
  const int threads = threads_arg(threads_obj);
  const DwAct act = act_arg(activation);
  const ConvKernelInfo* kernel = conv_kernel_by_name(kernel_name);
  py::array x = float32_array(x_obj, "x");
  if (x.ndim() != 4) throw py::value_error("x must be 4-D (N, C, H, W), got " + std::to_string(x.ndim()) + "-D");
  py::array w = float32_array(w_obj, "weight");
  if (w.ndim() != 4) {
    throw py::value_error("weight must be 4-D (Cout, Cin, kh, kw) like conv.weight, got " + std::to_string(w.ndim()) +
                          "-D");
  }
  const int64_t n = x.shape(0), c = x.shape(1), h = x.shape(2), wd = x.shape(3);
  const int64_t cout = w.shape(0), kh = w.shape(2), kw = w.shape(3);
  if (w.shape(1) != c) {
    throw py::value_error("channel mismatch: weight takes " + std::to_string(w.shape(1)) + " input channels, x has " +
                          std::to_string(c) + "; the weight is (Cout, Cin, kh, kw) (groups 1)");
  }
  const auto [s, p, ho, wo] = window_geometry(h, wd, kh, kw, stride, padding);
  // c and the padded plane are each below 2**31 here (x's size and the pixel bound), so the product fits.
  if (c * dwconv_scratch_floats(ho, wo, kh, kw, s[0], s[1]) > kMaxPlaneFloats) {
    throw py::value_error("the padded input planes (" + std::to_string(c) + " channels of " + std::to_string(h) + "x" +
                          std::to_string(wd) + ") would pass 4 GiB; the direct convolution is for a network's stem");
  }
  if (!(x.flags() & py::array::c_style) || !aligned(x)) x = contiguous<float>(x);
  auto wc = contiguous<float>(w);
  py::object keep;
  const float* b = bias_ptr(bias, cout, keep);
  py::array_t<float> y({n, cout, ho, wo});
  const ConvDirectProblem prob{static_cast<const float*>(x.data()), wc.data(), b, y.mutable_data(),
                               n, c, cout, h, wd, ho, wo, kh, kw, s[0], s[1], p[0], p[1], act};
  {
    py::gil_scoped_release nogil;
    conv2d_direct(prob, threads, kernel);
  }
  return y;
}


}  // namespace

void def_dwconv(py::module_& m) {
  m.def("dwconv2d", &dwconv2d, py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(),
        py::arg("stride") = py::make_tuple(1, 1), py::arg("padding") = py::make_tuple(0, 0),
        py::arg("activation") = "none", py::arg("threads") = 0, py::arg("kernel") = py::none(),
        py::arg("engine") = "auto",
        "Depthwise conv2d (groups == channels, dilation 1, zero padding) of x (N, C, H, W) float32 with "
        "weight (C, kh, kw), bias (C,) or None, then 'none' | 'relu' | 'relu6'. Returns y (N, C, Ho, Wo). "
        "engine: 'planes' (one channel plane at a time), 'blocked' (8 channels at a time, the rest as planes) "
        "or 'auto' (the faster for the shape); a named kernel brings its own engine.");
  m.def("dwconv_kernels", &dwconv_kernels, "The depthwise kernels built: name, isa, runnable, active.");
  m.def("conv2d_direct", &conv2d_direct, py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(),
        py::arg("stride") = py::make_tuple(1, 1), py::arg("padding") = py::make_tuple(0, 0),
        py::arg("activation") = "none", py::arg("threads") = 0, py::arg("kernel") = py::none(),
        "Direct dense conv2d (groups 1, dilation 1, zero padding) of x (N, Cin, H, W) float32 with weight "
        "(Cout, Cin, kh, kw), bias (Cout,) or None, then 'none' | 'relu' | 'relu6'. Returns y (N, Cout, Ho, Wo).");
  m.def("conv_kernels", &conv_kernels, "The direct conv kernels built: name, isa, runnable, active.");
}

}  // namespace pysparse::bind
