"""What a loaded model holds: per-layer formats, sparsity and bytes, the summary table, the dense twin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..formats import NMMatrix
from .ops import SPARSE_OPS

if TYPE_CHECKING:
    from .model import Model


@dataclass(frozen=True)
class LayerInfo:
    """One node of a loaded model that holds weights."""

    name: str
    op: str
    format: str  # csr | sell | bsr | nm | dense, or "-" for ops without a weight matrix
    shape: tuple[int, ...]
    sparsity: float  # fraction of zero weights in the weight matrix
    nbytes: int  # bytes of the stored arrays (weights, bias, statistics)
    dense_nbytes: int  # the same weights as dense float32


def _nonzeros(model: Model, n: Any, w: Any) -> int:
    """Nonzero weights, counted on the stored values (never densified: a tiny file can declare a
    huge, empty matrix). Stored positions are unique (the C++ constructors check), so this is
    the count of the dense matrix."""
    if isinstance(w, np.ndarray):
        return int(np.count_nonzero(w))
    if n.attrs["format"] in ("csr", "sell"):  # the file's CSR values (SELL's own storage pads)
        return int(np.count_nonzero(model._arrays[n.params["data"]]))
    data = w.data
    if isinstance(w, NMMatrix) and w.shape[0] % 8:  # lanes past the last row hold nothing
        return int(np.count_nonzero(data[:-1]) + np.count_nonzero(data[-1, ..., : w.shape[0] % 8]))
    return int(np.count_nonzero(data))  # BSR: the C++ storage zeroes the rows past the last one


def layer_infos(model: Model) -> list[LayerInfo]:
    """Per node with arrays: op, format, weight shape, sparsity and bytes."""
    out = []
    arrays = model._arrays
    for n in model._nodes:
        if not n.params or n.op == "constant":
            continue
        nbytes = sum(arrays[a].nbytes for a in n.params.values())
        if n.op in SPARSE_OPS:
            w = model.matrix(n.name)
            shape = tuple(w.shape)
            size = shape[0] * shape[1]
            sparsity = 1.0 - _nonzeros(model, n, w) / size if size else 0.0
            bias = n.params.get("bias")
            dense_nbytes = 4 * size + (arrays[bias].nbytes if bias else 0)
            out.append(LayerInfo(n.name, n.op, n.attrs["format"], shape, sparsity, nbytes, dense_nbytes))
        else:
            out.append(LayerInfo(n.name, n.op, "-", (), 0.0, nbytes, nbytes))
    return out


def summary_table(model: Model) -> str:
    """A printable table of the layers with weights, and the totals."""
    rows = [f"{'layer':<28} {'op':<11} {'format':<7} {'shape':<16} {'sparsity':>8} {'bytes':>11} {'dense':>11}"]
    total = dense_total = 0
    for li in layer_infos(model):
        shape = "x".join(map(str, li.shape)) if li.shape else "-"
        rows.append(
            f"{li.name[:28]:<28} {li.op:<11} {li.format:<7} {shape:<16} {li.sparsity:>8.1%} "
            f"{li.nbytes:>11,} {li.dense_nbytes:>11,}"
        )
        total += li.nbytes
        dense_total += li.dense_nbytes
    ratio = total / dense_total if dense_total else 1.0
    rows.append(f"{'total':<65} {total:>11,} {dense_total:>11,}  ({ratio:.2f}x dense)")
    ins = ", ".join(f"{s['name']}{tuple('batch' if d is None else d for d in s['shape'])}" for s in model._inputs)
    rows.append(f"inputs: {ins}; outputs: {', '.join(model._outputs)}; nodes: {len(model._nodes)}")
    return "\n".join(rows)


def dense_twin(model: Model, max_bytes: int) -> Model:
    """The same model with every sparse weight stored dense (for comparisons); MemoryError if
    those dense weights would take more than ``max_bytes``."""
    need = sum(4 * li.shape[0] * li.shape[1] for li in layer_infos(model) if li.op in SPARSE_OPS and li.format != "dense")
    if need > max_bytes:
        raise MemoryError(
            f"the dense twin of this model needs {need / 2**30:,.1f} GiB of weights (at most {max_bytes / 2**30:,.1f} "
            "GiB); pass a larger max_bytes to Model.densified() if the machine has the memory"
        )
    nodes, arrays = [], {}
    for n in model._nodes:
        raw = dict(n.raw)
        if n.op in SPARSE_OPS and n.attrs["format"] != "dense":
            w = model.matrix(n.name)
            attrs = {k: v for k, v in raw.get("attrs", {}).items() if k not in ("block", "nm")}
            attrs["format"] = "dense"
            raw["attrs"] = attrs
            params = {"weight": f"{n.name}.weight"}
            arrays[params["weight"]] = w.to_dense()
            if "bias" in n.params:
                params["bias"] = n.params["bias"]
                arrays[params["bias"]] = model._arrays[n.params["bias"]]
            raw["params"] = params
        else:
            for a in n.params.values():
                arrays[a] = model._arrays[a]
        nodes.append(raw)
    return type(model)({**model._graph, "nodes": nodes}, arrays, tokenizer=model.tokenizer_json)
