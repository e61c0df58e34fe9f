"""BSR: blocks of R consecutive output rows by C consecutive inputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _checks, _core
from .._arrays import as_float32_matrix
from .base import F32, ArraySpec, SparseMatrixBase, file_copies
from .detect import bsr_blocks, sparse_enough

_INDPTR = ("int32", "int64")
_INDEX = ("uint16", "int32", "uint32", "int64")


class BSRMatrix(SparseMatrixBase):
    """Block-sparse rows: blocks of R consecutive output rows by C consecutive inputs.

    ``data`` has shape (nblocks, R, C) like scipy's BSR; ``indices`` hold each
    block's first column. Shapes need not divide by the block: the last block row
    may hang over the bottom (its missing rows are zeros) and the last block of a
    row, when C does not divide K, starts at K - C.
    """

    tag = format = "bsr"

    def __init__(self, indptr: Any, indices: Any, data: Any, shape: Any, block: Any = None) -> None:
        m, k = _checks.shape2(shape)
        data = np.asarray(data)
        if data.ndim != 3:
            raise ValueError(f"data must be 3-D (nblocks, R, C), got shape {data.shape}")
        r, c = _checks.block(block if block is not None else data.shape[1:])
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
        r, c = _checks.block(block)
        return cls._wrap(_core.SparseMatrix.from_dense(as_float32_matrix(a), r, c))

    @classmethod
    def from_scipy(cls, s: Any, block: Any = None) -> BSRMatrix:
        """From a scipy.sparse matrix: a BSR one keeps its blocksize, others use ``block``.

        Built from the nonzeros (never densified), with the blocks ``from_dense``
        would make of ``s.toarray()``: duplicates summed, blocks of exact zeros dropped."""
        if block is None:
            block = getattr(s, "blocksize", None)
            if block is None:
                raise ValueError("block is required unless s is a scipy BSR matrix")
        r, c = _checks.block(block)
        rows, cols = (int(v) for v in s.shape)
        if cols < c:  # at most 63 columns: the dense copy is as small as the input
            return cls.from_dense(s.toarray(), block=(r, c))
        s = s.tocsr()
        if not s.has_canonical_format:
            s = s.copy()
            s.sum_duplicates()
        coo = s.tocoo()
        vals = np.asarray(coo.data, dtype=np.float32)
        keep = vals != 0
        vals = vals[keep]
        row = coo.row[keep].astype(np.int64)
        col = coo.col[keep].astype(np.int64)
        brows = -(-rows // r)
        cblocks = -(-cols // c)
        jb = col // c  # the block that owns the column (the shifted last block owns only the columns past jb * C)
        start = np.minimum(jb * c, cols - c)
        keys, where = np.unique((row // r) * cblocks + jb, return_inverse=True)
        data = np.zeros((len(keys), r, c), dtype=np.float32)
        data[where.reshape(-1), row % r, col - start] = vals
        indptr = np.zeros(brows + 1, dtype=np.int64)
        np.cumsum(np.bincount(keys // cblocks, minlength=brows), out=indptr[1:])
        indices = np.minimum((keys % cblocks) * c, cols - c)
        return cls(indptr, indices, data, (rows, cols), (r, c))

    @property
    def nblocks(self) -> int:
        return self._m.nblocks

    @property
    def data(self) -> np.ndarray:
        r, c = self.block
        return self._m.values.reshape(self.nblocks, c, r).transpose(0, 2, 1)

    # ------------------------------------------------------------------ the format's description
    @property
    def label(self) -> str:
        r, c = self.block
        return f"bsr({r},{c})"

    @classmethod
    def pack(cls, w2d: np.ndarray, *, block: Any = None, **params: Any) -> BSRMatrix:
        """``block`` defaults to the largest (R, 1) block the weight has without fill, else (8, 1)."""
        if block is None:
            found = bsr_blocks(w2d, max_fill=0.0)
            block = found[0][0] if found else (8, 1)
        return cls.from_dense(w2d, block=block)

    @classmethod
    def candidates(cls, w2d: np.ndarray, *, block: Any = None, conv: bool = False) -> list[SparseMatrixBase]:
        """``block``, or the (R, 1) blocks the weight has: the largest without fill and the
        largest with a small fill."""
        if not sparse_enough(w2d):
            return []
        blocks = [(tuple(block), 0.0)] if block is not None else bsr_blocks(w2d)
        exact = [b for b, fill in blocks if fill == 0.0][:1]
        loose = [b for b, _ in blocks if b not in exact][:1]
        return [cls.from_dense(w2d, block=b) for b in exact + loose]

    def file_attrs(self) -> dict[str, Any]:
        return {"block": list(self.block)}

    def to_file_arrays(self) -> dict[str, np.ndarray]:
        return file_copies({"indptr": self.indptr, "indices": self.indices, "data": self.data})

    @classmethod
    def file_specs(cls, attrs: dict[str, Any], rows: int, cols: int) -> dict[str, ArraySpec]:
        if attrs.get("block") is None:
            raise ValueError("format 'bsr' needs the 'block' attribute")
        r, c = attrs["block"]
        return {
            "indptr": ArraySpec(True, _INDPTR, (-(-rows // r) + 1,)),
            "indices": ArraySpec(True, _INDEX, (None,)),
            "data": ArraySpec(True, F32, (None, r, c)),
        }

    @classmethod
    def from_file_arrays(cls, attrs: dict[str, Any], arrays: dict[str, np.ndarray], rows: int, cols: int) -> BSRMatrix:
        return cls(arrays["indptr"], arrays["indices"], arrays["data"], (rows, cols), attrs["block"])
