"""Dense weight -> a format named by its tag, without measuring."""

from __future__ import annotations

from typing import Any

from .._arrays import as_float32_matrix
from .registry import DENSE, FORMATS, format_class

# What pack_weight (and convert's formats=) take: every registered tag and "dense".
CHOICES = (*FORMATS, DENSE)


def pack_weight(w2d: Any, format: str = "csr", *, block: Any = None, nm: Any = None) -> Any:
    """Pack a 2-D weight (numpy or torch) into ``format``: 'csr', 'sell', 'bsr' (``block``, default
    the largest (R, 1) block the weight has without fill, else (8, 1)), 'nm' (``nm``,
    default detected from the weight) or 'dense' (a C-contiguous float32 numpy array)."""
    if format not in CHOICES:
        raise ValueError(f"format must be one of {CHOICES}, got {format!r}")
    a = as_float32_matrix(w2d, "weight")
    if format == DENSE:
        return a
    return format_class(format).pack(a, block=block, nm=nm)
