"""Normalisation nodes: batch_norm (folded to scale and shift at load), layer_norm (optionally of x + residual)
and l2_normalize (rows to unit length, as torch.nn.functional.normalize)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..schema import _F32, _Param
from ...ops import transformer as _tf
from .base import Fn, _f32, _tensor


def _build_batch_norm(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    scale = 1.0 / np.sqrt(p["running_var"].astype(np.float64) + a["eps"])
    if "weight" in p:
        scale = scale * p["weight"]
    shift = -p["running_mean"] * scale
    if "bias" in p:
        shift = shift + p["bias"]
    scale32, shift32, c = _f32(scale), _f32(shift), a["num_features"]

    def run(x: Any) -> np.ndarray:
        x = _tensor(x, node)
        if x.ndim < 2 or x.shape[1] != c:
            raise ValueError(f"node {node!r}: batch_norm needs input (N, {c}, ...), got shape {x.shape}")
        shape = (1, c) + (1,) * (x.ndim - 2)
        return x * scale32.reshape(shape) + shift32.reshape(shape)

    run.affine = (np.asarray(scale, dtype=np.float64), np.asarray(shift, dtype=np.float64))  # type: ignore[attr-defined]  # for the load-time fold into a conv (runtime/fuse.py)
    return run


def _bn_params(a: dict[str, Any], where: str) -> dict[str, _Param]:
    c = (a["num_features"],)
    return {
        "running_mean": _Param(True, _F32, c),
        "running_var": _Param(True, _F32, c),
        "weight": _Param(False, _F32, c),
        "bias": _Param(False, _F32, c),
    }


def _build_layer_norm(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    """layer_norm(x) or, with a second input, layer_norm(x + residual) (the residual add fused)."""
    shape, eps = a["normalized_shape"], a["eps"]
    weight, bias = p.get("weight"), p.get("bias")

    def run(x: Any, residual: Any = None) -> np.ndarray:
        x = _tensor(x, node)
        if x.shape[x.ndim - len(shape) :] != shape:
            raise ValueError(f"node {node!r}: layer_norm over {shape} needs an input ending so, got {x.shape}")
        if residual is not None:
            residual = _tensor(residual, node)
            if residual.shape != x.shape:
                raise ValueError(f"node {node!r}: the residual has shape {residual.shape}, the input {x.shape}")
        if len(shape) == 1:  # over the last axis: the transformer kernel
            return _tf.layer_norm(x, weight, bias, eps, residual)
        axes = tuple(range(x.ndim - len(shape), x.ndim))
        x64 = x.astype(np.float64)
        if residual is not None:
            x64 = x64 + residual
        mean = x64.mean(axis=axes, keepdims=True)
        var = x64.var(axis=axes, keepdims=True)
        y = (x64 - mean) / np.sqrt(var + eps)
        if weight is not None:
            y = y * weight
        if bias is not None:
            y = y + bias
        return _f32(y)

    return run


def _ln_params(a: dict[str, Any], where: str) -> dict[str, _Param]:
    return {"weight": _Param(False, _F32, a["normalized_shape"]), "bias": _Param(False, _F32, a["normalized_shape"])}


def _build_l2_normalize(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    eps = a["eps"]

    def run(x: Any) -> np.ndarray:
        x = _tensor(x, node)
        if x.ndim == 0:
            raise ValueError(f"node {node!r}: l2_normalize needs at least one axis, got a scalar")
        norm = np.sqrt(np.square(x, dtype=np.float64).sum(axis=-1, keepdims=True))
        return _f32(x / np.maximum(norm, eps))

    return run
