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
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

from ..runtime import OPS
from .base import UnsupportedOp, _Tracer
from .functions import _CALLS
from .modules import ModuleExporter


class _Exporter(ModuleExporter):
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
