"""bsr_int8: int8 blocks of R consecutive output rows by 4 consecutive inputs, per-row scales."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _checks, _core
from .base import F32, ArraySpec, SparseMatrixBase, file_copies
from .int8 import MAX_INT8_COLS, QuantizedMatrixBase, quantize_rows

BLOCK_ROWS_INT8 = (4, 8)
# A (R, 4) block layout is worth timing up to this share of kept blocks (above it
# dense_int8, which stores no indices, is as small and as fast).
MAX_INT8_BLOCK_DENSITY = 0.6
_INDPTR = ("int32", "int64")
_INDEX = ("uint16", "int32", "uint32", "int64")


def _block_r(block: Any) -> int:
    r, c = _checks.block(block)
    if c != 4 or r not in BLOCK_ROWS_INT8:
        raise ValueError(f"int8 blocks are (R, 4) with R in {BLOCK_ROWS_INT8}, got {(r, c)}")
    return r


def block_density(w2d: np.ndarray, r: int) -> float:
    """The share of (r, 4) blocks of W that hold a nonzero (1.0 for an empty matrix)."""
    rows, cols = w2d.shape
    if rows == 0 or cols == 0:
        return 1.0
    nz = np.zeros((-(-rows // r) * r, -(-cols // 4) * 4), dtype=bool)
    nz[:rows, :cols] = w2d != 0
    return float(nz.reshape(nz.shape[0] // r, r, -1, 4).any(axis=(1, 3)).mean())


class BSRInt8Matrix(QuantizedMatrixBase):
    """Block-sparse int8: (R, 4) blocks (R in 4, 8), zero blocks dropped, per-row float32 scales.

    ``data`` is (nblocks, R, 4) int8, ``indices`` each block's first column (a
    multiple of 4), ``indptr`` the block-row pointer, ``scales`` (rows,) float32.
    K need not be a multiple of 4: the last block of a row covers inputs past K,
    whose weights are zero. See ``pysparse.formats.int8`` for the arithmetic.
    """

    tag = format = "bsr_int8"

    def __init__(self, indptr: Any, indices: Any, data: Any, scales: Any, shape: Any, block: Any = (8, 4)) -> None:
        m, k = _checks.shape2(shape)
        r = _block_r(block)
        data = np.asarray(data)
        if data.dtype != np.int8:
            raise TypeError(f"data must be int8, got {data.dtype}")
        if data.ndim != 3 or data.shape[1:] != (r, 4):
            raise ValueError(f"data must be (nblocks, {r}, 4), got shape {data.shape}")
        self._m = _core.QMatrix.from_arrays(
            (m, k), r, np.asarray(indptr), np.asarray(indices), data, np.asarray(scales)
        )

    @classmethod
    def from_int8(cls, q: Any, scales: Any, block: Any = (8, 4)) -> BSRInt8Matrix:
        """From int8 weights (rows, cols) and per-row scales; all-zero blocks are dropped."""
        return cls._wrap(_core.QMatrix.from_int8(np.asarray(q), np.asarray(scales), _block_r(block), "bsr_int8"))

    @classmethod
    def from_dense(cls, a: Any, block: Any = (8, 4)) -> BSRInt8Matrix:
        """Quantize a float weight per row (``quantize_rows``) and pack its nonzero (R, 4) blocks."""
        q, scales = quantize_rows(a)
        return cls.from_int8(q, scales, block)

    @classmethod
    def from_float(cls, w: SparseMatrixBase, block: Any = (8, 4)) -> BSRInt8Matrix:
        """From a float32 pysparse matrix (its dense weight, quantized)."""
        return cls.from_dense(w.to_dense(), block)

    @property
    def nblocks(self) -> int:
        return self._m.nblocks

    @property
    def data(self) -> np.ndarray:
        r, _ = self.block
        return self._m.values.reshape(self.nblocks, r, 4)

    @property
    def label(self) -> str:
        r, _ = self.block
        return f"bsr_int8({r},4)"

    # ------------------------------------------------------------------ the format's description
    @classmethod
    def pack(cls, w2d: np.ndarray, *, block: Any = None, **params: Any) -> BSRInt8Matrix:
        return cls.from_dense(w2d, block=block if block is not None else (8, 4))

    @classmethod
    def candidates(cls, w2d: np.ndarray, *, block: Any = None, conv: bool = False) -> list[SparseMatrixBase]:
        """(8, 4) and (4, 4) when at most MAX_INT8_BLOCK_DENSITY of their blocks hold a weight."""
        if conv or w2d.shape[1] > MAX_INT8_COLS:
            return []
        rs = [_block_r(block)] if block is not None and tuple(block)[1] == 4 else list(BLOCK_ROWS_INT8)[::-1]
        return [cls.from_dense(w2d, block=(r, 4)) for r in rs if block_density(w2d, r) <= MAX_INT8_BLOCK_DENSITY]

    def file_attrs(self) -> dict[str, Any]:
        return {"block": list(self.block)}

    def to_file_arrays(self) -> dict[str, np.ndarray]:
        return file_copies(
            {"indptr": self.indptr, "indices": self._m.indices, "data": self.data, "scales": self.scales}
        )

    @classmethod
    def file_specs(cls, attrs: dict[str, Any], rows: int, cols: int) -> dict[str, ArraySpec]:
        block = attrs.get("block")
        if block is None:
            raise ValueError("format 'bsr_int8' needs the 'block' attribute")
        r = _block_r(block)
        return {
            "indptr": ArraySpec(True, _INDPTR, (-(-rows // r) + 1,)),
            "indices": ArraySpec(True, _INDEX, (None,)),
            "data": ArraySpec(True, ("int8",), (None, r, 4)),
            "scales": ArraySpec(True, F32, (rows,)),
        }

    @classmethod
    def from_file_arrays(
        cls, attrs: dict[str, Any], arrays: dict[str, np.ndarray], rows: int, cols: int
    ) -> BSRInt8Matrix:
        return cls(arrays["indptr"], arrays["indices"], arrays["data"], arrays["scales"], (rows, cols), attrs["block"])
