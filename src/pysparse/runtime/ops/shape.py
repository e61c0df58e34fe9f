"""Nodes that move or regroup values: reshape, flatten, permute, transpose, squeeze, unsqueeze, cat,
size and constant."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..schema import _is_int
from .base import Cost, Fn, _dim, _guard, _size, _tensor


def _build_reshape(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    def run(x: Any, *dims: Any) -> np.ndarray:
        x = _tensor(x, node)
        if not all(_is_int(d) or isinstance(d, np.integer) for d in dims):
            raise ValueError(f"node {node!r}: reshape dimensions must be ints, got {dims!r}")
        return x.reshape(tuple(int(d) for d in dims))

    return run


def _build_flatten(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    def run(x: Any) -> np.ndarray:
        x = _tensor(x, node)
        if x.ndim == 0:
            return x.reshape(1)
        s, e = _dim(a["start_dim"], x.ndim, node), _dim(a["end_dim"], x.ndim, node)
        if s > e:
            raise ValueError(f"node {node!r}: flatten start_dim {s} is after end_dim {e}")
        n = int(np.prod(x.shape[s : e + 1], dtype=np.int64))
        return x.reshape(x.shape[:s] + (n,) + x.shape[e + 1 :])

    return run


def _build_permute(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    def run(x: Any) -> np.ndarray:
        x = _tensor(x, node)
        dims = [_dim(d, x.ndim, node) for d in a["dims"]]
        if sorted(dims) != list(range(x.ndim)):
            raise ValueError(f"node {node!r}: permute dims {a['dims']} do not match a {x.ndim}-D input")
        return np.transpose(x, dims)

    return run


def _build_transpose(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    def run(x: Any) -> np.ndarray:
        x = _tensor(x, node)
        return np.swapaxes(x, _dim(a["dim0"], x.ndim, node), _dim(a["dim1"], x.ndim, node))

    return run


def _build_squeeze(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    def run(x: Any) -> np.ndarray:
        x = _tensor(x, node)
        if a["dim"] is None:
            return x.reshape(tuple(s for s in x.shape if s != 1))
        if x.ndim == 0:
            return x
        d = _dim(a["dim"], x.ndim, node)
        return np.squeeze(x, axis=d) if x.shape[d] == 1 else x

    return run


def _build_unsqueeze(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    def run(x: Any) -> np.ndarray:
        x = _tensor(x, node)
        return np.expand_dims(x, _dim(a["dim"], x.ndim + 1, node))

    return run


def _build_cat(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    def run(*xs: Any) -> np.ndarray:
        ts = [_tensor(x, node) for x in xs]
        _guard(sum(t.size for t in ts), node)
        return np.concatenate(ts, axis=_dim(a["dim"], ts[0].ndim, node))

    return run


def _build_size(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    def run(x: Any) -> int:
        x = _tensor(x, node)
        return int(x.shape[_dim(a["dim"], x.ndim, node)])

    return run


def _build_constant(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    value = p["value"]
    value.setflags(write=False)
    return lambda: value


def _cat_cost(a: dict[str, Any], p: dict[str, np.ndarray], args: Any) -> Cost:
    n = sum(_size(v) for v in args)
    return Cost(n, 0, float(n))
