"""What the int8 weight formats share: per-row quantization and ``QuantizedMatrixBase``.

The contract (``csrc/qformats.h`` is the reference):

* weights: per output row i, ``scale[i] = max_k |w[i, k]| / 127`` (float32) and
  ``q[i, k] = clip(rint(w[i, k] / scale[i]), -127, 127)`` (int8, round half to even);
  zeros stay zeros, so sparsity survives; an all-zero row has scale 0.
* activations: quantized the same way per row of x (per token / batch column)
  inside the kernel, on every call (dynamic): ``x_scale[j] = max_k |x[j, k]| / 127``,
  ``q = clip(rint(x * (127 / max)), -127, 127)``. A row of x holding a NaN or an
  infinity gives a row of NaN outputs; a row whose largest |x| is below 2**-100
  counts as zero (its output is the bias).
* output: ``y[j, i] = fma(float(acc) * scale[i], x_scale[j], bias[i])`` with
  ``acc`` the exact int32 sum of ``q_w * q_x``; every ISA gives the same bits.
* K (in_features) is at most 65536: the int32 sums are exact up to there.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .. import _core
from .._arrays import as_float32_matrix, as_input, as_output
from .base import SparseMatrixBase

MAX_INT8_COLS = 65536


def quantize_rows(a: Any) -> tuple[np.ndarray, np.ndarray]:
    """(q int8, scales float32) of a 2-D float weight, per output row (the contract above).

    ValueError for a weight holding NaN or infinity."""
    w = as_float32_matrix(a, "weight")
    if not np.isfinite(w).all():
        raise ValueError("the weight holds NaN or infinity; int8 quantization needs finite weights")
    amax = np.abs(w).max(axis=1) if w.shape[1] else np.zeros(w.shape[0], np.float32)
    scales = (amax / np.float32(127.0)).astype(np.float32)
    safe = np.where(scales > 0, scales, np.float32(1.0)).astype(np.float64)
    q = np.clip(np.rint(w.astype(np.float64) / safe[:, None]), -127, 127).astype(np.int8)
    return q, scales


class QuantizedMatrixBase(SparseMatrixBase):
    """An int8 weight with per-row float32 scales; runs through ``ops.linear`` (not conv2d)."""

    _m: Any  # _core.QMatrix
    quantized: ClassVar[bool] = True
    shifted_conv = False

    def __init__(self) -> None:  # pragma: no cover - abstract
        raise TypeError("use BSRInt8Matrix or DenseInt8Matrix")

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.int8)

    @property
    def index_dtype(self) -> np.dtype:
        return np.dtype(np.uint16)

    @property
    def scales(self) -> np.ndarray:
        """Per-row weight scales (float32, read-only)."""
        return self._m.scales

    def to_int8(self) -> np.ndarray:
        """The int8 weights as a dense (rows, cols) array."""
        return self._m.to_int8()

    def to_dense(self) -> np.ndarray:
        """The dequantized float32 weight, q * scale per row."""
        return (self._m.to_int8().astype(np.float32) * self.scales[:, None]).astype(np.float32)

    def shifted_source(self) -> Any:
        raise TypeError(f"{type(self).__name__} runs linear layers only (no int8 convolution kernels)")

    def __matmul__(self, x: Any) -> Any:
        """W @ X for X (K,) or (K, N): the transpose of linear(X.T, W)."""
        xa, torch_in = as_input(x, "x")
        if xa.ndim == 2:
            return as_output(np.ascontiguousarray(_core.qlinear(np.ascontiguousarray(xa.T), self._m).T), torch_in)
        return as_output(_core.qlinear(xa, self._m), torch_in)

    def __repr__(self) -> str:
        m, k = self.shape
        return f"{type(self).__name__}(shape=({m}, {k}), block={self.block}, nnz={self.nnz}, density={self.density:.3f})"
