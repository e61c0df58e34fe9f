"""The format registry: tag -> class, the one list convert, export and the runtime loop over."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import SparseMatrixBase
from .bsr import BSRMatrix
from .bsr_int8 import BSRInt8Matrix
from .csr import CSRMatrix
from .dense_int8 import DenseInt8Matrix
from .nm import NMMatrix
from .sell import SELLMatrix

# In convert's candidate order. A weight that stays dense is a plain float32
# numpy array, tagged "dense" where a tag is needed.
FORMATS: dict[str, type[SparseMatrixBase]] = {
    cls.tag: cls for cls in (CSRMatrix, SELLMatrix, BSRMatrix, NMMatrix)
}
# int8 weights (pysparse.formats.int8), lossy: convert times them only with dtype="int8".
INT8_FORMATS: dict[str, type[SparseMatrixBase]] = {cls.tag: cls for cls in (BSRInt8Matrix, DenseInt8Matrix)}
# Every tag a weight (or a model file node) may carry besides "dense".
ALL_FORMATS: dict[str, type[SparseMatrixBase]] = {**FORMATS, **INT8_FORMATS}
DENSE = "dense"  # float32 dense, always


def format_class(tag: str) -> type[SparseMatrixBase]:
    """The class of a format tag ('csr', 'sell', 'bsr', 'nm', 'bsr_int8', 'dense_int8')."""
    cls = ALL_FORMATS.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise ValueError(f"unknown format {tag!r}; the formats are {list(ALL_FORMATS)}")
    return cls


def format_of(weight: Any) -> str:
    """'csr' | 'sell' | 'bsr' | 'nm' for a pysparse matrix, 'dense' for a numpy array."""
    return DENSE if isinstance(weight, np.ndarray) else weight.tag


def describe_format(weight: Any) -> str:
    """A short label: 'csr', 'sell', 'bsr(8,1)', 'nm(2:4)' or 'dense'."""
    return DENSE if isinstance(weight, np.ndarray) else weight.label
