"""The exporter's core: the tracer (which modules are leaves), errors, and the graph builder
that emits runtime nodes and folds constants."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

from .._checks import pair

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


def _np_view(t: Any) -> np.ndarray:
    """A read-only float32 view of a tensor's memory when it is a contiguous float32 CPU tensor
    (a copy otherwise): for tables the runtime only reads (a BERT's word embeddings: 47 MB in
    MiniLM-L6, 94 MB in BERT-base), so a model converted in process does not hold them twice. Its
    users re-export when the tensor changes (``pysparse.fused``) or write it out at once (save)."""
    t = t.detach()
    if t.device.type != "cpu" or t.dtype != torch.float32 or not t.is_contiguous():
        return _np(t)
    a = t.numpy().view()
    a.flags.writeable = False
    return a


def _pair(v: Any, what: str = "a size") -> list[int]:
    """An int, [k] or a pair -> [h, w] (the file's attribute form)."""
    return list(pair(v, what, 0, single=True))


class GraphBuilder:
    """Runtime nodes and arrays emitted for one traced fx graph."""

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
