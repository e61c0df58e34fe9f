"""nn.Module -> runtime node: pysparse modules (the format registry's file arrays) and the
torch.nn layers the runtime runs."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

from ..formats import SparseMatrixBase
from ..ops.geometry import same_padding
from ..runtime import OPS
from .base import GraphBuilder, UnsupportedOp, _np, _pair, _sparse_kind


class ModuleExporter(GraphBuilder):
    """The graph builder with a handler for each module kind (and the pool helpers calls share)."""

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
