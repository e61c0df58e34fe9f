"""Sparse weight matrices: CSR and block-sparse (BSR), validated once, in C++.

Both wrap a ``_core.SparseMatrix`` that owns aligned, padded, immutable copies of
the arrays, so nothing a caller does to its own arrays afterwards can make a
kernel read out of bounds. Column indices are stored as narrow as the shape
allows (uint16 below 65,537 columns).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from . import _core
from ._arrays import as_float32_matrix, is_torch_tensor

__all__ = ["SparseMatrixBase", "CSRMatrix", "BSRMatrix"]

BLOCK_ROWS = (1, 2, 4, 8, 16)


def _check_block(block: Any) -> tuple[int, int]:
    try:
        r, c = (int(v) for v in block)
    except (TypeError, ValueError):
        raise ValueError(f"block must be a pair (R, C) of ints, got {block!r}") from None
    if r not in BLOCK_ROWS:
        raise ValueError(f"block rows R must be one of {BLOCK_ROWS}, got {r}")
    if not 1 <= c <= 64:
        raise ValueError(f"block columns C must be between 1 and 64, got {c}")
    return r, c


def _check_shape(shape: Any) -> tuple[int, int]:
    try:
        m, k = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be a pair (rows, cols), got {shape!r}") from None
    return m, k


class SparseMatrixBase:
    """What every pysparse weight format offers."""

    _m: _core.SparseMatrix
    format: str = ""

    def __init__(self) -> None:  # pragma: no cover - abstract
        raise TypeError("use CSRMatrix or BSRMatrix")

    @classmethod
    def _wrap(cls, m: _core.SparseMatrix) -> Any:
        obj = cls.__new__(cls)
        obj._m = m
        return obj

    @property
    def shape(self) -> tuple[int, int]:
        return self._m.shape

    @property
    def block(self) -> tuple[int, int]:
        return self._m.block

    @property
    def nnz(self) -> int:
        """Stored values (for BSR, zeros inside kept blocks count)."""
        return self._m.stored_values

    @property
    def density(self) -> float:
        m, k = self.shape
        return self.nnz / (m * k) if m * k else 0.0

    @property
    def nbytes(self) -> int:
        """Bytes of the stored arrays (index pointer, indices, values)."""
        return self._m.nbytes

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    @property
    def index_dtype(self) -> np.dtype:
        return np.dtype(self._m.index_dtype)

    @property
    def indptr(self) -> np.ndarray:
        return self._m.indptr

    @property
    def indices(self) -> np.ndarray:
        return self._m.indices

    def to_dense(self) -> np.ndarray:
        return self._m.to_dense()

    def __matmul__(self, x: Any) -> Any:
        from .ops import spmm

        return spmm(self, x)

    def __repr__(self) -> str:
        m, k = self.shape
        extra = "" if self.format == "csr" else f", block={self.block}"
        return (
            f"{type(self).__name__}(shape=({m}, {k}){extra}, nnz={self.nnz}, "
            f"density={self.density:.3f}, index_dtype={self.index_dtype})"
        )

    def __getstate__(self) -> Any:
        raise TypeError(
            f"{type(self).__name__} is not picklable by design; save models with pysparse.save"
        )


class CSRMatrix(SparseMatrixBase):
    """Compressed sparse rows of a float32 matrix W (M x K).

    ``CSRMatrix(indptr, indices, data, shape)`` validates and copies the arrays;
    ``CSRMatrix.from_dense``, ``from_scipy`` and ``from_torch`` build one from
    other representations.
    """

    format = "csr"

    def __init__(self, indptr: Any, indices: Any, data: Any, shape: Any) -> None:
        m, k = _check_shape(shape)
        data = np.asarray(data)
        if data.ndim != 1:
            raise ValueError(f"data must be 1-D, got shape {data.shape}")
        self._m = _core.SparseMatrix.from_arrays(
            (m, k), (1, 1), np.asarray(indptr), np.asarray(indices), data
        )

    @classmethod
    def from_dense(cls, a: Any) -> CSRMatrix:
        """From a 2-D array-like (numpy, torch, lists); exact zeros are dropped."""
        return cls._wrap(_core.SparseMatrix.from_dense(as_float32_matrix(a), 1, 1))

    @classmethod
    def from_scipy(cls, s: Any) -> CSRMatrix:
        """From any scipy.sparse matrix or array (duplicates are summed)."""
        s = s.tocsr()
        if not s.has_canonical_format:
            s = s.copy()
            s.sum_duplicates()
        return cls(s.indptr, s.indices, np.asarray(s.data, dtype=np.float32), s.shape)

    @classmethod
    def from_torch(cls, t: Any) -> CSRMatrix:
        """From a torch tensor: sparse CSR/COO as stored, dense with zeros dropped."""
        if not is_torch_tensor(t):
            raise TypeError(f"expected a torch tensor, got {type(t).__name__}")
        if str(t.layout) == "torch.strided":
            return cls.from_dense(t)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            t = t.detach().cpu().to_sparse_csr()
        return cls(
            t.crow_indices().numpy(),
            t.col_indices().numpy(),
            t.values().numpy().astype(np.float32),
            tuple(t.shape),
        )

    @property
    def data(self) -> np.ndarray:
        return self._m.values

    def to_scipy(self) -> Any:
        import scipy.sparse as sp

        return sp.csr_matrix(
            (self.data.copy(), self.indices.astype(np.int32), self.indptr.astype(np.int64)),
            shape=self.shape,
        )


class BSRMatrix(SparseMatrixBase):
    """Block-sparse rows: blocks of R consecutive output rows by C consecutive inputs.

    ``data`` has shape (nblocks, R, C) like scipy's BSR; ``indices`` hold each
    block's first column. Shapes need not divide by the block: the last block row
    may hang over the bottom (its missing rows are zeros) and the last block of a
    row, when C does not divide K, starts at K - C.
    """

    format = "bsr"

    def __init__(self, indptr: Any, indices: Any, data: Any, shape: Any, block: Any = None) -> None:
        m, k = _check_shape(shape)
        data = np.asarray(data)
        if data.ndim != 3:
            raise ValueError(f"data must be 3-D (nblocks, R, C), got shape {data.shape}")
        r, c = _check_block(block if block is not None else data.shape[1:])
        if data.shape[1:] != (r, c):
            raise ValueError(f"data blocks are {data.shape[1:]}, but block is {(r, c)}")
        if data.dtype != np.float32:
            raise TypeError(f"data must be float32, got {data.dtype}; use data.astype(numpy.float32)")
        internal = np.ascontiguousarray(data.transpose(0, 2, 1)).reshape(-1)
        self._m = _core.SparseMatrix.from_arrays(
            (m, k), (r, c), np.asarray(indptr), np.asarray(indices), internal
        )

    @classmethod
    def from_dense(cls, a: Any, block: Any = (8, 1)) -> BSRMatrix:
        """From a 2-D array-like; blocks whose weights are all zero are dropped."""
        r, c = _check_block(block)
        return cls._wrap(_core.SparseMatrix.from_dense(as_float32_matrix(a), r, c))

    @classmethod
    def from_scipy(cls, s: Any, block: Any = None) -> BSRMatrix:
        """From a scipy.sparse matrix: a BSR one keeps its blocksize, others use ``block``."""
        if block is None:
            block = getattr(s, "blocksize", None)
            if block is None:
                raise ValueError("block is required unless s is a scipy BSR matrix")
        return cls.from_dense(s.toarray(), block=block)

    @property
    def nblocks(self) -> int:
        return self._m.nblocks

    @property
    def data(self) -> np.ndarray:
        r, c = self.block
        return self._m.values.reshape(self.nblocks, c, r).transpose(0, 2, 1)
