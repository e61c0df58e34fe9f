"""Sparse weight matrices: CSR, block-sparse (BSR), N:M and SELL, validated once, in C++.

Each wraps a ``_core.SparseMatrix`` that owns aligned, padded, immutable copies of
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

__all__ = ["SparseMatrixBase", "CSRMatrix", "BSRMatrix", "NMMatrix", "SELLMatrix"]

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
        raise TypeError("use CSRMatrix, BSRMatrix, NMMatrix or SELLMatrix")

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

    # The storage is immutable, so copies may share it: deepcopy of a model that
    # holds pysparse weights works and costs nothing.
    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return self

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


def parse_nm(pattern: Any) -> tuple[int, int]:
    """'2:4' or (2, 4) -> (2, 4), with a clear error for anything else."""
    try:
        if isinstance(pattern, str):
            n, m = (int(v) for v in pattern.split(":"))
        else:
            n, m = (int(v) for v in pattern)
    except (TypeError, ValueError):
        raise ValueError(f"an N:M pattern is 'N:M' like '2:4' or a pair (N, M), got {pattern!r}") from None
    if m not in NM_GROUPS:
        raise ValueError(f"N:M needs M in {NM_GROUPS}, got {n}:{m}")
    if not 1 <= n <= m:
        raise ValueError(f"N:M needs 1 <= N <= M, got {n}:{m}")
    return n, m


NM_GROUPS = (2, 4, 8)


class NMMatrix(SparseMatrixBase):
    """N:M sparsity along rows: every M consecutive inputs of a row keep at most N weights.

    Stored for the kernels: rows in interleaved groups of 8, N slots per group of
    M inputs, a float32 value and a uint8 offset per slot (``data`` and
    ``offsets``, both shaped (ceil(rows / 8), ceil(cols / M), N, 8)). At batch 1
    one register permute picks 8 rows' inputs, so N:M beats dense even at 2:4.
    """

    format = "nm"

    def __init__(self, data: Any, offsets: Any, shape: Any, nm: Any) -> None:
        m_rows, k = _check_shape(shape)
        n, m = parse_nm(nm)
        data = np.asarray(data)
        if data.dtype != np.float32:
            raise TypeError(f"data must be float32, got {data.dtype}; use data.astype(numpy.float32)")
        self._m = _core.SparseMatrix.from_arrays_nm((m_rows, k), n, m, data, np.asarray(offsets))

    @classmethod
    def from_dense(cls, a: Any, nm: Any = "2:4") -> NMMatrix:
        """From a 2-D array-like that is N:M sparse along its rows (ValueError otherwise)."""
        n, m = parse_nm(nm)
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


class SELLMatrix(SparseMatrixBase):
    """An unstructured sparse matrix laid out for the batch-1 kernel (SELL-8-sigma).

    Use it for unstructured weights (what CSR holds) that run at batch 1, such as
    token-by-token decoding or single-request inference: there its kernel was
    6-25% faster than CSR's on the same matrix (AVX2, weights in cache; from DRAM
    CSR can win). At batch > 1 CSR is as
    fast or faster, so keep CSR there; :func:`pysparse.convert` times both and
    picks per layer.

    Sliced ELLPACK: the rows are taken 8 at a time ("slices") and the 8 rows of a
    slice are interleaved, so one vector load fetches one weight of each of 8 rows.
    A slice stores as many slots as its longest row has nonzeros; shorter rows
    are padded with zeros (which the kernels never let touch the result, even
    when X holds inf or NaN). To keep that padding small, rows are first sorted by
    their nonzero count inside windows of sigma = 128 rows, so rows of similar
    length share a slice (about 1.6% padding on a random 90%-sparse 3072x768).
    The permutation is internal: results come back in the original row order.

    ``SELLMatrix(indptr, indices, data, shape)`` takes CSR arrays (validated
    exactly like :class:`CSRMatrix`'s); ``from_dense``, ``from_csr``,
    ``from_scipy`` and ``from_torch`` build one from other representations and
    :meth:`to_csr` goes back. ``nnz`` and ``density`` count the true nonzeros
    (padding excluded; see ``padding``); ``indptr``, ``indices`` and ``data`` are
    the CSR view of the matrix (built on first use and then kept, like
    :meth:`to_csr`'s result: the storage is immutable, so they stay in sync; it
    costs about the matrix's size again), so code written for CSR arrays keeps working; ``block`` is
    (1, 1), as for CSR. ``nbytes`` is the SELL storage (values, indices, slice
    offsets and row order, padding included).
    """

    format = "sell"
    _csr: CSRMatrix | None = None
    _nnz: int | None = None

    def __init__(self, indptr: Any, indices: Any, data: Any, shape: Any) -> None:
        self._m = CSRMatrix(indptr, indices, data, shape)._m.to_sell()

    @classmethod
    def from_csr(cls, csr: CSRMatrix) -> SELLMatrix:
        """The same matrix as a CSRMatrix, in SELL layout."""
        if not isinstance(csr, CSRMatrix):
            raise TypeError(
                f"from_csr needs a pysparse CSRMatrix, got {type(csr).__name__}; "
                "use SELLMatrix.from_dense for dense arrays"
            )
        return cls._wrap(csr._m.to_sell())

    @classmethod
    def from_dense(cls, a: Any) -> SELLMatrix:
        """From a 2-D array-like (numpy, torch, lists); exact zeros are dropped."""
        return cls.from_csr(CSRMatrix.from_dense(a))

    @classmethod
    def from_scipy(cls, s: Any) -> SELLMatrix:
        """From any scipy.sparse matrix or array (duplicates are summed)."""
        return cls.from_csr(CSRMatrix.from_scipy(s))

    @classmethod
    def from_torch(cls, t: Any) -> SELLMatrix:
        """From a torch tensor: sparse CSR/COO as stored, dense with zeros dropped."""
        return cls.from_csr(CSRMatrix.from_torch(t))

    def to_csr(self) -> CSRMatrix:
        """The same matrix as a CSRMatrix (built on first use, then kept and shared: both are immutable)."""
        csr = self._csr
        if csr is None:
            csr = CSRMatrix._wrap(self._m.to_csr())
            self._csr = csr  # a race only builds it twice
        return csr

    def to_scipy(self) -> Any:
        """A scipy.sparse.csr_matrix copy."""
        return self.to_csr().to_scipy()

    @property
    def block(self) -> tuple[int, int]:
        """(1, 1): the matrix is unstructured (the kernels' slices of 8 rows are internal)."""
        return (1, 1)

    @property
    def nnz(self) -> int:
        """True nonzeros (stored zeros of the padding excluded)."""
        n = self._nnz
        if n is None:
            n = self._nnz = int(self._m.row_len.sum(dtype=np.int64))
        return n

    @property
    def padding(self) -> int:
        """Zeros stored to pad the short rows of each slice (and the lanes past the last row)."""
        return self._m.stored_values - self.nnz

    @property
    def indptr(self) -> np.ndarray:
        """CSR row pointers (of the CSR view, see :meth:`to_csr`)."""
        return self.to_csr().indptr

    @property
    def indices(self) -> np.ndarray:
        """CSR column indices (of the CSR view, see :meth:`to_csr`)."""
        return self.to_csr().indices

    @property
    def data(self) -> np.ndarray:
        """CSR values (of the CSR view, see :meth:`to_csr`)."""
        return self.to_csr().data

    def __repr__(self) -> str:
        m, k = self.shape
        return (
            f"SELLMatrix(shape=({m}, {k}), nnz={self.nnz}, density={self.density:.3f}, "
            f"padding={self.padding}, index_dtype={self.index_dtype})"
        )
