"""Elementwise nodes: activations (gelu from pysparse.ops.transformer; sigmoid, softmax here) and the binary ops."""

from __future__ import annotations

import math
import operator
from typing import Any, Callable

import numpy as np

from ...ops import transformer as _tf
from .base import Cost, Fn, _f32, _guard, _prod


def _gelu(x: np.ndarray, approximate: str) -> np.ndarray:
    return _tf.gelu(x, approximate)  # the transformer kernels' GELU (exact erf / tanh, torch's definitions)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # exp of -|x| only: no overflow warnings for large |x|.
    e = np.exp(-np.abs(x))
    return _f32(np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)))


def _softmax(x: np.ndarray, dim: int, log: bool) -> np.ndarray:
    z = x - np.max(x, axis=dim, keepdims=True)
    e = np.exp(z)
    s = np.sum(e, axis=dim, keepdims=True)
    return _f32(z - np.log(s)) if log else _f32(e / s)


def _hardswish(x: np.ndarray) -> np.ndarray:
    return x * np.clip(x + 3.0, 0.0, 6.0) / 6.0


# Size arithmetic (x.size(0) * 4, literals): exact Python numbers, bounded like a dimension.
_MAX_SCALAR = 1 << 62
_SCALAR = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv}
_ARRAY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide}


def _binary(op: str) -> Callable[[Any, Any], Any]:
    array_fn, scalar_fn = _ARRAY[op], _SCALAR[op]

    def run(a: Any, b: Any) -> Any:
        if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
            return _f32(array_fn(a, b))
        if op == "div" and b == 0:
            raise ValueError(f"size arithmetic divides {a} by zero")
        y = scalar_fn(a, b)
        if abs(y) > _MAX_SCALAR:
            raise ValueError(f"size arithmetic gives {y:.3g}, beyond any tensor dimension")
        return y

    return run


_BINARY = {op: _binary(op) for op in _ARRAY}


def _build_binary(op: str) -> Callable[[str, dict[str, Any], dict[str, np.ndarray]], Fn]:
    fn = _BINARY[op]

    def build(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
        def run(x: Any, y: Any) -> Any:
            if isinstance(x, np.ndarray) and isinstance(y, np.ndarray):
                try:
                    shape = np.broadcast_shapes(x.shape, y.shape)
                except ValueError:
                    raise ValueError(f"node {node!r}: shapes {x.shape} and {y.shape} do not broadcast") from None
                _guard(math.prod(shape), node)
            return fn(x, y)

        return run

    return build


def _identity(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    return lambda x: x


def _binary_cost(a: dict[str, Any], p: dict[str, np.ndarray], args: Any) -> Cost:
    shapes = [v.shape for v in args if isinstance(v, np.ndarray)]
    if not shapes:
        return Cost(0, 0, 1.0)  # size arithmetic
    try:
        n = _prod(np.broadcast_shapes(*shapes))
    except ValueError:
        return Cost(0)  # the op itself says the shapes do not broadcast
    return Cost(n, 0, float(n))
