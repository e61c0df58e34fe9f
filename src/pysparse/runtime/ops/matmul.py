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
from ... import _core
from ...formats import BSRMatrix, SparseMatrixBase, format_class
from ...ops.geometry import output_hw
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
    own = _own_kernel_weight(w)._m if w.size <= OWN_KERNEL_MAX_WEIGHTS else None

    def run_dense(x: Any) -> np.ndarray:
        x = _tensor(x, node)
        if x.ndim == 0 or x.shape[-1] != k:
            raise ValueError(f"node {node!r}: input last dimension must be {k}, got shape {x.shape}")
        x2 = x.reshape(-1, k)
        if own is not None and x2.shape[0] <= OWN_KERNEL_MAX_ROWS:
            # a few rows: our kernel on our pool (numpy's BLAS threads would fight it, see OWN_KERNEL_MAX_ROWS)
            y = _core.linear(np.ascontiguousarray(x2, dtype=np.float32), own, bias, 0)
        else:
            # One 2-D GEMM over all leading dims: numpy's stacked matmul loops over them (3x slower at (1, 16, K)).
            y = np.ascontiguousarray(x2) @ wt  # one layout into BLAS: a strided view gives other bits
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


# Dense weights of linear and (groups == 1) conv2d nodes run through the fp32 SpMM kernels as BSR (4, 1)
# at density 1, on the package's own thread pool, rather than numpy's BLAS: at batch 1 the two are within
# 1-1.6x on one core (Zen 4, MobileNetV2's 1x1 convs and its 1280 -> 1000 classifier), but OpenBLAS's
# own threads and our pool fight for the cores from two threads on (MobileNetV2's stem, 3x3 stride 2,
# 3 -> 32: 3 ms on one BLAS thread, 34 ms with OpenBLAS's default threads on a loaded 2-core VM; the
# classifier 0.06 ms against 10 ms). A linear with more rows than OWN_KERNEL_MAX_ROWS (a transformer's
# tokens) keeps BLAS, which wins there; weights beyond OWN_KERNEL_MAX_WEIGHTS are not copied.
OWN_KERNEL_BLOCK = (4, 1)
OWN_KERNEL_MAX_ROWS = 8
OWN_KERNEL_MAX_WEIGHTS = 1 << 24


def _own_kernel_weight(w: np.ndarray) -> Any:
    """A dense float32 weight as the BSR matrix our kernels run (every block stored but all-zero ones)."""
    return BSRMatrix.from_dense(np.ascontiguousarray(w, dtype=np.float32), block=OWN_KERNEL_BLOCK)


def _build_conv(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    w = _build_matrix(a, p, a["out_channels"], _conv_cols(a, node))
    bias = p.get("bias")
    kwargs = {k: a[k] for k in ("kernel_size", "stride", "padding", "dilation", "groups")}
    plan = _ops.Conv2dPlan(w, bias, **kwargs)  # attributes checked and the path chosen once, here
    if not plan.sparse and plan.path in ("1x1", "im2col") and a["groups"] == 1 and w.size <= OWN_KERNEL_MAX_WEIGHTS:
        # see OWN_KERNEL_BLOCK; the depthwise and direct (stem) kernels and grouped weights keep their paths
        plan = _ops.Conv2dPlan(_own_kernel_weight(w), bias, **kwargs)
    return _conv_run(node, plan)


def _conv_run(node: str, plan: Any) -> Fn:
    """The conv2d node's function over its plan (kept as ``run.conv_plan`` for load-time fusion)."""
    cin = plan.in_channels

    def run(x: Any) -> np.ndarray:
        x = _tensor(x, node)
        if x.ndim != 4 or x.shape[1] != cin:
            raise ValueError(f"node {node!r}: conv2d needs input (N, {cin}, H, W), got shape {x.shape}")
        if x.dtype == np.float32:  # a runtime value: numpy, checked here (plan(x) would check it again)
            return plan.run(x, plan.bias)
        return plan(x)  # says what is wrong with it

    run.conv_plan = plan  # type: ignore[attr-defined]
    return run


def _plan_with(plan: Any, w: Any, bias: np.ndarray | None) -> Any:
    """A plan like ``plan`` (attributes, threads, activation) for another weight and bias."""
    k, s, p, d, g, threads = plan.attrs
    return _ops.Conv2dPlan(w, bias, kernel_size=k, stride=s, padding=p, dilation=d, groups=g,
                           threads=threads or None, activation=plan.activation)


# A batch norm folds into the conv before it when the weight has at most this many entries
# (a sparse weight is scaled through its dense form, then packed again in its format).
FOLD_MAX_WEIGHTS = 1 << 24


def conv_with_batch_norm(name: str, conv_fn: Fn, scale: np.ndarray, shift: np.ndarray) -> Fn | None:
    """conv2d followed by batch_norm (y * scale + shift per channel, ``norm.py``'s folded form) as
    one conv2d with the weight's rows scaled and bias * scale + shift (computed in float64, rounded
    once: the result equals the two nodes' to float32 rounding, not bitwise). The weight keeps its
    format; zeros stay zeros. None when the pair does not fold (not a conv2d node, an activation
    already fused, a weight too large, non-finite scale or shift)."""
    plan = getattr(conv_fn, "conv_plan", None)
    if plan is None or plan.activation != "none" or scale.shape != (plan.out_channels,):
        return None
    w = plan.weight
    if w.shape[0] * w.shape[1] > FOLD_MAX_WEIGHTS or not (np.isfinite(scale).all() and np.isfinite(shift).all()):
        return None
    s64 = scale.astype(np.float64)
    if isinstance(w, SparseMatrixBase):
        if w.quantized:
            return None
        dense = w.to_dense().astype(np.float64) * s64[:, None]
        w2: Any = type(w).pack(dense.astype(np.float32), **w.file_attrs())
    else:
        w2 = (w.astype(np.float64) * s64[:, None]).astype(np.float32)
    b = np.zeros(plan.out_channels) if plan.bias is None else plan.bias.astype(np.float64)
    bias = (b * s64 + shift.astype(np.float64)).astype(np.float32)
    return _conv_run(name, _plan_with(plan, w2, bias))


def conv_with_residual(name: str, conv_fn: Fn, add_fn: Fn) -> Fn | None:
    """conv2d followed by add(conv, r) (either order): fn(x, r) with r added in the kernels'
    epilogue when r is float32, C-contiguous and exactly the output's shape; anything else runs
    the two nodes as they are (``add_fn`` broadcasts, casts and checks)."""
    plan = getattr(conv_fn, "conv_plan", None)
    if plan is None:
        return None
    cin, cout = plan.in_channels, plan.out_channels

    def fused(x: Any, r: Any) -> Any:
        if (isinstance(x, np.ndarray) and x.ndim == 4 and x.shape[1] == cin and x.dtype == np.float32
                and isinstance(r, np.ndarray) and r.dtype == np.float32 and r.flags.c_contiguous and r.ndim == 4
                and r.shape[:2] == (x.shape[0], cout)):
            out_hw = output_hw(x.shape[2:], plan.kernel_size, plan.stride, plan.padding, plan.dilation)
            if r.shape[2:] == out_hw:
                return plan.run(x, plan.bias, r)
        return add_fn(conv_fn(x), r)

    return fused


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
