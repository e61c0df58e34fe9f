"""The loaded ``Model``: builds every node once, dry-runs the graph at load, then runs it per call.

Construction validates the graph (``graph.check_graph``), builds each node's
function (the sparse matrices, whose index arrays the C++ constructors
validate), works out when each intermediate can be freed, and runs zeros of the
declared input shapes once so that shapes that do not fit between nodes fail at
load, not later.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import report
from .graph import check_graph
from .ops import OPS, SPARSE_OPS
from .ops.base import _GROW_LIMIT, Fn
from .ops.matmul import _build_matrix, _conv_cols
from .schema import MAX_DRY_RUN_ELEMENTS, ModelFileError


class Model:
    """A loaded model: ``model(*inputs)`` runs numpy float32 arrays through the graph.

    Built by ``pysparse.load(path)`` (or ``Model(graph, arrays)`` from a parsed
    graph and its arrays). Construction validates everything, then runs zeros
    of the declared input shapes once (``dry_run``) so that shapes that do not
    fit between nodes fail at load, not later; it raises ``ModelFileError`` on
    the first problem.
    """

    def __init__(self, graph: Any, arrays: dict[str, np.ndarray], *, dry_run: bool = True) -> None:
        checked = check_graph(graph, arrays)
        self._graph = graph
        self._arrays = arrays
        self._inputs = checked.inputs
        self._nodes = checked.nodes
        self._outputs = checked.outputs
        self._fns: list[Fn] = []
        for n in self._nodes:
            p = {role: arrays[name] for role, name in n.params.items()}
            try:
                with np.errstate(all="ignore"):
                    self._fns.append(OPS[n.op].build(n.name, n.attrs, p))
            except (ValueError, TypeError) as e:  # the C++ format constructors' verdict
                raise ModelFileError(f"node {n.name!r} ({n.op}): {e}") from None
        # The last node that reads each value, so intermediates are freed early.
        last: dict[str, int] = {}
        for i, n in enumerate(self._nodes):
            for r in n.inputs:
                if isinstance(r, str):
                    last[r] = i
        self._release: list[list[str]] = [[] for _ in self._nodes]
        for name, i in last.items():
            if name not in self._outputs:
                self._release[i].append(name)
        if dry_run:
            self._dry_run()

    def _dry_run(self) -> None:
        """Run zeros of the declared input shapes (free dims 1) once: shapes that do not
        fit between nodes, or intermediates beyond MAX_DRY_RUN_ELEMENTS, fail here, at load."""
        shapes = [tuple(1 if d is None else d for d in s["shape"]) for s in self._inputs]
        if sum(math.prod(s) for s in shapes) > MAX_DRY_RUN_ELEMENTS:
            raise ModelFileError(f"declared input shapes {self.input_shapes} are too large")
        xs = [np.zeros(s, dtype=np.float32) for s in shapes]
        token = _GROW_LIMIT.set(MAX_DRY_RUN_ELEMENTS)
        try:
            with np.errstate(all="ignore"):
                self._run(xs, MAX_DRY_RUN_ELEMENTS)
        except (ValueError, TypeError, IndexError, MemoryError, OverflowError) as e:
            raise ModelFileError(f"the graph does not run on inputs of its declared shapes: {e}") from None
        finally:
            _GROW_LIMIT.reset(token)

    # ------------------------------------------------------------------ use

    @property
    def input_names(self) -> list[str]:
        return [s["name"] for s in self._inputs]

    @property
    def input_shapes(self) -> list[tuple[int | None, ...]]:
        """Each input's shape; None marks a free dimension (the batch)."""
        return [tuple(s["shape"]) for s in self._inputs]

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    @property
    def graph(self) -> dict[str, Any]:
        return self._graph

    def _check_input(self, x: Any, spec: dict[str, Any]) -> np.ndarray:
        name = spec["name"]
        if not isinstance(x, np.ndarray):
            from .._arrays import as_input

            x, _ = as_input(x, name)
        if x.dtype.kind not in "fiu":
            raise TypeError(f"input {name!r} must hold real numbers, got dtype {x.dtype}")
        x = np.asarray(x, dtype=np.float32)
        shape = spec["shape"]
        if x.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
            want = tuple("batch" if s is None else s for s in shape)
            raise ValueError(f"input {name!r} must have shape {want}, got {x.shape}")
        return x

    def __call__(self, *inputs: Any) -> Any:
        """Run the graph: one numpy array per input; one array per output (a tuple if several)."""
        if len(inputs) != len(self._inputs):
            raise TypeError(f"the model takes {len(self._inputs)} input(s) {self.input_names}, got {len(inputs)}")
        xs = [self._check_input(x, s) for x, s in zip(inputs, self._inputs)]
        with np.errstate(all="ignore"):  # IEEE results (inf, nan) without warnings, as torch gives them
            outs = self._run(xs)
        return outs[0] if len(outs) == 1 else outs

    def _run(self, xs: list[np.ndarray], limit: int | None = None) -> tuple[Any, ...]:
        env: dict[str, Any] = {s["name"]: x for x, s in zip(xs, self._inputs)}
        for n, fn, free in zip(self._nodes, self._fns, self._release):
            y = env[n.name] = fn(*[env[r] if isinstance(r, str) else r for r in n.inputs])
            if limit is not None:
                if isinstance(y, np.ndarray) and y.size > limit:
                    raise ValueError(f"node {n.name!r} makes a tensor of {y.size} elements from a batch of 1")
                if not isinstance(y, (np.ndarray, int)):
                    raise ValueError(f"node {n.name!r} makes a {type(y).__name__}")
            for r in free:
                del env[r]
        return tuple(env[o] for o in self._outputs)

    def matrix(self, name: str) -> Any:
        """The weight of a linear/conv2d node: a pysparse matrix or a dense float32 array."""
        for n in self._nodes:
            if n.name == name and n.op in SPARSE_OPS:
                rows = n.attrs["out_features"] if n.op == "linear" else n.attrs["out_channels"]
                cols = n.attrs["in_features"] if n.op == "linear" else _conv_cols(n.attrs, n.name)
                return _build_matrix(n.attrs, {r: self._arrays[a] for r, a in n.params.items()}, rows, cols)
        raise KeyError(f"no linear or conv2d node named {name!r}")

    @property
    def layers(self) -> list[report.LayerInfo]:
        """Per node with arrays: op, format, weight shape, sparsity and bytes."""
        return report.layers(self)

    def summary(self) -> str:
        """A printable table of the layers with weights, and the totals."""
        return report.summary(self)

    def densified(self) -> Model:
        """The same model with every sparse weight stored dense (for comparisons)."""
        return report.densified(self)

    def __repr__(self) -> str:
        formats = sorted({li.format for li in self.layers if li.op in SPARSE_OPS})
        return f"Model(inputs={self.input_names}, outputs={self._outputs}, nodes={len(self._nodes)}, formats={formats})"
