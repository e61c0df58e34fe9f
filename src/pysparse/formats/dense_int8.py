"""dense_int8: every int8 weight with per-row scales, for layers below sparse break-even."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _core
from .base import F32, ArraySpec, SparseMatrixBase, file_copies
from .int8 import MAX_INT8_COLS, QuantizedMatrixBase, quantize_rows


class DenseInt8Matrix(QuantizedMatrixBase):
    """All weights as int8 with per-row float32 scales (stored as (8, 4) blocks, no indices).

    ``data`` is the (rows, cols) int8 weight. A layer too dense for any sparse
    format still runs about 4x fewer bytes than float32. See ``pysparse.formats.int8``."""

    tag = format = "dense_int8"

    def __init__(self, data: Any, scales: Any) -> None:
        self._m = _core.QMatrix.from_int8(np.asarray(data), np.asarray(scales), 8, "dense_int8")

    @classmethod
    def from_int8(cls, q: Any, scales: Any) -> DenseInt8Matrix:
        return cls(q, scales)

    @classmethod
    def from_dense(cls, a: Any) -> DenseInt8Matrix:
        """Quantize a float weight per row (``quantize_rows``)."""
        q, scales = quantize_rows(a)
        return cls(q, scales)

    @classmethod
    def from_float(cls, w: SparseMatrixBase) -> DenseInt8Matrix:
        return cls.from_dense(w.to_dense())

    @property
    def indptr(self) -> None:  # type: ignore[override]
        return None

    @property
    def data(self) -> np.ndarray:
        return self.to_int8()

    # ------------------------------------------------------------------ the format's description
    @classmethod
    def pack(cls, w2d: np.ndarray, **params: Any) -> DenseInt8Matrix:
        return cls.from_dense(w2d)

    @classmethod
    def candidates(cls, w2d: np.ndarray, *, block: Any = None, conv: bool = False) -> list[SparseMatrixBase]:
        if conv or w2d.shape[1] > MAX_INT8_COLS:
            return []
        return [cls.from_dense(w2d)]

    def to_file_arrays(self) -> dict[str, np.ndarray]:
        return file_copies({"data": self.to_int8(), "scales": self.scales})

    @classmethod
    def file_specs(cls, attrs: dict[str, Any], rows: int, cols: int) -> dict[str, ArraySpec]:
        return {"data": ArraySpec(True, ("int8",), (rows, cols)), "scales": ArraySpec(True, F32, (rows,))}

    @classmethod
    def from_file_arrays(
        cls, attrs: dict[str, Any], arrays: dict[str, np.ndarray], rows: int, cols: int
    ) -> DenseInt8Matrix:
        return cls(arrays["data"], arrays["scales"])
