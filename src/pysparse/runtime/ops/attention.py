"""Attention nodes: ``attention_mask`` (a 0/1 mask -> the additive mask, once per forward) and
``attention`` (multi-head scaled dot-product attention over Q, K, V, ``pysparse.ops.attention``).

``attention`` takes the Linear outputs as they are, (B, S, H*D), so no reshape or
transpose nodes sit between the projections and the fused kernel; the context comes
back as (B, S, H*D), heads concatenated, ready for the output projection.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...ops import transformer as _tf
from .base import Cost, Fn, _tensor

# Added to the score of a padded key: exp() of it underflows to exactly 0, and a row whose keys
# are all padding gets uniform weights (as Hugging Face's finfo.min mask gives), never a NaN.
MASKED = float(np.finfo(np.float32).min)


def _build_attention_mask(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    def run(mask: Any, ids: Any) -> np.ndarray:
        mask, ids = _tensor(mask, node), _tensor(ids, node)
        if mask.shape != ids.shape or mask.ndim != 2:
            raise ValueError(
                f"node {node!r}: attention_mask has shape {mask.shape} but input_ids {ids.shape}; pass one 0/1 "
                "entry per token, (batch, sequence) like input_ids"
            )
        # Two compares, not np.isin: isin sorts, ~45 us per forward at seq 128 (5% of a seq-16 MiniLM run).
        if mask.dtype.kind not in "iu" or ((mask != 0) & (mask != 1)).any():
            raise ValueError(f"node {node!r}: attention_mask must hold only 0 (padding) and 1 (token) integers")
        return np.where(mask != 0, np.float32(0.0), np.float32(MASKED))

    return run


def _build_attention(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    heads, scale = a["num_heads"], a["scale"]

    def run(q: Any, k: Any, v: Any, mask: Any = None) -> np.ndarray:
        q, k, v = (_tensor(t, node, 3) for t in (q, k, v))
        hd = q.shape[2]
        if k.shape != v.shape or k.shape[0] != q.shape[0] or k.shape[2] != hd or hd % heads:
            raise ValueError(
                f"node {node!r}: q {q.shape}, k {k.shape}, v {v.shape} do not make {heads} heads "
                "(needs (B, S, H*D), (B, T, H*D) twice, H*D divisible by num_heads)"
            )
        if any(t.dtype != np.float32 for t in (q, k, v)):
            raise ValueError(f"node {node!r}: q, k and v must be float32")
        if mask is not None:
            mask = _tensor(mask, node)
            if mask.shape != k.shape[:2] or mask.dtype != np.float32:
                raise ValueError(
                    f"node {node!r}: the additive mask has shape {mask.shape} ({mask.dtype}); the keys need "
                    f"float32 {k.shape[:2]}: pass an attention_mask of the shape of input_ids"
                )
        return _tf.attention(q, k, v, heads, mask, scale)

    return run


def _attention_cost(a: dict[str, Any], p: dict[str, np.ndarray], args: Any) -> Cost:
    q, k = args[0], args[1] if len(args) > 1 else None
    if not isinstance(q, np.ndarray) or not isinstance(k, np.ndarray) or q.ndim != 3 or k.ndim != 3:
        return Cost(0)  # the op itself refuses these
    b, s, hd = q.shape
    t = k.shape[1]
    scores = b * a["num_heads"] * s * t
    # The float64 reference: copies of q, k, v and the context, scores and their softmax
    # temporaries (two float32 slots per float64); the products at numpy matmul speed.
    return Cost(b * s * hd, 2 * (3 * b * t * hd + 2 * b * s * hd) + 8 * scores, 2.0 * scores * hd / a["num_heads"] + 15 * scores)
