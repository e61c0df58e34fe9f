"""The Python face of the kernels: spmm and linear for numpy arrays and torch tensors."""

from __future__ import annotations

from typing import Any

from . import _core
from ._arrays import as_input, as_output
from .formats import SparseMatrixBase

__all__ = ["spmm", "linear"]


def _threads(threads: int | None) -> int:
    if threads is None:
        return 0
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")
    return threads


def _matrix(w: Any) -> _core.SparseMatrix:
    if not isinstance(w, SparseMatrixBase):
        raise TypeError(
            f"W must be a pysparse CSRMatrix, BSRMatrix or NMMatrix, got {type(w).__name__}; "
            "build one with pysparse.CSRMatrix.from_dense(W)"
        )
    return w._m


def _bias(bias: Any) -> Any:
    if bias is None:
        return None
    b, _ = as_input(bias, "bias")
    return b


def spmm(w: SparseMatrixBase, x: Any, *, bias: Any = None, threads: int | None = None) -> Any:
    """Y = W @ X (+ bias[:, None]). X is (K,) or (K, N) float32; Y follows X's kind."""
    m = _matrix(w)
    xa, torch_in = as_input(x, "x")
    return as_output(_core.spmm(m, xa, _bias(bias), _threads(threads)), torch_in)


def linear(x: Any, w: SparseMatrixBase, bias: Any = None, *, threads: int | None = None) -> Any:
    """y = x @ W.T + bias, like torch.nn.functional.linear; x is (K,) or (batch, K) float32."""
    m = _matrix(w)
    xa, torch_in = as_input(x, "x")
    return as_output(_core.linear(xa, m, _bias(bias), _threads(threads)), torch_in)
