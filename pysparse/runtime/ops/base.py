"""What every runtime op shares: the ``OpSpec`` record, input checks and the growth guard."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..schema import MAX_TENSOR_ELEMENTS, Check, _Param

Fn = Callable[..., Any]


@dataclass(frozen=True)
class OpSpec:
    """One runtime op: how many inputs, which attributes (check, default), which params."""

    inputs: tuple[int, int]
    attrs: dict[str, tuple[Check, Any]]
    build: Callable[[str, dict[str, Any], dict[str, np.ndarray]], Fn]
    params: Callable[[dict[str, Any], str], dict[str, _Param]] = lambda a, w: {}


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


def _unary(f: Callable[..., np.ndarray], **attrs: tuple[Check, Any]) -> OpSpec:
    def build(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
        return lambda x: _f32(f(_tensor(x, node), **a))

    return OpSpec((1, 1), dict(attrs), build)


# The most elements a growing op (cat, broadcast) may make: MAX_TENSOR_ELEMENTS,
# or MAX_DRY_RUN_ELEMENTS while a load checks the graph at batch 1.
_GROW_LIMIT: contextvars.ContextVar[int] = contextvars.ContextVar("pysparse_grow_limit", default=MAX_TENSOR_ELEMENTS)


def _guard(elements: int, node: str) -> None:
    """Ops that can grow tensors refuse sizes no model needs, before allocating them."""
    limit = _GROW_LIMIT.get()
    if elements > limit:
        raise ValueError(f"node {node!r} would make a tensor of {elements} elements (at most {limit})")
