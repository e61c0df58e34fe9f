"""N:M: every M consecutive inputs of a row keep at most N weights."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _checks, _core
from .._arrays import as_float32_matrix
from .base import F32, ArraySpec, SparseMatrixBase, file_copies
from .detect import nm_pattern


class NMMatrix(SparseMatrixBase):
    """N:M sparsity along rows: every M consecutive inputs of a row keep at most N weights.

    Stored for the kernels: rows in interleaved groups of 8, N slots per group of
    M inputs, a float32 value and a uint8 offset per slot (``data`` and
    ``offsets``, both shaped (ceil(rows / 8), ceil(cols / M), N, 8)). At batch 1
    one register permute picks 8 rows' inputs, so N:M beats dense even at 2:4.
    """

    tag = format = "nm"
    shifted_conv = False  # its slots interleave 8 rows: no shifted kernel

    def __init__(self, data: Any, offsets: Any, shape: Any, nm: Any) -> None:
        m_rows, k = _checks.shape2(shape)
        n, m = _checks.nm(nm)
        data = np.asarray(data)
        if data.dtype != np.float32:
            raise TypeError(f"data must be float32, got {data.dtype}; use data.astype(numpy.float32)")
        self._m = _core.SparseMatrix.from_arrays_nm((m_rows, k), n, m, data, np.asarray(offsets))

    @classmethod
    def from_dense(cls, a: Any, nm: Any = "2:4") -> NMMatrix:
        """From a 2-D array-like that is N:M sparse along its rows (ValueError otherwise)."""
        n, m = _checks.nm(nm)
        return cls._wrap(_core.SparseMatrix.from_dense_nm(as_float32_matrix(a), n, m))

    @property
    def nm(self) -> tuple[int, int]:
        return self._m.nm

    @property
    def block(self) -> tuple[int, int]:
        return self.nm

    def _grid(self) -> tuple[int, int, int, int]:
        rows, cols = self.shape
        n, m = self.nm
        return (rows + 7) // 8, (cols + m - 1) // m, n, 8

    @property
    def data(self) -> np.ndarray:
        return self._m.values.reshape(self._grid())

    @property
    def offsets(self) -> np.ndarray:
        return self._m.indices.reshape(self._grid())

    @property
    def nnz(self) -> int:
        """Stored slots (zeros in unused slots count, like BSR's zeros in blocks)."""
        return self._m.stored_values

    def __repr__(self) -> str:
        n, m = self.nm
        rows, cols = self.shape
        return f"NMMatrix(shape=({rows}, {cols}), nm={n}:{m}, nnz={self.nnz}, density={self.density:.3f})"

    # ------------------------------------------------------------------ the format's description
    @property
    def label(self) -> str:
        n, m = self.nm
        return f"nm({n}:{m})"

    @classmethod
    def pack(cls, w2d: np.ndarray, *, nm: Any = None, **params: Any) -> NMMatrix:
        """``nm`` defaults to the pattern the weight has (ValueError if it has none)."""
        if nm is None:
            nm = nm_pattern(w2d)
            if nm is None:
                raise ValueError(
                    "the weight is not N:M sparse along its inputs (at most half kept); pass nm= or pick another format"
                )
        return cls.from_dense(w2d, _checks.nm(nm))

    @classmethod
    def candidates(cls, w2d: np.ndarray, *, block: Any = None, conv: bool = False) -> list[SparseMatrixBase]:
        pattern = nm_pattern(w2d)
        return [] if pattern is None else [cls.from_dense(w2d, pattern)]

    def file_attrs(self) -> dict[str, Any]:
        return {"nm": list(self.nm)}

    def to_file_arrays(self) -> dict[str, np.ndarray]:
        return file_copies({"data": self.data, "offsets": self.offsets})

    @classmethod
    def file_specs(cls, attrs: dict[str, Any], rows: int, cols: int) -> dict[str, ArraySpec]:
        if attrs.get("nm") is None:
            raise ValueError("format 'nm' needs the 'nm' attribute")
        n, m = attrs["nm"]
        grid = (-(-rows // 8), -(-cols // m), n, 8)
        return {"data": ArraySpec(True, F32, grid), "offsets": ArraySpec(True, ("uint8",), grid)}

    @classmethod
    def from_file_arrays(cls, attrs: dict[str, Any], arrays: dict[str, np.ndarray], rows: int, cols: int) -> NMMatrix:
        return cls(arrays["data"], arrays["offsets"], (rows, cols), attrs["nm"])
