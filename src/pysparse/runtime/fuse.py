"""Load-time fusion: node patterns of the file's graph run as one fused node (the file format
does not change; ``Model`` fuses when it builds its run plan, after the dry run of the file's
graph).

``FUSIONS`` maps (producer op, consumer op) to a builder. A pair fuses only where the producer's
output is read by that one consumer, once, and is not a graph output; the fused node keeps the
consumer's (the last node's) name, so errors and profiles name it, and its op reads
``"producer+consumer"``. A builder returns the fused function, or None when the pair cannot fuse
here (e.g. a dense float32 weight); every fused function computes exactly what the two nodes
compute (tests/runtime/test_fuse.py runs both graphs).

The linear entries put the activation and the residual add into the sparse product's epilogue
(``_core.linear`` / ``_core.qlinear(..., activation=, residual=)`` for fp32 / int8 weights,
csrc/epilogue.h): one pass over the output while it is in cache instead of two more nodes over
memory.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .. import _core
from ..ops import LinearPlan
from .graph import _Node
from .ops.base import Fn, _tensor
from .ops.matmul import conv_with_activation, conv_with_batch_norm, conv_with_residual


# builder(producer node, consumer node, producer fn, consumer fn) -> fused fn(*fused inputs) or None.
# The fused node's inputs: the producer's, then the consumer's other inputs in their order.
Builder = Callable[[Any, Any, Fn, Fn], "Fn | None"]


def _sparse_linear(fn: Fn) -> Any:
    """The LinearPlan behind a runtime linear node's fn (fp32 sparse or int8), or None (dense)."""
    return getattr(fn, "plan", None)


def _linear_run(name: str, plan: Any, activation: str) -> Callable[[Any, Any], np.ndarray]:
    """The linear node's computation with the epilogue: y = act(x W^T + b) (+ residual)."""
    k = plan.weight.shape[1]
    m, bias, threads = plan._m, plan._bias, plan._threads
    quantized = plan._quantized  # int8: the same epilogue after the int8 kernel (qlinear.h)

    def run(x: Any, residual: Any = None) -> np.ndarray:
        x = _tensor(x, name)
        if x.ndim == 0 or x.shape[-1] != k:
            raise ValueError(f"node {name!r}: input last dimension must be {k}, got shape {x.shape}")
        x2 = np.ascontiguousarray(x.reshape(-1, k))
        if quantized:
            y = _core.qlinear(x2, m, bias, False, threads, activation=activation, residual=residual)
        else:
            y = _core.linear(x2, m, bias, threads, activation=activation, residual=residual)
        return y.reshape(*x.shape[:-1], -1)

    return run


def _linear_act(activation: Callable[[Any], str | None]) -> Builder:
    """linear followed by an activation node; activation(consumer node) names the epilogue's, or None."""

    def build(prod: Any, cons: Any, prod_fn: Fn, cons_fn: Fn) -> Fn | None:
        plan, act = _sparse_linear(prod_fn), activation(cons)
        if plan is None or act is None:
            return None
        return _linear_run(cons.name, plan, act)

    return build


def _linear_add(prod: Any, cons: Any, prod_fn: Fn, cons_fn: Fn) -> Fn | None:
    """linear followed by add(linear, r) or add(r, linear), r a tensor: the residual in the epilogue
    when r is float32 of exactly the output's shape; otherwise the two nodes as they are."""
    plan = _sparse_linear(prod_fn)
    if plan is None:
        return None
    run = _linear_run(cons.name, plan, "none")
    out = plan.weight.shape[0]

    def fused(x: Any, r: Any) -> Any:
        if (isinstance(x, np.ndarray) and isinstance(r, np.ndarray) and r.dtype == np.float32 and x.ndim > 0
                and r.shape == (*x.shape[:-1], out)):
            return run(x, r.reshape(-1, out))
        return cons_fn(prod_fn(x), r)  # broadcasting, other dtypes: the add node's own rules

    return fused


FUSIONS: dict[tuple[str, str], Builder] = {
    # issue 13 (tf): Linear + activation / residual add in the fp32 epilogue.
    ("linear", "gelu"): _linear_act(lambda n: "gelu_tanh" if n.attrs.get("approximate") == "tanh" else "gelu_erf"),
    ("linear", "relu"): _linear_act(lambda n: "relu"),
    ("linear", "relu6"): _linear_act(lambda n: "relu6"),
    ("linear", "add"): _linear_add,
}

# issue 15 (conv): conv2d + a following ReLU-family activation, in the depthwise kernel's epilogue
# or in place on the conv's fresh output (ops/matmul.py's conv_with_activation decides, or says no).
FUSIONS.update({
    ("conv2d", act): (lambda prod, cons, prod_fn, cons_fn: conv_with_activation(cons.name, prod_fn, cons.op, cons.attrs))
    for act in ("relu", "relu6", "hardtanh", "clamp")
})


def _conv_bn(prod: Any, cons: Any, prod_fn: Fn, cons_fn: Fn) -> Fn | None:
    affine = getattr(cons_fn, "affine", None)
    return None if affine is None else conv_with_batch_norm(cons.name, prod_fn, *affine)


# issue 15 (conv): a batch norm after a conv2d folds into its weight and bias (to float32 rounding; the
# fused node then acts as a conv2d for the next pass, see _ACTS_AS), and a residual add after a conv2d
# goes into the kernels' epilogue, so conv -> bn -> relu6 and conv -> bn -> add each run as one node.
FUSIONS.update({
    ("conv2d", "batch_norm"): _conv_bn,
    ("conv2d", "add"): lambda prod, cons, prod_fn, cons_fn: conv_with_residual(cons.name, prod_fn, cons_fn),
})

# Fused ops that compute what their first op does with other arrays, so later passes fuse them like it.
_ACTS_AS = {"conv2d+batch_norm": "conv2d"}


# issue 13 (tfpar): the query, key and value Linears of one attention as one sparse product.
# Stacked only for formats whose rows keep their stored values and summation order when the three
# weights are packed as one (CSR, BSR (R, C) with R dividing each part's rows), so the fused node
# gives the same bits as the four nodes. One pass over x instead of three (one transpose of x,
# one pool job, one Python call instead of three); attention reads q, k, v as views of the output.
# The int8 formats stack their int8 rows and per-row scales as stored (no requantization): x is
# quantized per row, so once for the three parts instead of three times, to the same bits.
QKV_FORMATS = ("csr", "bsr", "bsr_int8", "dense_int8")
FUSE_QKV = True  # tests load a model with it off to compare
QKV_MAX_DENSE = 1 << 24  # elements of the dense stack (64 MiB; BERT-large's Q/K/V: 3.1M)


def _stacked_qkv(plans: list[Any]) -> Any:
    """One LinearPlan of the three plans' weights stacked by rows (and biases), or None."""
    ws = [p.weight for p in plans]
    cls = type(ws[0])
    tag = ws[0].file_attrs()
    if any(type(w) is not cls or w.file_attrs() != tag for w in ws) or cls.tag not in QKV_FORMATS:
        return None
    if len({w.shape[1] for w in ws}) != 1 or any(w.shape[0] % w.block[0] for w in ws):
        return None
    if sum(w.shape[0] for w in ws) * ws[0].shape[1] > QKV_MAX_DENSE:
        return None  # stacked through a dense copy: not for a file that declares a huge matrix
    biases = [p._bias for p in plans]
    if any(b is None for b in biases) and any(b is not None for b in biases):
        return None  # adding a zero bias is not a no-op on -0.0
    block = {"block": tuple(tag["block"])} if "block" in tag else {}
    if getattr(cls, "quantized", False):
        stacked = cls.from_int8(np.vstack([w.to_int8() for w in ws]), np.concatenate([w.scales for w in ws]), **block)
    else:
        stacked = cls.pack(np.vstack([w.to_dense() for w in ws]), **block)
    if np.asarray(stacked.data).size != sum(np.asarray(w.data).size for w in ws):
        return None  # a stored zero block would be dropped: not the same products
    plan = LinearPlan(stacked, None if biases[0] is None else np.concatenate(biases))
    plan._threads = plans[0]._threads
    return plan


def _fuse_qkv(nodes: list[Any], fns: list[Fn], outputs: list[str], readers: dict[str, list[int]]
              ) -> tuple[list[Any], list[Fn]]:
    """Every attention node whose q, k, v are three fp32 sparse linear nodes of one input, read by
    it alone, becomes one "linear+attention" node (the attention's name) over the stacked weight."""
    index = {n.name: i for i, n in enumerate(nodes)}
    dropped: set[int] = set()
    replaced: dict[int, tuple[Any, Fn]] = {}
    for j, att in enumerate(nodes):
        if att.op != "attention" or len(att.inputs) < 3 or not all(isinstance(r, str) for r in att.inputs):
            continue
        qkv = att.inputs[:3]
        if len(set(qkv)) != 3 or any(r not in index or r in outputs or readers.get(r) != [j] for r in qkv):
            continue
        ids = [index[r] for r in qkv]
        prods = [nodes[i] for i in ids]
        plans = [_sparse_linear(fns[i]) for i in ids]
        if any(n.op != "linear" for n in prods) or any(p is None for p in plans):
            continue
        if len({n.inputs for n in prods}) != 1 or len(prods[0].inputs) != 1:
            continue
        plan = _stacked_qkv(plans)
        if plan is None:
            continue
        fn = _qkv_attention_run(att.name, plan, [p.weight.shape[0] for p in plans], fns[j])
        node = _Node(att.name, "linear+attention", (*prods[0].inputs, *att.inputs[3:]), att.attrs, prods[0].params,
                     {"fused_from": [n.raw for n in prods] + [att.raw]})
        replaced[j] = (node, fn)
        dropped.update(ids)
    out_nodes, out_fns = [], []
    for j, (n, f) in enumerate(zip(nodes, fns)):
        if j in dropped:
            continue
        n, f = replaced.get(j, (n, f))
        out_nodes.append(n)
        out_fns.append(f)
    return out_nodes, out_fns


def _qkv_attention_run(name: str, plan: Any, rows: list[int], attention_fn: Fn) -> Fn:
    """x -> q, k, v as column views of one stacked product -> the attention node's own function."""
    linear = _linear_run(name, plan, "none")
    a, b = rows[0], rows[0] + rows[1]

    def run(x: Any, *mask: Any) -> np.ndarray:
        y = linear(x)
        return attention_fn(y[..., :a], y[..., a:b], y[..., b:], *mask)

    return run


def _readers(nodes: list[Any]) -> dict[str, list[int]]:
    readers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for r in n.inputs:
            if isinstance(r, str):
                readers.setdefault(r, []).append(i)
    return readers


def fuse(nodes: list[Any], fns: list[Fn], outputs: list[str]) -> tuple[list[Any], list[Fn]]:
    """The run plan: nodes and fns with every fusable (producer, consumer) pair replaced by one
    node at the consumer's place (op "producer+consumer", the consumer's name), pass after pass
    until nothing more fuses (conv2d+batch_norm, then +relu6). A producer is fused into at most
    one consumer per pass. First, each attention's Q/K/V Linears stack into one product
    (``_fuse_qkv``), if FUSE_QKV."""
    if FUSE_QKV:
        nodes, fns = _fuse_qkv(nodes, fns, outputs, _readers(nodes))
    while True:
        fused_nodes, fused_fns = _fuse_pass(nodes, fns, outputs)
        if len(fused_nodes) == len(nodes):
            return fused_nodes, fused_fns
        nodes, fns = fused_nodes, fused_fns


def _fuse_pass(nodes: list[Any], fns: list[Fn], outputs: list[str]) -> tuple[list[Any], list[Fn]]:
    readers = _readers(nodes)
    index = {n.name: i for i, n in enumerate(nodes)}
    fused_into: dict[int, tuple[_Node, Fn]] = {}  # consumer index -> fused node
    dropped: set[int] = set()
    for j, cons in enumerate(nodes):
        for r in cons.inputs:
            if not isinstance(r, str) or r not in index:
                continue
            i = index[r]
            prod = nodes[i]
            build = FUSIONS.get((_ACTS_AS.get(prod.op, prod.op), cons.op))
            if build is None or i in dropped or i in fused_into or j in fused_into or r in outputs:
                continue
            if readers.get(r) != [j]:  # another node (or this one twice) reads the intermediate
                continue
            others = [v for v in cons.inputs if v != r]
            if any(not isinstance(v, str) for v in others):  # literals: leave the pair alone
                continue
            fn = build(prod, cons, fns[i], fns[j])
            if fn is None:
                continue
            # Its raw entry holds the file's two nodes it came from.
            node = _Node(cons.name, f"{prod.op}+{cons.op}", (*prod.inputs, *others), cons.attrs, prod.params,
                         {"fused_from": [prod.raw, cons.raw]})
            fused_into[j] = (node, fn)
            dropped.add(i)
            break
    out_nodes: list[Any] = []
    out_fns: list[Fn] = []
    for j, (n, f) in enumerate(zip(nodes, fns)):
        if j in dropped:
            continue
        if j in fused_into:
            n, f = fused_into[j]
        out_nodes.append(n)
        out_fns.append(f)
    return out_nodes, out_fns
