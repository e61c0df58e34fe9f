"""The nodes that hold a weight matrix: linear and conv2d.

The weight is stored in the file in one of the formats (dense, csr, sell, bsr,
nm); ``_matrix_params`` says which arrays that takes, ``_build_matrix`` builds
the pysparse matrix (whose C++ constructor validates the indices). CSR (and
SELL) weights are stored with the bucket codec of ``csr_pack``.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from ... import ops as _ops
from ...formats import SparseMatrixBase, format_class
from ...formats import csr as _csr_codec
from ..schema import _F32, ModelFileError, _Param
from .base import DENSE_MAC, MAC, Cost, Fn, _prod, _tensor, _window


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

        run.plan = plan  # type: ignore[attr-defined]  # for the load-time fusion (runtime/fuse.py)
        return run
    wt = np.ascontiguousarray(w.T)

    def run_dense(x: Any) -> np.ndarray:
        x = _tensor(x, node)
        if x.ndim == 0 or x.shape[-1] != k:
            raise ValueError(f"node {node!r}: input last dimension must be {k}, got shape {x.shape}")
        # One 2-D GEMM over all leading dims: numpy's stacked matmul loops over them (3x slower at (1, 16, K)).
        y = x.reshape(-1, k) @ wt
        if bias is not None:
            y += bias
        return y.reshape(*x.shape[:-1], -1)

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
    kwargs = {k: a[k] for k in ("kernel_size", "stride", "padding", "dilation", "groups")}
    plan = _ops.Conv2dPlan(w, bias, **kwargs)  # attributes checked and the path chosen once, here
    return _conv_run(node, plan)


def _conv_run(node: str, plan: Any) -> Fn:
    """The conv2d node's function over its plan (kept as ``run.conv_plan`` for load-time fusion)."""
    cin = plan.in_channels

    def run(x: Any) -> np.ndarray:
        x = _tensor(x, node)
        if x.ndim != 4 or x.shape[1] != cin:
            raise ValueError(f"node {node!r}: conv2d needs input (N, {cin}, H, W), got shape {x.shape}")
        return plan(x)

    run.conv_plan = plan  # type: ignore[attr-defined]
    return run


# The activation nodes a conv2d can take into its plan: op -> the plan's activation for that node's
# attributes (None: not fusable, e.g. a hardtanh that is not (0, 6)).
CONV_ACTIVATIONS: dict[str, Any] = {
    "relu": lambda a: "relu",
    "relu6": lambda a: "relu6",
    "hardtanh": lambda a: "relu6" if (a.get("min_val"), a.get("max_val")) == (0.0, 6.0) else None,
    "clamp": lambda a: "relu6" if (a.get("min"), a.get("max")) == (0.0, 6.0)
    else "relu" if (a.get("min"), a.get("max")) == (0.0, None) else None,
}


def conv_with_activation(name: str, conv_fn: Fn, act_op: str, act_attrs: dict[str, Any]) -> Fn | None:
    """conv2d followed by an activation node as one function (named ``name``, the activation's):
    the depthwise kernel applies it in its epilogue, the other paths in place on the fresh output.
    Computes exactly what the two nodes do (NaN stays NaN); None when the pair does not fuse.
    The runtime's fusion table (runtime/fuse.py) calls this for its conv2d entries."""
    plan = getattr(conv_fn, "conv_plan", None)
    pick = CONV_ACTIVATIONS.get(act_op)
    act = pick(act_attrs) if pick is not None else None
    if plan is None or act is None or plan.activation != "none":
        return None
    fused = copy.copy(plan)  # a new lock and offset cache (Conv2dPlan.__getstate__), the same arrays
    fused.activation = act
    return _conv_run(name, fused)


def _stored(p: dict[str, np.ndarray]) -> float:
    """Work per column of X: the stored values (block and group padding included) times the cost
    of one multiply-add, half of it for a dense weight (BLAS)."""
    return p["weight"].size * DENSE_MAC if "weight" in p else p["data"].size * MAC


def _linear_cost(a: dict[str, Any], p: dict[str, np.ndarray], args: Any) -> Cost:
    x = args[0]
    if not isinstance(x, np.ndarray) or x.ndim == 0:
        return Cost(0)
    rows = _prod(x.shape[:-1])
    out = rows * a["out_features"]
    copy = 0 if x.flags.c_contiguous else int(x.size)
    return Cost(out, copy + out, copy + rows * _stored(p) + out)


def _conv_cost(a: dict[str, Any], p: dict[str, np.ndarray], args: Any) -> Cost:
    """Output, padded input and the gathered receptive fields (im2col) unless the conv is a plain
    1x1 or a dense depthwise one (those read views). Stride-1 sparse convs may run without the
    im2col copy (ops.conv2d's direct path); counting it anyway keeps the estimate an upper bound."""
    x = args[0]
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        return Cost(0)
    n, c, h, w = (int(d) for d in x.shape)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a["kernel_size"], a["stride"], a["padding"], a["dilation"]
    try:
        ho, _ = _window(h, kh, sh, ph, dh, False, "")
        wo, _ = _window(w, kw, sw, pw, dw, False, "")
    except ValueError:
        return Cost(0)  # ops.conv2d says the input is too small
    pixels = n * ho * wo
    out = pixels * a["out_channels"]
    padded = n * c * (h + 2 * ph) * (w + 2 * pw) if ph or pw else 0
    if (kh, kw, sh, sw, ph, pw) == (1, 1, 1, 1, 0, 0):
        gathered = int(x.size)  # small images are gathered side by side
    elif a["format"] == "dense" and a["groups"] == c:  # depthwise: per tap, a product into a temporary and a sum
        return Cost(out, padded + out, padded + 4.0 * out * kh * kw)
    else:
        gathered = pixels * c * kh * kw
    scratch = padded + gathered
    return Cost(out, scratch, 2.0 * scratch + pixels * _stored(p) + out)
