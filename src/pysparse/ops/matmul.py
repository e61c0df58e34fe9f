"""Y = W @ X and y = x @ W.T + bias with a pysparse matrix W (numpy + _core only)."""

from __future__ import annotations

from typing import Any

from .. import _checks, _core
from .._arrays import as_input, as_output
from ..formats import SparseMatrixBase


def core_matrix(w: Any) -> _core.SparseMatrix:
    """The kernels' matrix of a pysparse weight; TypeError for anything else."""
    if not isinstance(w, SparseMatrixBase):
        raise TypeError(
            f"W must be a pysparse CSRMatrix, BSRMatrix, NMMatrix or SELLMatrix, got {type(w).__name__}; "
            "build one with pysparse.CSRMatrix.from_dense(W)"
        )
    return w._m


def bias_array(bias: Any) -> Any:
    """bias as a numpy array (None stays None); its dtype and length are the kernel's to check."""
    if bias is None:
        return None
    b, _ = as_input(bias, "bias")
    return b


def spmm(w: SparseMatrixBase, x: Any, *, bias: Any = None, threads: int | None = None) -> Any:
    """Y = W @ X (+ bias[:, None]). X is (K,) or (K, N) float32; Y follows X's kind.

    W is any pysparse matrix (CSRMatrix, BSRMatrix, NMMatrix, SELLMatrix)."""
    m = core_matrix(w)
    xa, torch_in = as_input(x, "x")
    return as_output(_core.spmm(m, xa, bias_array(bias), _checks.threads(threads)), torch_in)


def linear(x: Any, w: SparseMatrixBase, bias: Any = None, *, threads: int | None = None) -> Any:
    """y = x @ W.T + bias, like torch.nn.functional.linear; x is (K,) or (batch, K) float32."""
    m = core_matrix(w)
    xa, torch_in = as_input(x, "x")
    return as_output(_core.linear(xa, m, bias_array(bias), _checks.threads(threads)), torch_in)


class LinearPlan:
    """``linear`` with its weight, bias and threads checked once: ``plan(x)`` checks only x
    (in the kernel: dtype, rank, length; any strides)."""

    __slots__ = ("weight", "_m", "_bias", "_threads")

    def __init__(self, w: SparseMatrixBase, bias: Any = None, *, threads: int | None = None) -> None:
        self._m = core_matrix(w)
        self.weight = w
        self._bias = bias_array(bias)
        self._threads = _checks.threads(threads)

    def __call__(self, x: Any) -> Any:
        xa, torch_in = as_input(x, "x")
        return as_output(_core.linear(xa, self._m, self._bias, self._threads), torch_in)
