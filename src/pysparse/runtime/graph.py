"""Graph validation: names, references, attributes and arrays of every node, against ``OPS``.

``check_graph(graph, arrays)`` runs nothing; it checks the structure the JSON
header describes and returns the parsed inputs, nodes and outputs. Whatever is
wrong raises ``ModelFileError`` naming the node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .ops import BINARY_OPS, OPS, OpSpec
from .schema import (
    _REQUIRED, MAX_DIM, MAX_INPUTS, MAX_NODES, MAX_RANK, ModelFileError, _check_keys, _check_name, _choice, _float,
    _int, _Param,
)

# What a graph input holds: float32 values, or integers (token ids, masks; int64 or int32 at run time).
INPUT_DTYPES = ("float32", "int64")
_INPUT_DTYPE = _choice(*INPUT_DTYPES)


@dataclass(frozen=True)
class _Node:
    name: str
    op: str
    inputs: tuple[Any, ...]
    attrs: dict[str, Any]
    params: dict[str, str]
    raw: dict[str, Any]


@dataclass(frozen=True)
class CheckedGraph:
    inputs: list[dict[str, Any]]  # {"name", "shape", "dtype"}; None in a shape marks a free dimension
    nodes: list[_Node]
    outputs: list[str]


def _check_attrs(spec: OpSpec, raw: Any, where: str) -> dict[str, Any]:
    raw = _check_keys(raw, list(spec.attrs), f"{where} attrs")
    out: dict[str, Any] = {}
    for key, (check, default) in spec.attrs.items():
        if key in raw:
            out[key] = check(raw[key], f"{where} attribute {key!r}")
        elif default is _REQUIRED:
            raise ModelFileError(f"{where} is missing the attribute {key!r}")
        else:
            out[key] = default
    return out


def _check_array(arr: np.ndarray, spec: _Param, where: str) -> None:
    if arr.dtype.name not in spec.dtypes:
        raise ModelFileError(f"{where} must be {' or '.join(spec.dtypes)}, got {arr.dtype.name}")
    if spec.shape is None:
        if arr.ndim > MAX_RANK:
            raise ModelFileError(f"{where} has rank {arr.ndim} > {MAX_RANK}")
        return
    if arr.ndim != len(spec.shape) or any(w is not None and w != s for w, s in zip(spec.shape, arr.shape)):
        want = tuple("*" if w is None else w for w in spec.shape)
        raise ModelFileError(f"{where} must have shape {want}, got {arr.shape}")


def _check_input_spec(spec: Any, where: str) -> dict[str, Any]:
    spec = _check_keys(spec, ("name", "shape", "dtype"), where, ("name", "shape"))
    _check_name(spec["name"], f"{where} name")
    # "dtype" came with the transformer ops (token ids, masks); files without it are float32.
    spec = {**spec, "dtype": _INPUT_DTYPE(spec.get("dtype", "float32"), f"{where} dtype")}
    shape = spec["shape"]
    if not isinstance(shape, list) or len(shape) > MAX_RANK:
        raise ModelFileError(f"{where} shape must be a list of at most {MAX_RANK} entries")
    for s in shape:
        if s is not None:
            _int(0, MAX_DIM)(s, f"{where} shape entry")
    return spec


def check_graph(graph: Any, arrays: dict[str, np.ndarray]) -> CheckedGraph:
    """The graph's inputs, nodes and outputs, every reference, attribute and array checked."""
    g = _check_keys(graph, ("inputs", "outputs", "nodes"), "graph", ("inputs", "outputs", "nodes"))
    if not isinstance(g["inputs"], list) or not 1 <= len(g["inputs"]) <= MAX_INPUTS:
        raise ModelFileError(f"graph inputs must be a list of 1 to {MAX_INPUTS} inputs")
    if not isinstance(g["nodes"], list) or len(g["nodes"]) > MAX_NODES:
        raise ModelFileError(f"graph nodes must be a list of at most {MAX_NODES} nodes")
    if not isinstance(g["outputs"], list) or not 1 <= len(g["outputs"]) <= MAX_INPUTS:
        raise ModelFileError(f"graph outputs must be a list of 1 to {MAX_INPUTS} node names")
    inputs = [_check_input_spec(s, f"graph input {i}") for i, s in enumerate(g["inputs"])]
    defined: dict[str, str] = {}  # name -> op ("input" for graph inputs)
    for s in inputs:
        if s["name"] in defined:
            raise ModelFileError(f"graph input name {s['name']!r} is used twice")
        defined[s["name"]] = "input"
    used_arrays: set[str] = set()
    nodes = [_check_node(raw, i, defined, arrays, used_arrays) for i, raw in enumerate(g["nodes"])]
    unused = sorted(set(arrays) - used_arrays)
    if unused:
        raise ModelFileError(f"arrays {unused[:5]} are in the file but no node uses them")
    outputs: list[str] = []
    for o in g["outputs"]:
        if not isinstance(o, str) or o not in defined:
            raise ModelFileError(f"graph output {o!r:.80} is not a node or input of the graph")
        outputs.append(o)
    return CheckedGraph(inputs, nodes, outputs)


def _check_node(
    raw: Any, i: int, defined: dict[str, str], arrays: dict[str, np.ndarray], used_arrays: set[str]
) -> _Node:
    where = f"node {i}"
    d = _check_keys(raw, ("name", "op", "inputs", "attrs", "params"), where, ("name", "op"))
    name = _check_name(d["name"], f"{where} name")
    where = f"node {name!r}"
    if name in defined:
        raise ModelFileError(f"{where} is defined twice")
    op = d["op"]
    if not isinstance(op, str) or op not in OPS:
        raise ModelFileError(f"{where}: unknown op {op!r:.80}; this runtime runs {sorted(OPS)}")
    spec = OPS[op]
    inputs = d.get("inputs", [])
    if not isinstance(inputs, list) or not spec.inputs[0] <= len(inputs) <= spec.inputs[1]:
        raise ModelFileError(f"{where} ({op}) takes {spec.inputs[0]} to {spec.inputs[1]} inputs")
    for r in inputs:
        if isinstance(r, str):
            if r not in defined:
                raise ModelFileError(f"{where} reads {r!r:.80}, which is not defined before it")
        else:
            _float()(r, f"{where} literal input")
    # Literal inputs only where ops take numbers: binary ops and reshape sizes.
    tensor_inputs = inputs[:1] if op == "reshape" else inputs
    if op not in BINARY_OPS and any(not isinstance(r, str) for r in tensor_inputs):
        raise ModelFileError(f"{where} ({op}) takes node names as inputs, got a number")
    if op in BINARY_OPS and not any(isinstance(r, str) for r in inputs):
        raise ModelFileError(f"{where} ({op}) needs at least one node input")
    attrs = _check_attrs(spec, d.get("attrs", {}), where)
    params = d.get("params", {})
    want = spec.params(attrs, where)
    params = _check_keys(params, list(want), f"{where} params")
    for role, pspec in want.items():
        if role not in params:
            if pspec.required:
                raise ModelFileError(f"{where} is missing the array {role!r}")
            continue
        aname = params[role]
        if not isinstance(aname, str) or aname not in arrays:
            raise ModelFileError(f"{where} array {role!r} names {aname!r:.80}, which is not in the file")
        if aname in used_arrays:
            raise ModelFileError(f"{where} array {aname!r} is used twice")
        used_arrays.add(aname)
        _check_array(arrays[aname], pspec, f"{where} array {role!r}")
    defined[name] = op
    return _Node(name, op, tuple(inputs), attrs, dict(params), d)
