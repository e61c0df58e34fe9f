"""Which structured formats a dense weight already has: (R, 1) blocks, N:M groups."""

from __future__ import annotations

import numpy as np

from .._checks import NM_GROUPS

# Unstructured and block candidates are worth timing only up to this density:
# above it, no sparse format can beat a dense GEMM/GEMV (each kept weight costs a
# value plus an index).
MAX_SPARSE_DENSITY = 0.6
# BSR blocks that store at most this many explicit zeros per true nonzero still
# count as the weight's blocks (a "small fill overhead").
MAX_BSR_FILL = 0.25


def sparse_enough(w: np.ndarray) -> bool:
    """Whether W is sparse enough (<= MAX_SPARSE_DENSITY) for CSR, SELL or BSR to pay."""
    return np.count_nonzero(w) <= MAX_SPARSE_DENSITY * max(1, w.size)


def bsr_blocks(w: np.ndarray, max_fill: float = MAX_BSR_FILL) -> list[tuple[tuple[int, int], float]]:
    """The (R, 1) blocks (R in 16, 8, 4, 2) that tile W's nonzeros with at most ``max_fill``
    stored zeros per nonzero, largest R first, each with its fill ((stored - nnz) / nnz)."""
    nz = w != 0
    nnz = int(nz.sum())
    if nnz == 0:
        return []
    rows, cols = nz.shape
    out = []
    for r in (16, 8, 4, 2):
        if r > rows:
            continue
        pad = np.zeros(((rows + r - 1) // r * r, cols), dtype=bool)
        pad[:rows] = nz
        stored = int(pad.reshape(-1, r, cols).any(axis=1).sum()) * r
        # A last block row hanging over the bottom stores no values past the matrix.
        fill = (stored - nnz) / nnz
        if fill <= max_fill + 1e-12:
            out.append(((r, 1), fill))
    return out


def nm_pattern(w: np.ndarray) -> str | None:
    """'N:M' if every M consecutive inputs of each row of W hold at most N nonzeros with
    N/M <= 1/2 (the sparsest such pattern, smaller M on ties), else None."""
    rows, cols = w.shape
    nz = w != 0
    if not nz.any():
        return None
    best: tuple[float, int, int] | None = None
    for m in NM_GROUPS:
        pad = np.zeros((rows, (cols + m - 1) // m * m), dtype=bool)
        pad[:, :cols] = nz
        n = int(pad.reshape(rows, -1, m).sum(axis=2).max())
        if 2 * n <= m and (best is None or n / m < best[0]):
            best = (n / m, n, m)
    return None if best is None else f"{best[1]}:{best[2]}"
