"""Torch-free model execution: the op set, graph validation and the loaded ``Model``.

A model is a small graph: named inputs, a list of nodes in execution order and
named outputs. Each node has an ``op`` from the fixed set in ``OPS``, positional
``inputs`` (names of earlier nodes or graph inputs, or number literals), keyword
``attrs`` checked by type and range, and ``params``: role -> name of an array in
the file (packed sparse weights, biases, norm statistics, constants).

Everything here is numpy plus ``pysparse._core``; torch is never imported.
``Model(graph, arrays)`` validates the whole graph (op names, attributes, array
dtypes and shapes, references) and builds the sparse matrices, whose index
arrays the C++ constructors validate, before anything runs. Whatever is wrong
raises ``ModelFileError`` (a ``ValueError``) naming the node.
"""

from __future__ import annotations

import contextvars
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from . import ops as _ops
from .formats import BLOCK_ROWS, NM_GROUPS, SparseMatrixBase, format_class
from .formats import csr as _csr_codec

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "OPS", "LayerInfo", "Model", "ModelFileError", "csr_pack", "csr_unpack"]

FORMAT_NAME = "pysparse-model"
FORMAT_VERSION = 1

MAX_NODES = 100_000
MAX_NAME = 256
MAX_RANK = 8
MAX_INPUTS = 64
MAX_DIM = 2**31 - 1
MAX_DRY_RUN_ELEMENTS = 1 << 27  # per tensor, at batch 1
MAX_TENSOR_ELEMENTS = 1 << 31  # per tensor a growing op (cat, broadcast) may make
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")


class ModelFileError(ValueError):
    """A model file (or graph) that is truncated, corrupted, hostile or from another version."""


# ---------------------------------------------------------------------------
# Attribute checks: each takes (value, where) and returns the value or raises.

Check = Callable[[Any, str], Any]
_REQUIRED = object()


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(lo: int, hi: int) -> Check:
    def check(v: Any, where: str) -> int:
        if not _is_int(v) or not lo <= v <= hi:
            raise ModelFileError(f"{where} must be an int in [{lo}, {hi}], got {v!r}")
        return v

    return check


def _ints(lo: int, hi: int, n: int | None = None, max_len: int = MAX_RANK) -> Check:
    def check(v: Any, where: str) -> tuple[int, ...]:
        if not isinstance(v, list) or (n is not None and len(v) != n) or len(v) > max_len:
            want = f"{n}" if n is not None else f"at most {max_len}"
            raise ModelFileError(f"{where} must be a list of {want} ints, got {v!r}")
        return tuple(_int(lo, hi)(e, where) for e in v)

    return check


def _float(lo: float = -math.inf, hi: float = math.inf) -> Check:
    def check(v: Any, where: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
            raise ModelFileError(f"{where} must be a finite number in [{lo}, {hi}], got {v!r}")
        return float(v)

    return check


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise ModelFileError(f"{where} must be true or false, got {v!r}")
    return v


def _choice(*values: str) -> Check:
    def check(v: Any, where: str) -> str:
        if v not in values:
            raise ModelFileError(f"{where} must be one of {list(values)}, got {v!r}")
        return v

    return check


def _optional(inner: Check) -> Check:
    def check(v: Any, where: str) -> Any:
        return None if v is None else inner(v, where)

    return check


def _block(v: Any, where: str) -> tuple[int, int]:
    r, c = _ints(1, 64, 2)(v, where)
    if r not in BLOCK_ROWS:
        raise ModelFileError(f"{where}: block rows must be one of {BLOCK_ROWS}, got {r}")
    return r, c


def _nm(v: Any, where: str) -> tuple[int, int]:
    n, m = _ints(1, 8, 2)(v, where)
    if m not in NM_GROUPS or n > m:
        raise ModelFileError(f"{where}: N:M needs M in {NM_GROUPS} and 1 <= N <= M, got {n}:{m}")
    return n, m


_DIM = _int(-MAX_RANK, MAX_RANK - 1)
_FEATURES = _int(1, MAX_DIM)
_EPS = _float(0.0, 1.0)
_PAIR_K = _ints(1, 1024, 2)
_PAIR_S = _ints(1, 1024, 2)
_PAIR_P = _ints(0, 1024, 2)
_FORMAT = _choice("dense", "csr", "sell", "bsr", "nm")
_MATRIX_ATTRS: dict[str, tuple[Check, Any]] = {
    "format": (_FORMAT, _REQUIRED),
    "block": (_optional(_block), None),
    "nm": (_optional(_nm), None),
}

# ---------------------------------------------------------------------------
# Params (arrays): role -> what its array must be.

_F32 = ("float32",)
_INDPTR = ("int32", "int64")
_INDEX = ("uint16", "int32", "uint32", "int64")


@dataclass(frozen=True)
class _Param:
    required: bool
    dtypes: tuple[str, ...]
    shape: tuple[int | None, ...] | None  # None: any shape (rank <= MAX_RANK); None entries: any length


def _matrix_params(a: dict[str, Any], rows: int, cols: int, where: str) -> dict[str, _Param]:
    fmt = a["format"]
    if fmt == "dense":
        return {"weight": _Param(True, _F32, (rows, cols))}
    try:  # formats.ArraySpec has _Param's fields
        return dict(format_class(fmt).file_specs(a, rows, cols))  # type: ignore[arg-type]
    except ValueError as e:
        raise ModelFileError(f"{where}: {e}") from None


# CSR (and SELL) in the file: the bucket codec of pysparse.formats.csr.
CSR_BUCKET = _csr_codec.CSR_BUCKET


def csr_pack(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, rows: int, cols: int) -> dict[str, np.ndarray]:
    """CSR arrays -> the file's arrays (bucket_nnz, col_lo, data), rows sorted by column."""
    return _csr_codec.bucket_pack(indptr, indices, data, rows, cols)


def csr_unpack(bucket_nnz: np.ndarray, col_lo: np.ndarray, nnz: int) -> tuple[np.ndarray, np.ndarray]:
    """The file's (bucket_nnz, col_lo) -> CSR (indptr, indices); the C++ constructor checks the rest."""
    try:
        return _csr_codec.bucket_unpack(bucket_nnz, col_lo, nnz)
    except ValueError as e:
        raise ModelFileError(str(e)) from None


def _build_matrix(a: dict[str, Any], p: dict[str, np.ndarray], rows: int, cols: int) -> Any:
    """The weight as a pysparse matrix (validated in C++) or a dense float32 array."""
    if a["format"] == "dense":
        return p["weight"]
    return format_class(a["format"]).from_file_arrays(a, p, rows, cols)


# ---------------------------------------------------------------------------
# Numerics that are not hot (numpy).


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to ~1.5e-7 absolute (Abramowitz & Stegun 7.1.26), computed in float64."""
    x = x.astype(np.float64)
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return s * (1.0 - poly * np.exp(-a * a))


def _f32(y: Any) -> np.ndarray:
    return np.asarray(y, dtype=np.float32)


def _gelu(x: np.ndarray, approximate: str) -> np.ndarray:
    if approximate == "tanh":
        return _f32(0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x.astype(np.float64) ** 3))))
    return _f32(0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # exp of -|x| only: no overflow warnings for large |x|.
    e = np.exp(-np.abs(x))
    return _f32(np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)))


def _softmax(x: np.ndarray, dim: int, log: bool) -> np.ndarray:
    z = x - np.max(x, axis=dim, keepdims=True)
    e = np.exp(z)
    s = np.sum(e, axis=dim, keepdims=True)
    return _f32(z - np.log(s)) if log else _f32(e / s)


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


def _taps(xp: np.ndarray, kh: int, kw: int, s: tuple[int, int], d: tuple[int, int], ho: int, wo: int):
    """Yield (i, j, strided view) for every kernel tap of a padded NCHW tensor."""
    for i in range(kh):
        for j in range(kw):
            h0, w0 = i * d[0], j * d[1]
            yield i, j, xp[:, :, h0 : h0 + s[0] * (ho - 1) + 1 : s[0], w0 : w0 + s[1] * (wo - 1) + 1 : s[1]]


def _conv2d_numpy(x: np.ndarray, w: Any, bias: np.ndarray | None, a: dict[str, Any], node: str) -> np.ndarray:
    """im2col + one matrix product (per group); the stand-in until pysparse.ops.conv2d exists."""
    n, c, h, wd = x.shape
    (kh, kw), s, p, d, g = a["kernel_size"], a["stride"], a["padding"], a["dilation"], a["groups"]
    ho, _ = _window(h, kh, s[0], p[0], d[0], False, node)
    wo, _ = _window(wd, kw, s[1], p[1], d[1], False, node)
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1]))) if p[0] or p[1] else x
    cols = np.empty((n, c, kh, kw, ho, wo), dtype=np.float32)
    for i, j, view in _taps(xp, kh, kw, s, d, ho, wo):
        cols[:, :, i, j] = view
    cout = a["out_channels"]
    if isinstance(w, SparseMatrixBase) and g == 1:
        k = c * kh * kw
        xk = np.ascontiguousarray(cols.reshape(n, k, ho * wo).transpose(1, 0, 2)).reshape(k, n * ho * wo)
        y = _ops.spmm(w, xk, bias=bias).reshape(cout, n, ho, wo).transpose(1, 0, 2, 3)
        return np.ascontiguousarray(y)
    dense = w.to_dense() if isinstance(w, SparseMatrixBase) else w
    wg = dense.reshape(g, cout // g, -1)
    y = np.matmul(wg[None], cols.reshape(n, g, (c // g) * kh * kw, ho * wo)).reshape(n, cout, ho, wo)
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y


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
    for _, _, view in _taps(xp, kh, kw, (sh, sw), dil, ho, wo):
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


def _binary(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def run(a: Any, b: Any) -> Any:
        y = fn(a, b)
        if isinstance(y, np.ndarray):
            return _f32(y)
        return int(y) if isinstance(a, int) and isinstance(b, int) else float(y)  # size arithmetic

    return run


_BINARY = {"add": _binary(np.add), "sub": _binary(np.subtract), "mul": _binary(np.multiply)}


def _div(a: Any, b: Any) -> Any:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return _f32(np.true_divide(a, b))
    return a / b


_BINARY["div"] = _div


# ---------------------------------------------------------------------------
# The op set.

Fn = Callable[..., Any]


@dataclass(frozen=True)
class OpSpec:
    """One runtime op: how many inputs, which attributes (check, default), which params."""

    inputs: tuple[int, int]
    attrs: dict[str, tuple[Check, Any]]
    build: Callable[[str, dict[str, Any], dict[str, np.ndarray]], Fn]
    params: Callable[[dict[str, Any], str], dict[str, _Param]] = lambda a, w: {}


def _unary(f: Callable[..., np.ndarray], **attrs: tuple[Check, Any]) -> OpSpec:
    def build(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
        return lambda x: _f32(f(_tensor(x, node), **a))

    return OpSpec((1, 1), dict(attrs), build)


def _build_linear(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    w = _build_matrix(a, p, a["out_features"], a["in_features"])
    bias = p.get("bias")
    k = a["in_features"]
    if isinstance(w, SparseMatrixBase):
        plan = _ops.LinearPlan(w, bias)

        def run(x: Any) -> np.ndarray:
            x = _tensor(x, node)
            if x.ndim == 0 or x.shape[-1] != k:
                raise ValueError(f"node {node!r}: input last dimension must be {k}, got shape {x.shape}")
            y = plan(np.ascontiguousarray(x.reshape(-1, k)))
            return y.reshape(*x.shape[:-1], -1)

        return run
    wt = np.ascontiguousarray(w.T)

    def run_dense(x: Any) -> np.ndarray:
        x = _tensor(x, node)
        if x.ndim == 0 or x.shape[-1] != k:
            raise ValueError(f"node {node!r}: input last dimension must be {k}, got shape {x.shape}")
        y = x @ wt
        return y + bias if bias is not None else y

    return run_dense


def _linear_params(a: dict[str, Any], where: str) -> dict[str, _Param]:
    ps = _matrix_params(a, a["out_features"], a["in_features"], where)
    ps["bias"] = _Param(False, _F32, (a["out_features"],))
    return ps


def _conv_cols(a: dict[str, Any], where: str) -> int:
    cin, cout, g = a["in_channels"], a["out_channels"], a["groups"]
    if cin % g or cout % g:
        raise ModelFileError(f"{where}: in_channels {cin} and out_channels {cout} must divide by groups {g}")
    kh, kw = a["kernel_size"]
    return (cin // g) * kh * kw


def _conv_params(a: dict[str, Any], where: str) -> dict[str, _Param]:
    ps = _matrix_params(a, a["out_channels"], _conv_cols(a, where), where)
    ps["bias"] = _Param(False, _F32, (a["out_channels"],))
    return ps


def _build_conv(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    w = _build_matrix(a, p, a["out_channels"], _conv_cols(a, node))
    bias = p.get("bias")
    cin = a["in_channels"]
    kwargs = {k: a[k] for k in ("kernel_size", "stride", "padding", "dilation", "groups")}
    plan = _ops.Conv2dPlan(w, bias, **kwargs)

    def run(x: Any) -> np.ndarray:
        x = _tensor(x, node)
        if x.ndim != 4 or x.shape[1] != cin:
            raise ValueError(f"node {node!r}: conv2d needs input (N, {cin}, H, W), got shape {x.shape}")
        return plan(x)

    return run


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
    shape, eps = a["normalized_shape"], a["eps"]
    weight, bias = p.get("weight"), p.get("bias")

    def run(x: Any) -> np.ndarray:
        x = _tensor(x, node)
        if x.shape[x.ndim - len(shape) :] != shape:
            raise ValueError(f"node {node!r}: layer_norm over {shape} needs an input ending so, got {x.shape}")
        axes = tuple(range(x.ndim - len(shape), x.ndim))
        x64 = x.astype(np.float64)
        mean = x64.mean(axis=axes, keepdims=True)
        var = x64.var(axis=axes, keepdims=True)
        y = (x64 - mean) / np.sqrt(var + eps)
        if weight is not None:
            y = y * weight
        if bias is not None:
            y = y + bias
        return _f32(y)

    return run


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


# The most elements a growing op (cat, broadcast) may make: MAX_TENSOR_ELEMENTS,
# or MAX_DRY_RUN_ELEMENTS while a load checks the graph at batch 1.
_GROW_LIMIT: contextvars.ContextVar[int] = contextvars.ContextVar("pysparse_grow_limit", default=MAX_TENSOR_ELEMENTS)


def _guard(elements: int, node: str) -> None:
    """Ops that can grow tensors refuse sizes no model needs, before allocating them."""
    limit = _GROW_LIMIT.get()
    if elements > limit:
        raise ValueError(f"node {node!r} would make a tensor of {elements} elements (at most {limit})")


def _build_cat(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    def run(*xs: Any) -> np.ndarray:
        ts = [_tensor(x, node) for x in xs]
        _guard(sum(t.size for t in ts), node)
        return np.concatenate(ts, axis=_dim(a["dim"], ts[0].ndim, node))

    return run


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


def _build_size(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    def run(x: Any) -> int:
        x = _tensor(x, node)
        return int(x.shape[_dim(a["dim"], x.ndim, node)])

    return run


def _build_constant(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    value = p["value"]
    value.setflags(write=False)
    return lambda: value


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


def _hardswish(x: np.ndarray) -> np.ndarray:
    return x * np.clip(x + 3.0, 0.0, 6.0) / 6.0


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


_NUM = _float()

OPS: dict[str, OpSpec] = {
    "linear": OpSpec(
        (1, 1),
        {"in_features": (_FEATURES, _REQUIRED), "out_features": (_FEATURES, _REQUIRED), **_MATRIX_ATTRS},
        _build_linear,
        _linear_params,
    ),
    "conv2d": OpSpec(
        (1, 1),
        {
            "in_channels": (_FEATURES, _REQUIRED),
            "out_channels": (_FEATURES, _REQUIRED),
            "kernel_size": (_PAIR_K, _REQUIRED),
            "stride": (_PAIR_S, (1, 1)),
            "padding": (_PAIR_P, (0, 0)),
            "dilation": (_PAIR_S, (1, 1)),
            "groups": (_FEATURES, 1),
            **_MATRIX_ATTRS,
        },
        _build_conv,
        _conv_params,
    ),
    "relu": _unary(lambda x: np.maximum(x, 0.0)),
    "relu6": _unary(lambda x: np.clip(x, 0.0, 6.0)),
    "hardtanh": _unary(lambda x, min_val, max_val: np.clip(x, min_val, max_val),
                       min_val=(_NUM, -1.0), max_val=(_NUM, 1.0)),
    "clamp": _unary(lambda x, min, max: np.clip(x, min, max),
                    min=(_optional(_NUM), None), max=(_optional(_NUM), None)),
    "leaky_relu": _unary(lambda x, negative_slope: np.where(x >= 0, x, x * negative_slope),
                         negative_slope=(_NUM, 0.01)),
    "gelu": _unary(_gelu, approximate=(_choice("none", "tanh"), "none")),
    "silu": _unary(lambda x: x * _sigmoid(x)),
    "sigmoid": _unary(_sigmoid),
    "hardsigmoid": _unary(lambda x: np.clip(x / 6.0 + 0.5, 0.0, 1.0)),
    "hardswish": _unary(_hardswish),
    "tanh": _unary(np.tanh),
    "neg": _unary(np.negative),
    "softmax": _unary(lambda x, dim: _softmax(x, _dim(dim, x.ndim, "softmax"), False), dim=(_DIM, _REQUIRED)),
    "log_softmax": _unary(lambda x, dim: _softmax(x, _dim(dim, x.ndim, "log_softmax"), True),
                          dim=(_DIM, _REQUIRED)),
    "batch_norm": OpSpec((1, 1), {"num_features": (_FEATURES, _REQUIRED), "eps": (_EPS, 1e-5)},
                         _build_batch_norm, _bn_params),
    "layer_norm": OpSpec(
        (1, 1),
        {"normalized_shape": (_ints(1, MAX_DIM, max_len=MAX_RANK), _REQUIRED), "eps": (_EPS, 1e-5)},
        _build_layer_norm,
        lambda a, w: {"weight": _Param(False, _F32, a["normalized_shape"]),
                      "bias": _Param(False, _F32, a["normalized_shape"])},
    ),
    "add": OpSpec((2, 2), {}, _build_binary("add")),
    "sub": OpSpec((2, 2), {}, _build_binary("sub")),
    "mul": OpSpec((2, 2), {}, _build_binary("mul")),
    "div": OpSpec((2, 2), {}, _build_binary("div")),
    "flatten": OpSpec((1, 1), {"start_dim": (_DIM, 0), "end_dim": (_DIM, -1)}, _build_flatten),
    "reshape": OpSpec((2, 1 + MAX_RANK), {}, _build_reshape),
    "permute": OpSpec((1, 1), {"dims": (_ints(-MAX_RANK, MAX_RANK - 1), _REQUIRED)}, _build_permute),
    "transpose": OpSpec((1, 1), {"dim0": (_DIM, _REQUIRED), "dim1": (_DIM, _REQUIRED)}, _build_transpose),
    "squeeze": OpSpec((1, 1), {"dim": (_optional(_DIM), None)}, _build_squeeze),
    "unsqueeze": OpSpec((1, 1), {"dim": (_int(-MAX_RANK - 1, MAX_RANK), _REQUIRED)}, _build_unsqueeze),
    "cat": OpSpec((1, 1024), {"dim": (_DIM, 0)}, _build_cat),
    "max_pool2d": OpSpec((1, 1), _pool_attrs("max"), lambda n, a, p: lambda x: _pool2d(x, a, n, "max")),
    "avg_pool2d": OpSpec((1, 1), _pool_attrs("avg"), lambda n, a, p: lambda x: _pool2d(x, a, n, "avg")),
    "adaptive_avg_pool2d": OpSpec((1, 1), {"output_size": (_ints(1, 4096, 2), _REQUIRED)}, _build_adaptive),
    "mean": OpSpec((1, 1), {"dims": (_ints(-MAX_RANK, MAX_RANK - 1), ()), "keepdim": (_bool, False)}, _build_mean),
    "size": OpSpec((1, 1), {"dim": (_DIM, _REQUIRED)}, _build_size),
    "dropout": OpSpec((1, 1), {}, _identity),
    "identity": OpSpec((1, 1), {}, _identity),
    "constant": OpSpec((0, 0), {}, _build_constant, lambda a, w: {"value": _Param(True, _F32, None)}),
}

_SPARSE_OPS = ("linear", "conv2d")


# ---------------------------------------------------------------------------
# Graph validation.


def _check_name(v: Any, where: str) -> str:
    if not isinstance(v, str) or not 0 < len(v) <= MAX_NAME or not _NAME_RE.match(v):
        raise ModelFileError(f"{where} must be a name of letters, digits, '_', '.', '-' (at most {MAX_NAME}), got {v!r:.80}")
    return v


def _check_keys(d: Any, allowed: Sequence[str], where: str, required: Sequence[str] = ()) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise ModelFileError(f"{where} must be a JSON object, got {type(d).__name__}")
    extra = sorted(set(d) - set(allowed))
    if extra:
        raise ModelFileError(f"{where} has unknown keys {extra}")
    missing = [k for k in required if k not in d]
    if missing:
        raise ModelFileError(f"{where} is missing {missing}")
    return d


def _check_attrs(spec: OpSpec, raw: Any, where: str) -> dict[str, Any]:
    raw = _check_keys(raw, list(spec.attrs), f"{where} attrs")
    out: dict[str, Any] = {}
    for key, (check, default) in spec.attrs.items():
        if key in raw:
            out[key] = check(raw[key], f"{where} attribute {key!r}")
        elif default is _REQUIRED:
            raise ModelFileError(f"{where} is missing the attribute {key!r}")
        else:
            out[key] = default
    return out


def _check_array(arr: np.ndarray, spec: _Param, where: str) -> None:
    if arr.dtype.name not in spec.dtypes:
        raise ModelFileError(f"{where} must be {' or '.join(spec.dtypes)}, got {arr.dtype.name}")
    if spec.shape is None:
        if arr.ndim > MAX_RANK:
            raise ModelFileError(f"{where} has rank {arr.ndim} > {MAX_RANK}")
        return
    if arr.ndim != len(spec.shape) or any(w is not None and w != s for w, s in zip(spec.shape, arr.shape)):
        want = tuple("*" if w is None else w for w in spec.shape)
        raise ModelFileError(f"{where} must have shape {want}, got {arr.shape}")


@dataclass(frozen=True)
class _Node:
    name: str
    op: str
    inputs: tuple[Any, ...]
    attrs: dict[str, Any]
    params: dict[str, str]
    raw: dict[str, Any]


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


def _check_input_spec(spec: Any, where: str) -> dict[str, Any]:
    spec = _check_keys(spec, ("name", "shape"), where, ("name", "shape"))
    _check_name(spec["name"], f"{where} name")
    shape = spec["shape"]
    if not isinstance(shape, list) or len(shape) > MAX_RANK:
        raise ModelFileError(f"{where} shape must be a list of at most {MAX_RANK} entries")
    for s in shape:
        if s is not None:
            _int(0, MAX_DIM)(s, f"{where} shape entry")
    return spec


class Model:
    """A loaded model: ``model(*inputs)`` runs numpy float32 arrays through the graph.

    Built by ``pysparse.load(path)`` (or ``Model(graph, arrays)`` from a parsed
    graph and its arrays). Construction validates everything, then runs zeros
    of the declared input shapes once (``dry_run``) so that shapes that do not
    fit between nodes fail at load, not later; it raises ``ModelFileError`` on
    the first problem.
    """

    def __init__(self, graph: Any, arrays: dict[str, np.ndarray], *, dry_run: bool = True) -> None:
        g = _check_keys(graph, ("inputs", "outputs", "nodes"), "graph", ("inputs", "outputs", "nodes"))
        if not isinstance(g["inputs"], list) or not 1 <= len(g["inputs"]) <= MAX_INPUTS:
            raise ModelFileError(f"graph inputs must be a list of 1 to {MAX_INPUTS} inputs")
        if not isinstance(g["nodes"], list) or len(g["nodes"]) > MAX_NODES:
            raise ModelFileError(f"graph nodes must be a list of at most {MAX_NODES} nodes")
        if not isinstance(g["outputs"], list) or not 1 <= len(g["outputs"]) <= MAX_INPUTS:
            raise ModelFileError(f"graph outputs must be a list of 1 to {MAX_INPUTS} node names")
        self._graph = graph
        self._arrays = arrays
        self._inputs = [_check_input_spec(s, f"graph input {i}") for i, s in enumerate(g["inputs"])]
        defined: dict[str, str] = {}  # name -> op ("input" for graph inputs)
        for s in self._inputs:
            if s["name"] in defined:
                raise ModelFileError(f"graph input name {s['name']!r} is used twice")
            defined[s["name"]] = "input"
        used_arrays: set[str] = set()
        self._nodes: list[_Node] = []
        for i, raw in enumerate(g["nodes"]):
            self._nodes.append(self._check_node(raw, i, defined, used_arrays))
        unused = sorted(set(arrays) - used_arrays)
        if unused:
            raise ModelFileError(f"arrays {unused[:5]} are in the file but no node uses them")
        self._outputs: list[str] = []
        for o in g["outputs"]:
            if not isinstance(o, str) or o not in defined:
                raise ModelFileError(f"graph output {o!r:.80} is not a node or input of the graph")
            self._outputs.append(o)
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

    def _check_node(self, raw: Any, i: int, defined: dict[str, str], used_arrays: set[str]) -> _Node:
        where = f"node {i}"
        d = _check_keys(raw, ("name", "op", "inputs", "attrs", "params"), where, ("name", "op"))
        name = _check_name(d["name"], f"{where} name")
        where = f"node {name!r}"
        if name in defined:
            raise ModelFileError(f"{where} is defined twice")
        op = d["op"]
        if not isinstance(op, str) or op not in OPS:
            raise ModelFileError(f"{where}: unknown op {op!r:.80}; this runtime runs {sorted(OPS)}")
        spec = OPS[op]
        inputs = d.get("inputs", [])
        if not isinstance(inputs, list) or not spec.inputs[0] <= len(inputs) <= spec.inputs[1]:
            raise ModelFileError(f"{where} ({op}) takes {spec.inputs[0]} to {spec.inputs[1]} inputs")
        for r in inputs:
            if isinstance(r, str):
                if r not in defined:
                    raise ModelFileError(f"{where} reads {r!r:.80}, which is not defined before it")
            else:
                _float()(r, f"{where} literal input")
        # Literal inputs only where ops take numbers: binary ops and reshape sizes.
        tensor_inputs = inputs[:1] if op == "reshape" else inputs
        if op not in _BINARY and any(not isinstance(r, str) for r in tensor_inputs):
            raise ModelFileError(f"{where} ({op}) takes node names as inputs, got a number")
        if op in _BINARY and not any(isinstance(r, str) for r in inputs):
            raise ModelFileError(f"{where} ({op}) needs at least one node input")
        attrs = _check_attrs(spec, d.get("attrs", {}), where)
        params = d.get("params", {})
        want = spec.params(attrs, where)
        params = _check_keys(params, list(want), f"{where} params")
        for role, pspec in want.items():
            if role not in params:
                if pspec.required:
                    raise ModelFileError(f"{where} is missing the array {role!r}")
                continue
            aname = params[role]
            if not isinstance(aname, str) or aname not in self._arrays:
                raise ModelFileError(f"{where} array {role!r} names {aname!r:.80}, which is not in the file")
            if aname in used_arrays:
                raise ModelFileError(f"{where} array {aname!r} is used twice")
            used_arrays.add(aname)
            _check_array(self._arrays[aname], pspec, f"{where} array {role!r}")
        defined[name] = op
        return _Node(name, op, tuple(inputs), attrs, dict(params), d)

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
            from ._arrays import as_input

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
            if n.name == name and n.op in _SPARSE_OPS:
                rows = n.attrs["out_features"] if n.op == "linear" else n.attrs["out_channels"]
                cols = n.attrs["in_features"] if n.op == "linear" else _conv_cols(n.attrs, n.name)
                return _build_matrix(n.attrs, {r: self._arrays[a] for r, a in n.params.items()}, rows, cols)
        raise KeyError(f"no linear or conv2d node named {name!r}")

    @property
    def layers(self) -> list[LayerInfo]:
        """Per node with arrays: op, format, weight shape, sparsity and bytes."""
        out = []
        for n in self._nodes:
            if not n.params or n.op == "constant":
                continue
            nbytes = sum(self._arrays[a].nbytes for a in n.params.values())
            if n.op in _SPARSE_OPS:
                w = self.matrix(n.name)
                dense = w.to_dense() if isinstance(w, SparseMatrixBase) else w
                size = dense.size
                sparsity = 1.0 - np.count_nonzero(dense) / size if size else 0.0
                bias = n.params.get("bias")
                dense_nbytes = 4 * size + (self._arrays[bias].nbytes if bias else 0)
                out.append(LayerInfo(n.name, n.op, n.attrs["format"], dense.shape, sparsity, nbytes, dense_nbytes))
            else:
                out.append(LayerInfo(n.name, n.op, "-", (), 0.0, nbytes, nbytes))
        return out

    def summary(self) -> str:
        """A printable table of the layers with weights, and the totals."""
        rows = [f"{'layer':<28} {'op':<11} {'format':<7} {'shape':<16} {'sparsity':>8} {'bytes':>11} {'dense':>11}"]
        total = dense_total = 0
        for li in self.layers:
            shape = "x".join(map(str, li.shape)) if li.shape else "-"
            rows.append(
                f"{li.name[:28]:<28} {li.op:<11} {li.format:<7} {shape:<16} {li.sparsity:>8.1%} "
                f"{li.nbytes:>11,} {li.dense_nbytes:>11,}"
            )
            total += li.nbytes
            dense_total += li.dense_nbytes
        ratio = total / dense_total if dense_total else 1.0
        rows.append(f"{'total':<65} {total:>11,} {dense_total:>11,}  ({ratio:.2f}x dense)")
        ins = ", ".join(f"{s['name']}{tuple('batch' if d is None else d for d in s['shape'])}" for s in self._inputs)
        rows.append(f"inputs: {ins}; outputs: {', '.join(self._outputs)}; nodes: {len(self._nodes)}")
        return "\n".join(rows)

    def densified(self) -> Model:
        """The same model with every sparse weight stored dense (for comparisons)."""
        nodes, arrays = [], {}
        for n in self._nodes:
            raw = dict(n.raw)
            if n.op in _SPARSE_OPS and n.attrs["format"] != "dense":
                w = self.matrix(n.name)
                attrs = {k: v for k, v in raw.get("attrs", {}).items() if k not in ("block", "nm")}
                attrs["format"] = "dense"
                raw["attrs"] = attrs
                params = {"weight": f"{n.name}.weight"}
                arrays[params["weight"]] = w.to_dense()
                if "bias" in n.params:
                    params["bias"] = n.params["bias"]
                    arrays[params["bias"]] = self._arrays[n.params["bias"]]
                raw["params"] = params
            else:
                for a in n.params.values():
                    arrays[a] = self._arrays[a]
            nodes.append(raw)
        return Model({**self._graph, "nodes": nodes}, arrays)

    def __repr__(self) -> str:
        formats = sorted({li.format for li in self.layers if li.op in _SPARSE_OPS})
        return f"Model(inputs={self.input_names}, outputs={self._outputs}, nodes={len(self._nodes)}, formats={formats})"
