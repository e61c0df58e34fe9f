"""Dense weight -> a format named by its tag, without measuring."""

from __future__ import annotations

from typing import Any

from .._arrays import as_float32_matrix
from .registry import DENSE, FORMATS, INT8_FORMATS, format_class

# What convert's formats= takes: every float32 format's tag and "dense".
CHOICES = (*FORMATS, DENSE)
# What pack_weight takes: those and the int8 tags.
PACK_CHOICES = (*CHOICES, *INT8_FORMATS)


def pack_weight(w2d: Any, format: str = "csr", *, block: Any = None, nm: Any = None) -> Any:
    """Pack a 2-D weight (numpy or torch) into ``format``: 'csr', 'sell', 'bsr' (``block``, default
    the largest (R, 1) block the weight has without fill, else (8, 1)), 'nm' (``nm``,
    default detected from the weight), 'dense' (a C-contiguous float32 numpy array), or int8:
    'bsr_int8' (``block`` (R, 4), default (8, 4)) and 'dense_int8' (quantized per row)."""
    if format not in PACK_CHOICES:
        raise ValueError(f"format must be one of {PACK_CHOICES}, got {format!r}")
    a = as_float32_matrix(w2d, "weight")
    if format == DENSE:
        return a
    return format_class(format).pack(a, block=block, nm=nm)
