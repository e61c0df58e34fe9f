"""Y = W @ X and y = x @ W.T + bias with a pysparse matrix W (numpy + _core only)."""

from __future__ import annotations

from typing import Any

from .. import _checks, _core
from .._arrays import as_input, as_output
from ..formats import SparseMatrixBase


def core_matrix(w: Any) -> Any:
    """The kernels' matrix of a pysparse weight (_core.SparseMatrix, or _core.QMatrix for int8);
    TypeError for anything else."""
    if not isinstance(w, SparseMatrixBase):
        raise TypeError(
            f"W must be a pysparse CSRMatrix, BSRMatrix, NMMatrix or SELLMatrix (or an int8 BSRInt8Matrix / "
            f"DenseInt8Matrix), got {type(w).__name__}; build one with pysparse.CSRMatrix.from_dense(W)"
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

    W is a float32 pysparse matrix (CSRMatrix, BSRMatrix, NMMatrix, SELLMatrix); int8 weights
    run ``linear`` (``W @ X`` works for them too)."""
    m = core_matrix(w)
    if w.quantized:
        raise TypeError(f"spmm takes float32 weights; run {type(w).__name__} through pysparse.linear (or W @ X)")
    xa, torch_in = as_input(x, "x")
    return as_output(_core.spmm(m, xa, bias_array(bias), _checks.threads(threads)), torch_in)


def _check_relu(relu: Any) -> bool:
    if not isinstance(relu, bool):
        raise TypeError(f"relu must be a bool, got {type(relu).__name__}")
    return relu


def linear(x: Any, w: SparseMatrixBase, bias: Any = None, *, threads: int | None = None, relu: bool = False) -> Any:
    """y = x @ W.T + bias, like torch.nn.functional.linear; x is (K,) or (batch, K) float32.

    For int8 weights (BSRInt8Matrix, DenseInt8Matrix) x is quantized per row inside the kernel
    (pysparse.formats.int8 has the contract). ``relu=True`` fuses max(y, 0) (int8 weights only)."""
    m = core_matrix(w)
    xa, torch_in = as_input(x, "x")
    if w.quantized:
        return as_output(_core.qlinear(xa, m, bias_array(bias), _check_relu(relu), _checks.threads(threads)), torch_in)
    if _check_relu(relu):
        raise ValueError("relu=True is fused for int8 weights only; apply it after linear for float32 weights")
    return as_output(_core.linear(xa, m, bias_array(bias), _checks.threads(threads)), torch_in)


class LinearPlan:
    """``linear`` with its weight, bias and threads checked once: ``plan(x)`` checks only x
    (in the kernel: dtype, rank, length; any strides)."""

    __slots__ = ("weight", "_m", "_bias", "_threads", "_quantized")

    def __init__(self, w: SparseMatrixBase, bias: Any = None, *, threads: int | None = None) -> None:
        self._m = core_matrix(w)
        self.weight = w
        self._bias = bias_array(bias)
        self._threads = _checks.threads(threads)
        self._quantized = w.quantized

    def __call__(self, x: Any) -> Any:
        xa, torch_in = as_input(x, "x")
        if self._quantized:
            return as_output(_core.qlinear(xa, self._m, self._bias, False, self._threads), torch_in)
        return as_output(_core.linear(xa, self._m, self._bias, self._threads), torch_in)
