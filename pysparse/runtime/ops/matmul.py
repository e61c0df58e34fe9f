"""The nodes that hold a weight matrix: linear and conv2d.

The weight is stored in the file in one of the formats (dense, csr, sell, bsr,
nm); ``_matrix_params`` says which arrays that takes, ``_build_matrix`` builds
the pysparse matrix (whose C++ constructor validates the indices). CSR (and
SELL) weights are stored with the bucket codec of ``csr_pack``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import ops as _ops
from ...formats import BSRMatrix, CSRMatrix, NMMatrix, SELLMatrix, SparseMatrixBase
from ..schema import _F32, _INDEX, _INDPTR, ModelFileError, _Param
from .base import DENSE_MAC, MAC, Cost, Fn, _prod, _tensor, _window


def _matrix_params(a: dict[str, Any], rows: int, cols: int, where: str) -> dict[str, _Param]:
    fmt = a["format"]
    if fmt == "dense":
        return {"weight": _Param(True, _F32, (rows, cols))}
    if fmt in ("csr", "sell"):  # SELL is stored as its CSR arrays
        return {
            "bucket_nnz": _Param(True, ("uint16",), (rows, -(-cols // CSR_BUCKET))),
            "col_lo": _Param(True, ("uint8",), (None,)),
            "data": _Param(True, _F32, (None,)),
        }
    if fmt == "bsr":
        if a["block"] is None:
            raise ModelFileError(f"{where}: format 'bsr' needs the 'block' attribute")
        r, c = a["block"]
        return {
            "indptr": _Param(True, _INDPTR, (-(-rows // r) + 1,)),
            "indices": _Param(True, _INDEX, (None,)),
            "data": _Param(True, _F32, (None, r, c)),
        }
    if a["nm"] is None:
        raise ModelFileError(f"{where}: format 'nm' needs the 'nm' attribute")
    n, m = a["nm"]
    grid = (-(-rows // 8), -(-cols // m), n, 8)
    return {"data": _Param(True, _F32, grid), "offsets": _Param(True, ("uint8",), grid)}


# CSR in the file: columns split into buckets of 256; per (row, bucket) the count
# of nonzeros (uint16) and per nonzero its column's low byte (uint8). Row
# pointers and full column indices follow from those. That is 5 bytes per
# nonzero (instead of 6 with uint16 indices), which keeps a 90%-sparse layer
# under 0.15x its dense size.
CSR_BUCKET = 256


def csr_pack(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, rows: int, cols: int) -> dict[str, np.ndarray]:
    """CSR arrays -> the file's arrays (bucket_nnz, col_lo, data), rows sorted by column."""
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    row = np.repeat(np.arange(rows, dtype=np.int64), np.diff(indptr))
    order = np.lexsort((indices, row))
    indices, row = indices[order], row[order]
    counts = np.zeros((rows, -(-cols // CSR_BUCKET)), dtype=np.uint16)
    np.add.at(counts, (row, indices // CSR_BUCKET), 1)
    return {
        "bucket_nnz": counts,
        "col_lo": (indices % CSR_BUCKET).astype(np.uint8),
        "data": np.ascontiguousarray(np.asarray(data, dtype=np.float32)[order]),
    }


def csr_unpack(bucket_nnz: np.ndarray, col_lo: np.ndarray, nnz: int) -> tuple[np.ndarray, np.ndarray]:
    """The file's (bucket_nnz, col_lo) -> CSR (indptr, indices); the C++ constructor checks the rest."""
    counts = bucket_nnz.astype(np.int64)
    if counts.size and int(counts.max()) > CSR_BUCKET:
        raise ModelFileError(f"a CSR bucket holds more than {CSR_BUCKET} nonzeros")
    total = int(counts.sum())
    if total != nnz or len(col_lo) != nnz:
        raise ModelFileError(f"CSR bucket counts sum to {total}, but there are {len(col_lo)} indices and {nnz} values")
    rows, nb = counts.shape
    bucket = np.repeat(np.tile(np.arange(nb, dtype=np.int64), rows), counts.ravel())
    indptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(counts.sum(axis=1), out=indptr[1:])
    return indptr, bucket * CSR_BUCKET + col_lo


def _build_matrix(a: dict[str, Any], p: dict[str, np.ndarray], rows: int, cols: int) -> Any:
    """The weight as a pysparse matrix (validated in C++) or a dense float32 array."""
    fmt = a["format"]
    if fmt == "dense":
        return p["weight"]
    if fmt in ("csr", "sell"):
        indptr, indices = csr_unpack(p["bucket_nnz"], p["col_lo"], len(p["data"]))
        csr = CSRMatrix(indptr, indices, p["data"], (rows, cols))
        return csr if fmt == "csr" else SELLMatrix.from_csr(csr)
    if fmt == "bsr":
        return BSRMatrix(p["indptr"], p["indices"], p["data"], (rows, cols), a["block"])
    return NMMatrix(p["data"], p["offsets"], (rows, cols), a["nm"])


def _build_linear(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    w = _build_matrix(a, p, a["out_features"], a["in_features"])
    bias = p.get("bias")
    k = a["in_features"]
    if isinstance(w, SparseMatrixBase):

        def run(x: Any) -> np.ndarray:
            x = _tensor(x, node)
            if x.ndim == 0 or x.shape[-1] != k:
                raise ValueError(f"node {node!r}: input last dimension must be {k}, got shape {x.shape}")
            y = _ops.linear(np.ascontiguousarray(x.reshape(-1, k)), w, bias)
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

    def run(x: Any) -> np.ndarray:
        x = _tensor(x, node)
        if x.ndim != 4 or x.shape[1] != cin:
            raise ValueError(f"node {node!r}: conv2d needs input (N, {cin}, H, W), got shape {x.shape}")
        return np.asarray(_ops.conv2d(np.ascontiguousarray(x), w, bias, **kwargs))

    return run


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
