"""torch model -> runtime graph: trace with torch.fx and map every node onto ``runtime.OPS``.

Leaves of the trace are pysparse's SparseLinear / SparseConv2d (recognised by
class name, so any module with their documented attributes works) and the
standard torch.nn layers; everything else is traced through. Each fx node
becomes one runtime node (or none: shape lookups and constants are folded into
their users). Arguments that must be constants (kernel sizes, dims) are
checked here, so a model the runtime cannot run is refused by name at save
time, never on the board.
"""

from __future__ import annotations

import inspect
import operator
from typing import Any, Callable

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from ._checks import pair
from .formats import SparseMatrixBase
from .ops.geometry import same_padding
from .runtime import OPS

_SPARSE_CLASSES = ("SparseLinear", "SparseConv2d")


def _sparse_kind(m: Any) -> str | None:
    for c in type(m).__mro__:
        if c.__name__ in _SPARSE_CLASSES:
            return c.__name__
    return None


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return _sparse_kind(m) is not None or super().is_leaf_module(m, qualname)


class UnsupportedOp(ValueError):
    """The model uses something the runtime cannot execute."""


def _np(t: Any) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().to(torch.float32).numpy()).copy()


def _pair(v: Any, what: str = "a size") -> list[int]:
    """An int, [k] or a pair -> [h, w] (the file's attribute form)."""
    return list(pair(v, what, 0, single=True))


# Signatures of the functions and methods we map: bound with inspect, so
# positional and keyword calls normalise to the same names.
def _s_unary(input, inplace=False): ...  # noqa: E704
def _s_gelu(input, approximate="none"): ...  # noqa: E704
def _s_hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False): ...  # noqa: E704
def _s_leaky(input, negative_slope=0.01, inplace=False): ...  # noqa: E704
def _s_clamp(input, min=None, max=None): ...  # noqa: E704
def _s_softmax(input, dim=None, _stacklevel=3, dtype=None): ...  # noqa: E704
def _s_dropout(input, p=0.5, training=False, inplace=False): ...  # noqa: E704
def _s_flatten(input, start_dim=0, end_dim=-1): ...  # noqa: E704
def _s_transpose(input, dim0, dim1): ...  # noqa: E704
def _s_squeeze(input, dim=None): ...  # noqa: E704
def _s_unsqueeze(input, dim): ...  # noqa: E704
def _s_cat(tensors, dim=0): ...  # noqa: E704
def _s_binary(input, other, alpha=1): ...  # noqa: E704
def _s_div(input, other, rounding_mode=None): ...  # noqa: E704
def _s_max_pool(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False): ...  # noqa: E501, E704
def _s_avg_pool(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None): ...  # noqa: E501, E704
def _s_adaptive(input, output_size): ...  # noqa: E704
def _s_mean(input, dim=None, keepdim=False, dtype=None): ...  # noqa: E704
def _s_size(input, dim=None): ...  # noqa: E704
def _s_linear(input, weight, bias=None): ...  # noqa: E704
def _s_conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1): ...  # noqa: E704
def _s_layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5): ...  # noqa: E704
def _s_self(input): ...  # noqa: E704
def _s_any(*args, **kwargs): ...  # noqa: E704  (the handler reads node.args itself)


class _Exporter:
    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.nodes: list[dict[str, Any]] = []
        self.arrays: dict[str, np.ndarray] = {}
        self.names: dict[fx.Node, Any] = {}  # fx node -> our node name, or ("shape", name) / ("const", tensor)
        self.used: set[str] = set()

    # -------------------------------------------------------------- helpers
    def _fresh(self, base: str) -> str:
        base = "".join(c if c.isalnum() or c in "_.-" else "_" for c in base) or "node"
        if not (base[0].isalpha() or base[0] == "_"):
            base = f"n_{base}"
        name, i = base, 1
        while name in self.used:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        return name

    def emit(self, base: str, op: str, inputs: list[Any], attrs: dict[str, Any] | None = None,
             params: dict[str, np.ndarray] | None = None) -> str:
        name = self._fresh(base)
        node: dict[str, Any] = {"name": name, "op": op}
        if inputs:
            node["inputs"] = inputs
        if attrs:
            node["attrs"] = attrs
        if params:
            node["params"] = {}
            for role, arr in params.items():
                if arr is None:
                    continue
                key = f"{name}.{role}"
                self.arrays[key] = arr
                node["params"][role] = key
        self.nodes.append(node)
        return name

    def ref(self, a: Any, what: str) -> Any:
        """An input reference: our node name for a tensor, a number literal for a number."""
        if isinstance(a, fx.Node):
            v = self.names[a]
            if isinstance(v, tuple) and v[0] == "const":
                return self.constant(a)
            if isinstance(v, tuple):
                raise UnsupportedOp(f"{what}: a tensor's whole shape cannot be used as a value here")
            return v
        if isinstance(a, (int, float)) and not isinstance(a, bool):
            return a
        raise UnsupportedOp(f"{what}: an argument of type {type(a).__name__} is not supported")

    def constant(self, a: fx.Node) -> str:
        v = self.names[a]
        if len(v) == 3:
            return v[2]
        t = v[1]
        if not t.is_floating_point():
            raise UnsupportedOp(f"constant {a.target!r}: only floating-point tensors can be saved, got {t.dtype}")
        name = self.emit(str(a.target), "constant", [], params={"value": _np(t)})
        self.names[a] = ("const", t, name)
        return name

    def const(self, v: Any, what: str) -> Any:
        """A value that must be known at save time (not a tensor computed by the model)."""
        if isinstance(v, fx.Node):
            tag = self.names.get(v)
            if isinstance(tag, tuple) and tag[0] == "const":
                return tag[1]
            raise UnsupportedOp(f"{what} must be a constant, but the model computes it")
        if isinstance(v, (list, tuple)):
            return type(v)(self.const(e, what) for e in v)
        return v

    # -------------------------------------------------------------- modules
    def module(self, node: fx.Node, m: nn.Module) -> str:
        if node.kwargs or len(node.args) != 1:
            raise UnsupportedOp(f"module {node.target!r} ({type(m).__name__}) must be called with one input")
        x = self.ref(node.args[0], str(node.target))
        base = str(node.target)
        kind = _sparse_kind(m)
        if kind == "SparseLinear":
            return self.matrix_node(base, "linear", x, m, {"in_features": int(m.in_features), "out_features": int(m.out_features)})
        if kind == "SparseConv2d":
            return self.matrix_node(base, "conv2d", x, m, self.conv_attrs(m, base))
        if isinstance(m, nn.Linear):
            return self.emit(base, "linear", [x], {"in_features": m.in_features, "out_features": m.out_features,
                                                   "format": "dense"},
                             {"weight": _np(m.weight), "bias": None if m.bias is None else _np(m.bias)})
        if isinstance(m, nn.Conv2d):
            if m.padding_mode != "zeros":
                raise UnsupportedOp(f"module {base!r}: Conv2d padding_mode {m.padding_mode!r} (only 'zeros' runs)")
            attrs = self.conv_attrs(m, base)
            attrs["format"] = "dense"
            w = _np(m.weight).reshape(m.out_channels, -1)
            return self.emit(base, "conv2d", [x], attrs, {"weight": w, "bias": None if m.bias is None else _np(m.bias)})
        simple = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.SiLU: "silu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh",
                  nn.Hardswish: "hardswish", nn.Hardsigmoid: "hardsigmoid", nn.Identity: "identity",
                  nn.Dropout: "dropout", nn.Dropout1d: "dropout", nn.Dropout2d: "dropout", nn.AlphaDropout: "dropout"}
        for cls, op in simple.items():
            if type(m) is cls:
                return self.emit(base, op, [x])
        if isinstance(m, nn.GELU):
            return self.emit(base, "gelu", [x], {"approximate": m.approximate})
        if type(m) is nn.Hardtanh:
            return self.emit(base, "hardtanh", [x], {"min_val": float(m.min_val), "max_val": float(m.max_val)})
        if isinstance(m, nn.LeakyReLU):
            return self.emit(base, "leaky_relu", [x], {"negative_slope": float(m.negative_slope)})
        if isinstance(m, (nn.Softmax, nn.LogSoftmax)):
            if m.dim is None:
                raise UnsupportedOp(f"module {base!r}: {type(m).__name__} needs an explicit dim")
            return self.emit(base, "softmax" if isinstance(m, nn.Softmax) else "log_softmax", [x], {"dim": m.dim})
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if m.running_mean is None or m.running_var is None:
                raise UnsupportedOp(f"module {base!r}: batch norm without running statistics cannot run in eval")
            return self.emit(base, "batch_norm", [x], {"num_features": m.num_features, "eps": float(m.eps)},
                             {"running_mean": _np(m.running_mean), "running_var": _np(m.running_var),
                              "weight": None if m.weight is None else _np(m.weight),
                              "bias": None if m.bias is None else _np(m.bias)})
        if isinstance(m, nn.LayerNorm):
            return self.emit(base, "layer_norm", [x], {"normalized_shape": list(m.normalized_shape),
                                                       "eps": float(m.eps)},
                             {"weight": None if m.weight is None else _np(m.weight),
                              "bias": None if getattr(m, "bias", None) is None else _np(m.bias)})
        if isinstance(m, nn.Flatten):
            return self.emit(base, "flatten", [x], {"start_dim": m.start_dim, "end_dim": m.end_dim})
        if isinstance(m, nn.MaxPool2d):
            return self.pool(base, "max", x, dict(kernel_size=m.kernel_size, stride=m.stride, padding=m.padding,
                                                  dilation=m.dilation, ceil_mode=m.ceil_mode,
                                                  return_indices=m.return_indices))
        if isinstance(m, nn.AvgPool2d):
            return self.pool(base, "avg", x, dict(kernel_size=m.kernel_size, stride=m.stride, padding=m.padding,
                                                  ceil_mode=m.ceil_mode, count_include_pad=m.count_include_pad,
                                                  divisor_override=m.divisor_override))
        if isinstance(m, nn.AdaptiveAvgPool2d):
            return self.adaptive(base, x, m.output_size)
        raise UnsupportedOp(
            f"module {base!r} of type {type(m).__module__}.{type(m).__name__} cannot run in the pysparse runtime; "
            f"it runs {sorted(OPS)}"
        )

    def conv_attrs(self, m: Any, base: str) -> dict[str, Any]:
        padding = m.padding
        k, d = _pair(m.kernel_size), _pair(m.dilation)
        if isinstance(padding, str):
            if padding == "valid":
                padding = 0
            else:  # 'same'
                try:
                    padding = same_padding(k, d)
                except ValueError:
                    raise UnsupportedOp(f"module {base!r}: padding='same' with an even kernel is asymmetric") from None
        return {"in_channels": int(m.in_channels), "out_channels": int(m.out_channels), "kernel_size": k,
                "stride": _pair(m.stride), "padding": _pair(padding), "dilation": d, "groups": int(m.groups)}

    def matrix_node(self, base: str, op: str, x: Any, m: Any, attrs: dict[str, Any]) -> str:
        fmt, w = str(m.format), m.weight
        attrs["format"] = fmt
        if op == "linear":
            want = (attrs["out_features"], attrs["in_features"])
        else:
            want = (attrs["out_channels"], attrs["in_channels"] // attrs["groups"] * attrs["kernel_size"][0]
                    * attrs["kernel_size"][1])
        if tuple(w.shape) != want:
            raise ValueError(f"module {base!r}: weight has shape {tuple(w.shape)}, its sizes say {want}")
        if isinstance(w, SparseMatrixBase):
            if w.tag != fmt:
                raise ValueError(f"module {base!r}: .format is {fmt!r} but its weight is a {type(w).__name__}")
            attrs.update(w.file_attrs())
            params = w.to_file_arrays()
        else:
            if fmt != "dense":
                raise ValueError(f"module {base!r}: .format is {fmt!r} but its weight is dense")
            params = {"weight": np.ascontiguousarray(np.asarray(w if not isinstance(w, torch.Tensor) else _np(w),
                                                                 dtype=np.float32)).copy()}
        bias = getattr(m, "bias", None)
        params["bias"] = None if bias is None else (_np(bias) if isinstance(bias, torch.Tensor)
                                                    else np.asarray(bias, dtype=np.float32).copy())
        return self.emit(base, op, [x], attrs, params)

    def pool(self, base: str, kind: str, x: Any, a: dict[str, Any]) -> str:
        a = {k: self.const(v, f"{base} {k}") for k, v in a.items()}
        if a.pop("return_indices", False):
            raise UnsupportedOp(f"{base}: max_pool2d with return_indices")
        if a.pop("divisor_override", None) is not None:
            raise UnsupportedOp(f"{base}: avg_pool2d with divisor_override")
        k = _pair(a["kernel_size"])
        attrs = {"kernel_size": k, "stride": _pair(a["stride"]) if a["stride"] else k,
                 "padding": _pair(a["padding"]), "ceil_mode": bool(a["ceil_mode"])}
        if kind == "max":
            attrs["dilation"] = _pair(a["dilation"])
        else:
            attrs["count_include_pad"] = bool(a["count_include_pad"])
        return self.emit(base, f"{kind}_pool2d", [x], attrs)

    def adaptive(self, base: str, x: Any, size: Any) -> str:
        size = _pair(self.const(size, f"{base} output_size")) if size is not None else None
        if size is None or any(s is None for s in size):
            raise UnsupportedOp(f"{base}: adaptive_avg_pool2d with a None output size")
        return self.emit(base, "adaptive_avg_pool2d", [x], {"output_size": size})

    # ----------------------------------------------------- functions/methods
    def call(self, node: fx.Node, key: Any, label: str) -> Any:
        entry = _CALLS.get(key)
        if entry is None:
            raise UnsupportedOp(
                f"{label} (node {node.name!r}) cannot run in the pysparse runtime; it runs {sorted(OPS)}"
            )
        sig, handler = entry
        try:
            bound = inspect.signature(sig).bind(*node.args, **node.kwargs)
        except TypeError as e:
            raise UnsupportedOp(f"{label} (node {node.name!r}): unsupported arguments ({e})") from None
        bound.apply_defaults()
        return handler(self, node, label, dict(bound.arguments))


def _unary(op: str, **fixed: str) -> Callable[..., Any]:
    def h(ex: _Exporter, node: fx.Node, label: str, a: dict[str, Any]) -> Any:
        attrs = {k: ex.const(a[v], f"{label} {v}") for k, v in fixed.items()}
        attrs = {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v) for k, v in attrs.items()}
        return ex.emit(node.name, op, [ex.ref(a["input"], label)], attrs)

    return h


def _softmax(op: str) -> Callable[..., Any]:
    def h(ex: _Exporter, node: fx.Node, label: str, a: dict[str, Any]) -> Any:
        dim = ex.const(a["dim"], f"{label} dim")
        if dim is None or a.get("dtype") is not None:
            raise UnsupportedOp(f"{label}: {op} needs an explicit dim and no dtype")
        return ex.emit(node.name, op, [ex.ref(a["input"], label)], {"dim": int(dim)})

    return h


def _dropout(ex: _Exporter, node: fx.Node, label: str, a: dict[str, Any]) -> Any:
    if ex.const(a["training"], f"{label} training"):
        raise UnsupportedOp(f"{label}: dropout with training=True (random) cannot be saved; pass training=self.training")
    return ex.emit(node.name, "dropout", [ex.ref(a["input"], label)])


def _binary(op: str) -> Callable[..., Any]:
    def h(ex: _Exporter, node: fx.Node, label: str, a: dict[str, Any]) -> Any:
        if a.get("alpha", 1) != 1 or a.get("rounding_mode") is not None:
            raise UnsupportedOp(f"{label}: alpha / rounding_mode are not supported")
        return ex.emit(node.name, op, [ex.ref(a["input"], label), ex.ref(a["other"], label)])

    return h


def _flatten(ex: _Exporter, node: fx.Node, label: str, a: dict[str, Any]) -> Any:
    return ex.emit(node.name, "flatten", [ex.ref(a["input"], label)],
                   {"start_dim": ex.const(a["start_dim"], label), "end_dim": ex.const(a["end_dim"], label)})


def _reshape_method(ex: _Exporter, node: fx.Node, label: str, a: dict[str, Any]) -> Any:
    x, *dims = node.args
    if node.kwargs:
        raise UnsupportedOp(f"{label}: keyword arguments")
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = list(dims[0])
    return _reshape(ex, node, label, x, dims)


def _reshape_fn(ex: _Exporter, node: fx.Node, label: str, a: dict[str, Any]) -> Any:
    return _reshape(ex, node, label, a["input"], list(a["shape"]))


def _reshape(ex: _Exporter, node: fx.Node, label: str, x: Any, dims: list[Any]) -> Any:
    if not dims:
        raise UnsupportedOp(f"{label}: reshape to a scalar")
    return ex.emit(node.name, "reshape", [ex.ref(x, label)] + [ex.ref(d, label) for d in dims])


def _permute_method(ex: _Exporter, node: fx.Node, label: str, a: dict[str, Any]) -> Any:
    x, *dims = node.args
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = list(dims[0])
    return ex.emit(node.name, "permute", [ex.ref(x, label)], {"dims": [int(d) for d in ex.const(dims, label)]})


def _permute_fn(ex: _Exporter, node: fx.Node, label: str, a: dict[str, Any]) -> Any:
    return ex.emit(node.name, "permute", [ex.ref(a["input"], label)],
                   {"dims": [int(d) for d in ex.const(a["dims"], label)]})


def _transpose(ex: _Exporter, node: fx.Node, label: str, a: dict[str, Any]) -> Any:
    return ex.emit(node.name, "transpose", [ex.ref(a["input"], label)],
                   {"dim0": ex.const(a["dim0"], label), "dim1": ex.const(a["dim1"], label)})


def _squeeze(op: str) -> Callable[..., Any]:
    def h(ex: _Exporter, node: fx.Node, label: str, a: dict[str, Any]) -> Any:
        dim = ex.const(a["dim"], label)
        if isinstance(dim, (list, tuple)):
            raise UnsupportedOp(f"{label}: {op} over several dims")
        return ex.emit(node.name, op, [ex.ref(a["input"], label)], {} if dim is None else {"dim": int(dim)})

    return h


def _cat(ex: _Exporter, node: fx.Node, label: str, a: dict[str, Any]) -> Any:
    ts = a["tensors"]
    if not isinstance(ts, (list, tuple)) or not ts:
        raise UnsupportedOp(f"{label}: cat needs a list of tensors")
    return ex.emit(node.name, "cat", [ex.ref(t, label) for t in ts], {"dim": int(ex.const(a["dim"], label))})


def _max_pool(ex: _Exporter, node: fx.Node, label: str, a: dict[str, Any]) -> Any:
    x = ex.ref(a.pop("input"), label)
    return ex.pool(node.name, "max", x, a)


def _avg_pool(ex: _Exporter, node: fx.Node, label: str, a: dict[str, Any]) -> Any:
    x = ex.ref(a.pop("input"), label)
    return ex.pool(node.name, "avg", x, a)


def _adaptive(ex: _Exporter, node: fx.Node, label: str, a: dict[str, Any]) -> Any:
    return ex.adaptive(node.name, ex.ref(a["input"], label), a["output_size"])


def _mean(ex: _Exporter, node: fx.Node, label: str, a: dict[str, Any]) -> Any:
    dim = ex.const(a["dim"], label)
    if a["dtype"] is not None:
        raise UnsupportedOp(f"{label}: mean with a dtype")
    dims = [] if dim is None else [int(d) for d in (dim if isinstance(dim, (list, tuple)) else [dim])]
    return ex.emit(node.name, "mean", [ex.ref(a["input"], label)], {"dims": dims, "keepdim": bool(a["keepdim"])})


def _size(ex: _Exporter, node: fx.Node, label: str, a: dict[str, Any]) -> Any:
    x = ex.ref(a["input"], label)
    if a["dim"] is None:
        return ("shape", x)
    return ex.emit(node.name, "size", [x], {"dim": int(ex.const(a["dim"], label))})


def _getattr(ex: _Exporter, node: fx.Node, label: str, a: dict[str, Any]) -> Any:
    x, attr = node.args
    if attr != "shape":
        raise UnsupportedOp(f"{label}: attribute {attr!r} of a tensor")
    return ("shape", ex.ref(x, label))


def _getitem(ex: _Exporter, node: fx.Node, label: str, a: dict[str, Any]) -> Any:
    src, idx = node.args
    tag = ex.names.get(src) if isinstance(src, fx.Node) else None
    if isinstance(tag, tuple) and tag[0] == "shape" and isinstance(idx, int):
        return ex.emit(node.name, "size", [tag[1]], {"dim": idx})
    raise UnsupportedOp(f"{label}: indexing / slicing tensors (node {node.name!r})")


def _identity(ex: _Exporter, node: fx.Node, label: str, a: dict[str, Any]) -> Any:
    return ex.ref(a["input"], label)


def _f_linear(ex: _Exporter, node: fx.Node, label: str, a: dict[str, Any]) -> Any:
    w = ex.const(a["weight"], f"{label} weight")
    b = ex.const(a["bias"], f"{label} bias")
    return ex.emit(node.name, "linear", [ex.ref(a["input"], label)],
                   {"in_features": int(w.shape[1]), "out_features": int(w.shape[0]), "format": "dense"},
                   {"weight": _np(w), "bias": None if b is None else _np(b)})


def _f_conv2d(ex: _Exporter, node: fx.Node, label: str, a: dict[str, Any]) -> Any:
    w = ex.const(a["weight"], f"{label} weight")
    b = ex.const(a["bias"], f"{label} bias")
    a = {k: ex.const(a[k], label) for k in ("stride", "padding", "dilation", "groups")}
    if isinstance(a["padding"], str):
        raise UnsupportedOp(f"{label}: string padding in F.conv2d")
    g = int(a["groups"])
    attrs = {"in_channels": int(w.shape[1]) * g, "out_channels": int(w.shape[0]), "kernel_size": list(w.shape[2:]),
             "stride": _pair(a["stride"]), "padding": _pair(a["padding"]), "dilation": _pair(a["dilation"]),
             "groups": g, "format": "dense"}
    return ex.emit(node.name, "conv2d", [ex.ref(node.args[0] if node.args else node.kwargs["input"], label)], attrs,
                   {"weight": _np(w).reshape(w.shape[0], -1), "bias": None if b is None else _np(b)})


def _f_layer_norm(ex: _Exporter, node: fx.Node, label: str, a: dict[str, Any]) -> Any:
    w = ex.const(a["weight"], label)
    b = ex.const(a["bias"], label)
    return ex.emit(node.name, "layer_norm", [ex.ref(a["input"], label)],
                   {"normalized_shape": [int(s) for s in ex.const(a["normalized_shape"], label)],
                    "eps": float(ex.const(a["eps"], label))},
                   {"weight": None if w is None else _np(w), "bias": None if b is None else _np(b)})


_CALLS: dict[Any, tuple[Callable[..., Any], Callable[..., Any]]] = {}


def _register(keys: list[Any], sig: Callable[..., Any], handler: Callable[..., Any]) -> None:
    for k in keys:
        _CALLS[k] = (sig, handler)


_register([F.relu, torch.relu, ("method", "relu")], _s_unary, _unary("relu"))
_register([F.relu6], _s_unary, _unary("relu6"))
_register([F.gelu], _s_gelu, _unary("gelu", approximate="approximate"))
_register([F.silu], _s_unary, _unary("silu"))
_register([torch.sigmoid, F.sigmoid, ("method", "sigmoid")], _s_unary, _unary("sigmoid"))
_register([torch.tanh, F.tanh, ("method", "tanh")], _s_unary, _unary("tanh"))
_register([F.hardswish], _s_unary, _unary("hardswish"))
_register([F.hardsigmoid], _s_unary, _unary("hardsigmoid"))
_register([F.hardtanh], _s_hardtanh, _unary("hardtanh", min_val="min_val", max_val="max_val"))
_register([F.leaky_relu], _s_leaky, _unary("leaky_relu", negative_slope="negative_slope"))
_register([torch.clamp, torch.clip, ("method", "clamp"), ("method", "clip")], _s_clamp,
          _unary("clamp", min="min", max="max"))
_register([operator.neg, torch.neg, ("method", "neg")], _s_self, _unary("neg"))
_register([F.softmax, torch.softmax, ("method", "softmax")], _s_softmax, _softmax("softmax"))
_register([F.log_softmax, torch.log_softmax, ("method", "log_softmax")], _s_softmax, _softmax("log_softmax"))
_register([F.dropout, F.dropout1d, F.dropout2d, F.alpha_dropout], _s_dropout, _dropout)
_register([torch.flatten, ("method", "flatten")], _s_flatten, _flatten)
_register([("method", "view"), ("method", "reshape")], _s_any, _reshape_method)


def _s_reshape(input, shape): ...  # noqa: E704
def _s_permute(input, dims): ...  # noqa: E704


_register([torch.reshape], _s_reshape, _reshape_fn)
_register([("method", "permute")], _s_any, _permute_method)
_register([torch.permute], _s_permute, _permute_fn)
_register([torch.transpose, ("method", "transpose")], _s_transpose, _transpose)
_register([torch.squeeze, ("method", "squeeze")], _s_squeeze, _squeeze("squeeze"))
_register([torch.unsqueeze, ("method", "unsqueeze")], _s_unsqueeze, _squeeze("unsqueeze"))
_register([torch.cat, torch.concat, torch.concatenate], _s_cat, _cat)
for _op, _fns in {
    "add": [operator.add, operator.iadd, torch.add, ("method", "add")],
    "sub": [operator.sub, operator.isub, torch.sub, ("method", "sub")],
    "mul": [operator.mul, operator.imul, torch.mul, ("method", "mul")],
}.items():
    _register(_fns, _s_binary, _binary(_op))
_register([operator.truediv, operator.itruediv, torch.div, ("method", "div")], _s_div, _binary("div"))
_register([F.max_pool2d], _s_max_pool, _max_pool)
_register([F.avg_pool2d], _s_avg_pool, _avg_pool)
_register([F.adaptive_avg_pool2d], _s_adaptive, _adaptive)
_register([torch.mean, ("method", "mean")], _s_mean, _mean)
_register([("method", "size")], _s_size, _size)
_register([("method", "contiguous")], _s_self, _identity)
_register([F.linear], _s_linear, _f_linear)
_register([F.conv2d], _s_conv2d, _f_conv2d)
_register([F.layer_norm], _s_layer_norm, _f_layer_norm)
_register([getattr], _s_any, _getattr)
_register([operator.getitem], _s_any, _getitem)


def _name_of(target: Any) -> str:
    mod = getattr(target, "__module__", None) or ""
    return f"{mod}.{getattr(target, '__name__', repr(target))}".lstrip(".")


def export(model: nn.Module, inputs: tuple[Any, ...]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(graph, arrays) of ``model`` for the runtime; raises ValueError naming anything it cannot run."""
    tracer = _Tracer()
    if tracer.is_leaf_module(model, ""):  # a bare layer: trace it as a call, not through its forward
        model = nn.Sequential(model)
    try:
        graph = tracer.trace(model)
    except UnsupportedOp:
        raise
    except Exception as e:  # fx cannot trace data-dependent control flow, etc.
        raise ValueError(
            f"torch.fx could not trace the model ({type(e).__name__}: {e}); pysparse.save needs a model "
            "whose forward has no data-dependent Python control flow"
        ) from None
    gm = fx.GraphModule(tracer.root, graph)
    ex = _Exporter(gm)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(inputs):
        raise ValueError(f"the model's forward takes {len(placeholders)} inputs but example_inputs has {len(inputs)}")
    graph_inputs = []
    outputs: list[str] = []
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            t = inputs[len(graph_inputs)]
            name = ex._fresh(node.name)
            ex.names[node] = name
            graph_inputs.append({"name": name, "shape": [None] + list(t.shape[1:]) if t.dim() else []})
        elif node.op == "get_attr":
            t: Any = gm
            for part in str(node.target).split("."):
                t = getattr(t, part)
            if not isinstance(t, torch.Tensor):
                raise UnsupportedOp(f"attribute {node.target!r} of type {type(t).__name__} used as a value")
            ex.names[node] = ("const", t.detach())
        elif node.op == "call_module":
            ex.names[node] = ex.module(node, gm.get_submodule(node.target))
        elif node.op == "call_function":
            ex.names[node] = ex.call(node, node.target, f"function {_name_of(node.target)}")
        elif node.op == "call_method":
            ex.names[node] = ex.call(node, ("method", node.target), f"method Tensor.{node.target}")
        elif node.op == "output":
            res = node.args[0]
            for r in res if isinstance(res, (list, tuple)) else [res]:
                if not isinstance(r, fx.Node):
                    raise UnsupportedOp(f"model output of type {type(r).__name__}: outputs must be tensors")
                ref = ex.ref(r, "output")
                if not isinstance(ref, str):
                    raise UnsupportedOp("model output: outputs must be tensors")
                outputs.append(ref)
    nodes, arrays = _prune(ex.nodes, ex.arrays, outputs)
    return {"inputs": graph_inputs, "outputs": outputs, "nodes": nodes}, arrays


def _prune(nodes: list[dict[str, Any]], arrays: dict[str, np.ndarray], outputs: list[str]):
    """Drop nodes no output depends on (and their arrays)."""
    live = set(outputs)
    keep = []
    for n in reversed(nodes):
        if n["name"] in live:
            keep.append(n)
            live.update(r for r in n.get("inputs", []) if isinstance(r, str))
    keep.reverse()
    used = {a for n in keep for a in n.get("params", {}).values()}
    return keep, {k: v for k, v in arrays.items() if k in used}
