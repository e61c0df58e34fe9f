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

from .report import LayerInfo, dense_twin, layer_infos, summary_table
from .container import check_tokenizer_json
from .fuse import fuse
from .graph import check_graph
from .ops import OPS, SPARSE_OPS
from .ops.base import _GROW_LIMIT, Fn
from .ops.matmul import _build_matrix, _conv_cols
from .schema import MAX_DRY_RUN_BYTES, MAX_DRY_RUN_ELEMENTS, MAX_DRY_RUN_WORK, ModelFileError

_INT_INPUTS = (np.dtype(np.int64), np.dtype(np.int32))

# What a node may raise on a hostile graph; the loader turns each into ModelFileError.
_LOAD_ERRORS = (ValueError, TypeError, IndexError, KeyError, ArithmeticError, MemoryError, RuntimeError, RecursionError)


class Model:
    """A loaded model: ``model(*inputs)`` runs numpy arrays through the graph (float32, or int64 /
    int32 for the inputs declared int64: token ids, masks). ``tokenizer_json`` is the tokenizer
    the file carries (or None), for ``pysparse.text``.

    Built by ``pysparse.load(path)`` (or ``Model(graph, arrays)`` from a parsed
    graph and its arrays). Construction validates everything, then runs zeros
    of the declared input shapes once (``dry_run``) so that shapes that do not
    fit between nodes fail at load, not later; it raises ``ModelFileError`` on
    the first problem.
    """

    def __init__(self, graph: Any, arrays: dict[str, np.ndarray], *, dry_run: bool = True,
                 tokenizer: str | None = None) -> None:
        checked = check_graph(graph, arrays)
        self.tokenizer_json = None if tokenizer is None else check_tokenizer_json(tokenizer, "the model")
        self._graph = graph
        self._arrays = arrays
        self._inputs = checked.inputs
        self._nodes = checked.nodes
        self._outputs = checked.outputs
        self._fns: list[Fn] = []
        self._params: list[dict[str, np.ndarray]] = []  # role -> array, per node
        for n in self._nodes:
            p = {role: arrays[name] for role, name in n.params.items()}
            try:
                with np.errstate(all="ignore"):
                    self._fns.append(OPS[n.op].build(n.name, n.attrs, p))
            except _LOAD_ERRORS as e:  # the C++ format constructors' verdict
                raise ModelFileError(f"node {n.name!r} ({n.op}): {e}") from None
            self._params.append(p)
        self._release = self._releases(self._nodes)
        if dry_run:
            self._dry_run()
        # The run plan: the file's graph with node pairs fused (runtime/fuse.py); the dry run
        # above checked the file's own nodes, each within its bounds.
        self._plan_nodes, self._plan_fns = fuse(self._nodes, self._fns, self._outputs)
        self._plan_release = self._releases(self._plan_nodes)

    def _releases(self, nodes: list[Any]) -> list[list[str]]:
        """Per node, the values to free after it: those it reads last, so intermediates go early."""
        last: dict[str, int] = {}
        for i, n in enumerate(nodes):
            for r in n.inputs:
                if isinstance(r, str):
                    last[r] = i
        release: list[list[str]] = [[] for _ in nodes]
        for name, i in last.items():
            if name not in self._outputs:
                release[i].append(name)
        for i, n in enumerate(nodes):  # a value nothing reads goes at once
            if n.name not in last and n.name not in self._outputs:
                release[i].append(n.name)
        return release

    def _dry_run(self) -> None:
        """Run zeros of the declared input shapes (free dims 1) once, within MAX_DRY_RUN_BYTES of
        live memory and MAX_DRY_RUN_WORK operations: shapes that do not fit between nodes, and
        graphs that need more than any real model, fail here, at load, naming the node."""
        shapes = [tuple(1 if d is None else d for d in s["shape"]) for s in self._inputs]
        if sum(math.prod(s) for s in shapes) > MAX_DRY_RUN_ELEMENTS:
            raise ModelFileError(f"declared input shapes {self.input_shapes} are too large")
        xs = [np.zeros(s, dtype=spec["dtype"]) for s, spec in zip(shapes, self._inputs)]
        budget = _Budget(self)
        token = _GROW_LIMIT.set(MAX_DRY_RUN_ELEMENTS)
        try:
            with np.errstate(all="ignore"):
                self._run(xs, budget)
        except ModelFileError:
            raise
        except _LOAD_ERRORS as e:
            n = budget.node
            where = f"node {n.name!r} ({n.op}): " if n is not None and f"node {n.name!r}" not in str(e) else ""
            raise ModelFileError(f"the graph does not run on inputs of its declared shapes: {where}{e}") from None
        finally:
            _GROW_LIMIT.reset(token)

    # ------------------------------------------------------------------ use

    @property
    def input_names(self) -> list[str]:
        return [s["name"] for s in self._inputs]

    @property
    def input_shapes(self) -> list[tuple[int | None, ...]]:
        """Each input's shape; None marks a free dimension (the batch, a sequence length)."""
        return [tuple(s["shape"]) for s in self._inputs]

    @property
    def input_dtypes(self) -> list[str]:
        """Each input's dtype: 'float32', or 'int64' for integers (int64 or int32 arrays are taken)."""
        return [s["dtype"] for s in self._inputs]

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
        if spec["dtype"] == "int64":  # token ids, masks: integers as given, never cast from floats
            if x.dtype not in _INT_INPUTS:
                raise TypeError(f"input {name!r} must be an int64 or int32 array (token ids or a 0/1 mask), "
                                f"got dtype {x.dtype}")
        elif x.dtype.kind not in "fiu":
            raise TypeError(f"input {name!r} must hold real numbers, got dtype {x.dtype}")
        else:
            x = np.asarray(x, dtype=np.float32)
        shape = spec["shape"]
        if x.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
            want = tuple("batch" if s is None else s for s in shape)
            raise ValueError(f"input {name!r} must have shape {want}, got {x.shape}")
        if any(s is None and d == 0 for s, d in zip(shape, x.shape)):
            raise ValueError(f"input {name!r} has shape {x.shape}, a batch of 0: pass at least one sample")
        return x

    def __call__(self, *inputs: Any) -> Any:
        """Run the graph: one numpy array per input; one array per output (a tuple if several)."""
        if len(inputs) != len(self._inputs):
            raise TypeError(f"the model takes {len(self._inputs)} input(s) {self.input_names}, got {len(inputs)}")
        xs = [self._check_input(x, s) for x, s in zip(inputs, self._inputs)]
        with np.errstate(all="ignore"):  # IEEE results (inf, nan) without warnings, as torch gives them
            outs = self._run(xs)
        return outs[0] if len(outs) == 1 else outs

    def _run(self, xs: list[np.ndarray], budget: _Budget | None = None) -> tuple[Any, ...]:
        env: dict[str, Any] = {s["name"]: x for x, s in zip(xs, self._inputs)}
        if budget is not None:
            for x in xs:
                budget.hold(x)
        if budget is None:  # the run plan (fused)
            for n, fn, free in zip(self._plan_nodes, self._plan_fns, self._plan_release):
                env[n.name] = fn(*[env[r] if isinstance(r, str) else r for r in n.inputs])
                for r in free:
                    del env[r]
            return tuple(env[o] for o in self._outputs)
        for i, (n, fn, free) in enumerate(zip(self._nodes, self._fns, self._release)):
            args = [env[r] if isinstance(r, str) else r for r in n.inputs]
            budget.before(i, n, args)
            y = env[n.name] = fn(*args)
            budget.after(n, y)
            for r in free:
                budget.drop(env[r])
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
    def layers(self) -> list[LayerInfo]:
        """Per node with arrays: op, format, weight shape, sparsity and bytes."""
        return layer_infos(self)

    def summary(self) -> str:
        """A printable table of the layers with weights, and the totals."""
        return summary_table(self)

    def densified(self, *, max_bytes: int = 1 << 31) -> Model:
        """The same model with every sparse weight stored dense (for comparisons).

        Raises MemoryError if the dense weights would take more than ``max_bytes``
        (default 2 GiB: more than any model this runtime is for; a small file can
        declare a huge, all-zero sparse matrix)."""
        return dense_twin(self, max_bytes)

    def __repr__(self) -> str:
        formats = sorted({li.format for li in self.layers if li.op in SPARSE_OPS})
        return f"Model(inputs={self.input_names}, outputs={self._outputs}, nodes={len(self._nodes)}, formats={formats})"


def _root(x: np.ndarray) -> Any:
    """The object that owns x's memory (x itself unless x is a view)."""
    while isinstance(x.base, np.ndarray):
        x = x.base
    return x


class _Budget:
    """The dry run's bounds: asks each node's cost before it runs and tracks the live memory.

    Live memory counts each buffer once (views share their base) and not the file's own
    arrays (constants), which the file size already bounds.
    """

    def __init__(self, model: Model) -> None:
        self._model = model
        self._file = {id(_root(a)) for a in model._arrays.values()}
        self._held: dict[int, list[Any]] = {}  # id(root) -> [root, references]
        self.live = 0
        self.work = 0.0
        self.node: Any = None

    def hold(self, y: Any) -> None:
        if not isinstance(y, np.ndarray):
            return
        root = _root(y)
        if id(root) in self._file:
            return
        entry = self._held.setdefault(id(root), [root, 0])
        if entry[1] == 0:
            self.live += int(root.nbytes) if isinstance(root, np.ndarray) else int(y.nbytes)
        entry[1] += 1

    def drop(self, y: Any) -> None:
        if not isinstance(y, np.ndarray):
            return
        root = _root(y)
        entry = self._held.get(id(root))
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.live -= int(root.nbytes) if isinstance(root, np.ndarray) else int(y.nbytes)
            del self._held[id(root)]

    def before(self, i: int, n: Any, args: list[Any]) -> None:
        self.node = n
        c = OPS[n.op].cost(n.attrs, self._model._params[i], args)
        where = f"node {n.name!r} ({n.op})"
        if c.out > MAX_DRY_RUN_ELEMENTS:
            raise ModelFileError(
                f"{where} would make a tensor of {c.out} elements from a batch of 1 (at most {MAX_DRY_RUN_ELEMENTS})"
            )
        need = self.live + 4 * (c.out + c.scratch)
        if need > MAX_DRY_RUN_BYTES:
            raise ModelFileError(
                f"{where} would need {need / 2**20:,.0f} MiB at batch 1 ({4 * c.out / 2**20:,.0f} MiB output, "
                f"{4 * c.scratch / 2**20:,.0f} MiB temporaries, {self.live / 2**20:,.0f} MiB held by earlier nodes); "
                f"a model file may need at most {MAX_DRY_RUN_BYTES / 2**20:,.0f} MiB there"
            )
        self.work += c.work + c.out
        if self.work > MAX_DRY_RUN_WORK:
            raise ModelFileError(
                f"{where} brings the work of one batch-1 run to {self.work:.3g} operations (at most "
                f"{MAX_DRY_RUN_WORK:.3g}, a few seconds of one core); no model this runtime is for needs that much"
            )

    def after(self, n: Any, y: Any) -> None:
        if isinstance(y, np.ndarray) and y.size > MAX_DRY_RUN_ELEMENTS:
            raise ModelFileError(f"node {n.name!r} ({n.op}) makes a tensor of {y.size} elements from a batch of 1")
        if not isinstance(y, (np.ndarray, int)):
            raise ModelFileError(f"node {n.name!r} ({n.op}) makes a {type(y).__name__}, not a tensor or an int")
        self.hold(y)
