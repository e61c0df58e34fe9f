"""CSR: compressed sparse rows, and the bucket codec CSR (and SELL) weights use in files."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .. import _checks, _core
from .._arrays import as_float32_matrix, is_torch_tensor
from .base import F32, ArraySpec, SparseMatrixBase, file_copies
from .detect import sparse_enough

# CSR in the file: columns split into buckets of 256; per (row, bucket) the count
# of nonzeros (uint16) and per nonzero its column's low byte (uint8). Row
# pointers and full column indices follow from those. That is 5 bytes per
# nonzero (instead of 6 with uint16 indices), which keeps a 90%-sparse layer
# under 0.15x its dense size.
CSR_BUCKET = 256


def bucket_pack(indptr: Any, indices: Any, data: Any, rows: int, cols: int) -> dict[str, np.ndarray]:
    """CSR arrays -> the file's arrays (bucket_nnz, col_lo, data), rows sorted by column."""
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    row = np.repeat(np.arange(rows, dtype=np.int64), np.diff(indptr))
    order = np.lexsort((indices, row))
    indices, row = indices[order], row[order]
    counts = np.zeros((rows, -(-cols // CSR_BUCKET)), dtype=np.uint16)
    np.add.at(counts, (row, indices // CSR_BUCKET), 1)
    return {
        "bucket_nnz": counts,
        "col_lo": (indices % CSR_BUCKET).astype(np.uint8),
        "data": np.ascontiguousarray(np.asarray(data, dtype=np.float32)[order]),
    }


def bucket_unpack(bucket_nnz: np.ndarray, col_lo: np.ndarray, nnz: int) -> tuple[np.ndarray, np.ndarray]:
    """The file's (bucket_nnz, col_lo) -> CSR (indptr, indices); ValueError if they disagree
    (the C++ constructor checks the rest)."""
    counts = bucket_nnz.astype(np.int64)
    if counts.size and int(counts.max()) > CSR_BUCKET:
        raise ValueError(f"a CSR bucket holds more than {CSR_BUCKET} nonzeros")
    total = int(counts.sum())
    if total != nnz or len(col_lo) != nnz:
        raise ValueError(f"CSR bucket counts sum to {total}, but there are {len(col_lo)} indices and {nnz} values")
    rows, nb = counts.shape
    bucket = np.repeat(np.tile(np.arange(nb, dtype=np.int64), rows), counts.ravel())
    indptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(counts.sum(axis=1), out=indptr[1:])
    return indptr, bucket * CSR_BUCKET + col_lo


def bucket_specs(rows: int, cols: int) -> dict[str, ArraySpec]:
    return {
        "bucket_nnz": ArraySpec(True, ("uint16",), (rows, -(-cols // CSR_BUCKET))),
        "col_lo": ArraySpec(True, ("uint8",), (None,)),
        "data": ArraySpec(True, F32, (None,)),
    }


class CSRMatrix(SparseMatrixBase):
    """Compressed sparse rows of a float32 matrix W (M x K).

    ``CSRMatrix(indptr, indices, data, shape)`` validates and copies the arrays;
    ``CSRMatrix.from_dense``, ``from_scipy`` and ``from_torch`` build one from
    other representations.
    """

    tag = format = "csr"

    def __init__(self, indptr: Any, indices: Any, data: Any, shape: Any) -> None:
        m, k = _checks.shape2(shape)
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

    # ------------------------------------------------------------------ the format's description
    @classmethod
    def pack(cls, w2d: np.ndarray, **params: Any) -> CSRMatrix:
        return cls.from_dense(w2d)

    @classmethod
    def candidates(cls, w2d: np.ndarray, *, block: Any = None, conv: bool = False) -> list[SparseMatrixBase]:
        return [cls.from_dense(w2d)] if sparse_enough(w2d) else []

    def to_file_arrays(self) -> dict[str, np.ndarray]:
        return file_copies(bucket_pack(self.indptr, self.indices, self.data, *self.shape))

    @classmethod
    def file_specs(cls, attrs: dict[str, Any], rows: int, cols: int) -> dict[str, ArraySpec]:
        return bucket_specs(rows, cols)

    @classmethod
    def from_file_arrays(cls, attrs: dict[str, Any], arrays: dict[str, np.ndarray], rows: int, cols: int) -> CSRMatrix:
        indptr, indices = bucket_unpack(arrays["bucket_nnz"], arrays["col_lo"], len(arrays["data"]))
        return cls(indptr, indices, arrays["data"], (rows, cols))
