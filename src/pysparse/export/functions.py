"""Functions and tensor methods -> runtime nodes: their signatures (bound with inspect, so
positional and keyword calls normalise to the same names), the handlers and the table."""

from __future__ import annotations

import operator
from typing import Any, Callable

import torch
import torch.fx as fx
import torch.nn.functional as F

from .base import UnsupportedOp, _np, _pair
from .modules import ModuleExporter as _Exporter

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
