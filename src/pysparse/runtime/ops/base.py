"""What every runtime op shares: the ``OpSpec`` record, its cost estimate, input checks and the growth guard.

The load-time dry run asks each op what it will cost *before* running it
(``OpSpec.cost``: from the attributes, the node's arrays and the actual
inputs) and refuses a graph whose live memory or total work goes beyond what
any real model needs (``model.py``). Work is counted in element operations of
numpy, about a nanosecond each on one core; a multiply-add in the sparse
kernels counts ``MAC`` of one, in BLAS ``DENSE_MAC``. Measured on the project's
Xeon (AVX2), one thread: numpy max 0.7 ns and relu into fresh memory 2.2 ns per
element, BSR spmm 0.1 ns and sgemm 0.035 ns per multiply-add; gelu (erf in
float64) about 40 passes, layer norm 30, softmax and sigmoid 15 (``pointwise``
weights in ``ops/__init__.py``). Every element of new output costs one more
(first touch of fresh memory). The estimates aim high, never far low: a bound
that trusts them stays a bound.
"""

from __future__ import annotations

import contextvars
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..schema import MAX_TENSOR_ELEMENTS, Check, _Param

Fn = Callable[..., Any]

MAC = 1 / 8  # work of one multiply-add in a sparse kernel, in numpy element operations
DENSE_MAC = 1 / 16  # ... and in BLAS
PER_CALL = 2000  # work of one numpy call from a Python loop (a pooling tap), about 2 us


@dataclass(frozen=True)
class Cost:
    """What running one op will take, estimated from its inputs' shapes before it runs."""

    out: int  # float32 elements of new memory the result holds (0 for a view)
    scratch: int = 0  # float32 elements of temporaries while the op runs
    work: float = 0.0  # element operations (see the module docstring)


Costing = Callable[[dict[str, Any], dict[str, np.ndarray], Sequence[Any]], Cost]


def _size(v: Any) -> int:
    return int(v.size) if isinstance(v, np.ndarray) else 0


def pointwise(passes: float = 1.0, scratch: float = 0.0) -> Costing:
    """An op whose result has its (first) input's shape: ``passes`` operations and ``scratch``
    float32-sized temporaries per element."""

    def cost(a: dict[str, Any], p: dict[str, np.ndarray], args: Sequence[Any]) -> Cost:
        n = _size(args[0]) if args else 0
        return Cost(n, int(scratch * n), passes * n)

    return cost


def view_cost(a: dict[str, Any], p: dict[str, np.ndarray], args: Sequence[Any]) -> Cost:
    """An op whose result is a view of its input, or a copy when the input is not contiguous."""
    x = args[0] if args else None
    n = 0 if not isinstance(x, np.ndarray) or x.flags.c_contiguous else int(x.size)
    return Cost(n, 0, 1.0 + n)


def free_cost(a: dict[str, Any], p: dict[str, np.ndarray], args: Sequence[Any]) -> Cost:
    return Cost(0, 0, 1.0)


@dataclass(frozen=True)
class OpSpec:
    """One runtime op: how many inputs, which attributes (check, default), which params, and
    what a run costs (for the load-time bounds; the default: one pass over the first input)."""

    inputs: tuple[int, int]
    attrs: dict[str, tuple[Check, Any]]
    build: Callable[[str, dict[str, Any], dict[str, np.ndarray]], Fn]
    params: Callable[[dict[str, Any], str], dict[str, _Param]] = lambda a, w: {}
    cost: Costing = pointwise()


def _f32(y: Any) -> np.ndarray:
    return np.asarray(y, dtype=np.float32)


def _tensor(v: Any, node: str, rank: int | None = None) -> np.ndarray:
    if not isinstance(v, np.ndarray):
        raise ValueError(f"node {node!r}: expected a tensor, got {type(v).__name__}")
    if rank is not None and v.ndim != rank:
        raise ValueError(f"node {node!r}: expected a {rank}-D input, got shape {v.shape}")
    return v


def _dim(d: int, ndim: int, node: str) -> int:
    if not -ndim <= d < ndim:
        raise ValueError(f"node {node!r}: dim {d} is out of range for a {ndim}-D tensor")
    return d % ndim


def _unary(f: Callable[..., np.ndarray], cost: Costing = pointwise(), **attrs: tuple[Check, Any]) -> OpSpec:
    def build(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
        return lambda x: _f32(f(_tensor(x, node), **a))

    return OpSpec((1, 1), dict(attrs), build, cost=cost)


def _window(size: int, k: int, s: int, p: int, d: int, ceil: bool, node: str) -> tuple[int, int]:
    """(output length, right padding) of one pooled / convolved axis, as torch counts them."""
    span = d * (k - 1) + 1
    room = size + 2 * p - span
    if room < 0:
        raise ValueError(f"node {node!r}: window {span} larger than the padded input {size + 2 * p}")
    out = (room + (s - 1 if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return out, max(0, (out - 1) * s + span - size - p)


def _prod(shape: Sequence[int]) -> int:
    return math.prod(int(d) for d in shape)


# The most elements a growing op (cat, broadcast) may make: MAX_TENSOR_ELEMENTS,
# or MAX_DRY_RUN_ELEMENTS while a load checks the graph at batch 1.
_GROW_LIMIT: contextvars.ContextVar[int] = contextvars.ContextVar("pysparse_grow_limit", default=MAX_TENSOR_ELEMENTS)


def _guard(elements: int, node: str) -> None:
    """Ops that can grow tensors refuse sizes no model needs, before allocating them."""
    limit = _GROW_LIMIT.get()
    if elements > limit:
        raise ValueError(f"node {node!r} would make a tensor of {elements} elements (at most {limit})")
