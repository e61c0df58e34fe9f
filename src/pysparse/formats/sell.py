"""SELL-8-sigma: unstructured weights laid out for the batch-1 kernel."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import ArraySpec, SparseMatrixBase, file_copies
from .csr import CSRMatrix, bucket_pack, bucket_specs
from .detect import sparse_enough


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
    offsets and row order, padding included). In a model file a SELL weight is
    stored as its CSR arrays (the CSR bucket codec) under the tag "sell".
    """

    tag = format = "sell"
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

    def shifted_source(self) -> Any:
        """A CSR copy (the shifted kernels are CSR / BSR ones, and SELL's layout only pays at
        batch 1): it serves only to build the offset matrix, which is what a plan keeps."""
        return self._m.to_csr()

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

    # ------------------------------------------------------------------ the format's description
    @classmethod
    def pack(cls, w2d: np.ndarray, **params: Any) -> SELLMatrix:
        return cls.from_dense(w2d)

    @classmethod
    def candidates(cls, w2d: np.ndarray, *, block: Any = None, conv: bool = False) -> list[SparseMatrixBase]:
        # Only for Linears: convolutions multiply many pixels at once, where CSR is as fast.
        return [cls.from_dense(w2d)] if not conv and sparse_enough(w2d) else []

    def to_file_arrays(self) -> dict[str, np.ndarray]:
        csr = self._m.to_csr()  # not self.to_csr(): saving should not leave a CSR copy cached on the weight
        return file_copies(bucket_pack(csr.indptr, csr.indices, csr.values, *self.shape))

    @classmethod
    def file_specs(cls, attrs: dict[str, Any], rows: int, cols: int) -> dict[str, ArraySpec]:
        return bucket_specs(rows, cols)

    @classmethod
    def from_file_arrays(cls, attrs: dict[str, Any], arrays: dict[str, np.ndarray], rows: int, cols: int) -> SELLMatrix:
        return cls.from_csr(CSRMatrix.from_file_arrays(attrs, arrays, rows, cols))
