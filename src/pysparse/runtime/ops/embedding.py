"""Embedding nodes: token lookup (``embedding``) and the absolute position table (``position_embedding``).

Both read integer graph inputs (token ids, int64 or int32) and check them before
indexing: an id outside the table is an error naming the node, never a wrap-around
(numpy would take -1 as the last row) or an out-of-bounds read.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..schema import _F32, _Param
from .base import Cost, Fn, _size, _tensor


def _ids(v: Any, node: str, what: str) -> np.ndarray:
    x = _tensor(v, node)
    if x.dtype.kind not in "iu":
        raise ValueError(f"node {node!r}: {what} must be integers (a graph input of dtype int64), got {x.dtype}")
    return x


def _build_embedding(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    table = p["weight"]
    n = a["num_embeddings"]

    def run(ids: Any) -> np.ndarray:
        ids = _ids(ids, node, "token ids")
        if ids.size:
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= n:
                bad = lo if lo < 0 else hi
                raise ValueError(
                    f"node {node!r}: id {bad} is outside the table of {n} rows (ids must be in [0, {n})); "
                    "tokenize with this model's own tokenizer"
                )
        return table[ids]

    return run


def _embedding_params(a: dict[str, Any], where: str) -> dict[str, _Param]:
    return {"weight": _Param(True, _F32, (a["num_embeddings"], a["embedding_dim"]))}


def _embedding_cost(a: dict[str, Any], p: dict[str, np.ndarray], args: Any) -> Cost:
    n = _size(args[0]) if args else 0
    return Cost(n * a["embedding_dim"], 0, 2.0 * n)


def _build_position(node: str, a: dict[str, Any], p: dict[str, np.ndarray]) -> Fn:
    """(B, S, ...) -> the first S rows of the table as a (1, S, C) view, added by the next node."""
    table = p["weight"]
    n = a["num_embeddings"]

    def run(x: Any) -> np.ndarray:
        x = _tensor(x, node)
        if x.ndim < 2:
            raise ValueError(f"node {node!r}: needs an input of shape (batch, sequence, ...), got {x.shape}")
        s = x.shape[1]
        if s > n:
            raise ValueError(
                f"node {node!r}: a sequence of {s} tokens is longer than the position table ({n} positions); "
                f"truncate the inputs to at most {n} tokens (tokenizer truncation=True, max_length={n})"
            )
        return table[None, :s]

    return run


def _position_cost(a: dict[str, Any], p: dict[str, np.ndarray], args: Any) -> Cost:
    return Cost(0, 0, 1.0)  # a view of the file's table
