"""Pooling and averaging nodes: max / avg pooling, adaptive average pooling, mean, masked mean over tokens."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..schema import _PAIR_S, _REQUIRED, Check, _bool, _ints
from .base import PER_CALL, Cost, Fn, _dim, _f32, _prod, _size, _tensor, _window


def _pool2d(x: np.ndarray, a: dict[str, Any], node: str, kind: str) -> np.ndarray:
    x = _tensor(x, node)
    if x.ndim not in (3, 4):
        raise ValueError(f"node {node!r}: pooling needs a 3-D or 4-D input, got shape {x.shape}")
    squeeze = x.ndim == 3
    x4 = x[None] if squeeze else x
    (kh, kw), (sh, sw), (ph, pw) = a["kernel_size"], a["stride"], a["padding"]
    dil = a.get("dilation", (1, 1))
    if 2 * ph > kh or 2 * pw > kw:
        raise ValueError(f"node {node!r}: padding must be at most half the kernel size")
    h, w = x4.shape[2:]
    ho, rh = _window(h, kh, sh, ph, dil[0], a["ceil_mode"], node)
    wo, rw = _window(w, kw, sw, pw, dil[1], a["ceil_mode"], node)
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x4, ((0, 0), (0, 0), (ph, rh), (pw, rw)), constant_values=fill)
    acc: np.ndarray | None = None
    for i in range(kh):
        for j in range(kw):  # one strided view of the padded input per kernel tap
            h0, w0 = i * dil[0], j * dil[1]
            view = xp[:, :, h0 : h0 + sh * (ho - 1) + 1 : sh, w0 : w0 + sw * (wo - 1) + 1 : sw]
            if acc is None:
                acc = view.copy()
            elif kind == "max":
                np.maximum(acc, view, out=acc)
            else:
                acc += view
    assert acc is not None
    if kind == "avg":
        include = a["count_include_pad"]

        def counts(size: int, k: int, s: int, p: int, out: int) -> np.ndarray:
            start = np.arange(out) * s - p
            end = np.minimum(start + k, size + p)
            if not include:
                start, end = np.maximum(start, 0), np.minimum(end, size)
            return (end - start).astype(np.float32)

        acc /= counts(h, kh, sh, ph, ho)[:, None] * counts(w, kw, sw, pw, wo)[None, :]
    return acc[0] if squeeze else acc


def _adaptive_matrix(size: int, out: int) -> np.ndarray:
    m = np.zeros((out, size), dtype=np.float32)
    for i in range(out):
        lo, hi = (i * size) // out, -(-((i + 1) * size) // out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def _build_adaptive(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    oh, ow = a["output_size"]

    def run(x: Any) -> np.ndarray:
        x = _tensor(x, node)
        if x.ndim not in (3, 4):
            raise ValueError(f"node {node!r}: adaptive_avg_pool2d needs a 3-D or 4-D input, got {x.shape}")
        h, w = x.shape[-2:]
        if (oh, ow) == (1, 1):
            return x.mean(axis=(-2, -1), keepdims=True, dtype=np.float64).astype(np.float32)
        return _f32(_adaptive_matrix(h, oh) @ x @ _adaptive_matrix(w, ow).T)

    return run


def _build_mean(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    def run(x: Any) -> np.ndarray:
        x = _tensor(x, node)
        axes = tuple(_dim(d, x.ndim, node) for d in a["dims"]) if a["dims"] else None
        return _f32(x.mean(axis=axes, keepdims=a["keepdim"], dtype=np.float64))

    return run


def _pool_attrs(kind: str) -> dict[str, tuple[Check, Any]]:
    attrs: dict[str, tuple[Check, Any]] = {
        "kernel_size": (_ints(1, 256, 2), _REQUIRED),
        "stride": (_PAIR_S, _REQUIRED),
        "padding": (_ints(0, 128, 2), (0, 0)),
        "ceil_mode": (_bool, False),
    }
    if kind == "max":
        attrs["dilation"] = (_ints(1, 256, 2), (1, 1))
    else:
        attrs["count_include_pad"] = (_bool, True)
    return attrs


def _build_pool(kind: str) -> Any:
    def build(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
        return lambda x: _pool2d(x, a, node, kind)

    return build


def _pool_cost(a: dict[str, Any], p: dict[str, np.ndarray], args: Any) -> Cost:
    """The padded copy of the input, the output, and one pass over the output per kernel tap."""
    x = args[0]
    if not isinstance(x, np.ndarray) or x.ndim not in (3, 4):
        return Cost(0)  # the op itself says what is wrong
    (kh, kw), (sh, sw), (ph, pw) = a["kernel_size"], a["stride"], a["padding"]
    dil = a.get("dilation", (1, 1))
    planes = _prod(x.shape[:-2])
    h, w = x.shape[-2:]
    try:
        ho, rh = _window(h, kh, sh, ph, dil[0], a["ceil_mode"], "")
        wo, rw = _window(w, kw, sw, pw, dil[1], a["ceil_mode"], "")
    except ValueError:
        return Cost(0)  # the op itself says the window does not fit
    out = planes * ho * wo
    padded = planes * (h + ph + rh) * (w + pw + rw)
    return Cost(out, padded, padded + out * kh * kw + PER_CALL * kh * kw)


def _adaptive_cost(a: dict[str, Any], p: dict[str, np.ndarray], args: Any) -> Cost:
    x = args[0]
    if not isinstance(x, np.ndarray) or x.ndim not in (3, 4):
        return Cost(0)
    (oh, ow), (h, w) = a["output_size"], x.shape[-2:]
    planes = _prod(x.shape[:-2])
    # (oh, h) @ x @ (w, ow): the middle product is planes * oh * w, computed in float32
    return Cost(planes * oh * ow, planes * oh * w + oh * h + w * ow, planes * oh * w * (h + ow) + PER_CALL * (oh + ow))


def _mean_cost(a: dict[str, Any], p: dict[str, np.ndarray], args: Any) -> Cost:
    x = args[0]
    if not isinstance(x, np.ndarray):
        return Cost(0)
    dims = {d % x.ndim for d in a["dims"] if -x.ndim <= d < x.ndim} if a["dims"] and x.ndim else set(range(x.ndim))
    out = _prod(s for i, s in enumerate(x.shape) if i not in dims)
    return Cost(out, 2 * out, 2.0 * x.size)  # accumulated in float64


def _build_masked_mean(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    """(B, S, C) token states and a (B, S) 0/1 mask -> (B, C): the mean over the unmasked tokens
    (sentence-transformers' mean pooling: a sample with no tokens gives zeros, not NaN)."""

    def run(x: Any, mask: Any) -> np.ndarray:
        x, mask = _tensor(x, node, 3), _tensor(mask, node, 2)
        if mask.shape != x.shape[:2]:
            raise ValueError(f"node {node!r}: the mask has shape {mask.shape}, the tokens {x.shape[:2]}: pass an "
                             "attention_mask of the shape of input_ids")
        if mask.dtype.kind not in "iu" or not np.isin(mask, (0, 1)).all():
            raise ValueError(f"node {node!r}: the mask must hold only 0 (padding) and 1 (token) integers")
        m = mask.astype(np.float32)
        total = np.einsum("bsc,bs->bc", x, m)
        return _f32(total / np.maximum(m.sum(axis=1, keepdims=True), np.float32(1e-9)))

    return run


def _masked_mean_cost(a: dict[str, Any], p: dict[str, np.ndarray], args: Any) -> Cost:
    x = args[0] if args else None
    if not isinstance(x, np.ndarray) or x.ndim != 3:
        return Cost(0)
    return Cost(x.shape[0] * x.shape[2], x.shape[0] * x.shape[1], 2.0 * x.size)
