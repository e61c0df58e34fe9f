"""Weight matrices: CSR, block-sparse (BSR), N:M and SELL (float32) and bsr_int8 / dense_int8
(int8 with per-row scales), validated once, in C++.

Each wraps a ``_core.SparseMatrix`` that owns aligned, padded, immutable copies of
the arrays, so nothing a caller does to its own arrays afterwards can make a
kernel read out of bounds. Column indices are stored as narrow as the shape
allows (uint16 below 65,537 columns).

One file per format (``csr``, ``sell``, ``bsr``, ``nm``) describes it completely:
tag, label, packing and its model-file arrays. ``FORMATS`` (tag -> class) is the
registry the rest of the package loops over; ``detect`` finds the structure a
dense weight has and ``pack`` packs it into a format by tag.
"""

from __future__ import annotations

from .._checks import BLOCK_ROWS, NM_GROUPS
from .._checks import block as parse_block
from .._checks import nm as parse_nm
from .base import ArraySpec, SparseMatrixBase
from .bsr import BSRMatrix
from .bsr_int8 import BSRInt8Matrix
from .csr import CSR_BUCKET, CSRMatrix
from .dense_int8 import DenseInt8Matrix
from .detect import MAX_BSR_FILL, bsr_blocks, nm_pattern
from .int8 import MAX_INT8_COLS, QuantizedMatrixBase, quantize_rows
from .nm import NMMatrix
from .pack import CHOICES, PACK_CHOICES, pack_weight
from .registry import ALL_FORMATS, DENSE, FORMATS, INT8_FORMATS, describe_format, format_class, format_of
from .sell import SELLMatrix

_check_block = parse_block  # prune/patterns.py's old import, until it uses parse_block

__all__ = [
    "ALL_FORMATS",
    "INT8_FORMATS",
    "PACK_CHOICES",
    "ArraySpec",
    "BLOCK_ROWS",
    "BSRMatrix",
    "BSRInt8Matrix",
    "CHOICES",
    "CSRMatrix",
    "CSR_BUCKET",
    "DENSE",
    "DenseInt8Matrix",
    "FORMATS",
    "MAX_BSR_FILL",
    "MAX_INT8_COLS",
    "NMMatrix",
    "QuantizedMatrixBase",
    "NM_GROUPS",
    "SELLMatrix",
    "SparseMatrixBase",
    "bsr_blocks",
    "describe_format",
    "format_class",
    "format_of",
    "nm_pattern",
    "pack_weight",
    "parse_block",
    "parse_nm",
    "quantize_rows",
]
