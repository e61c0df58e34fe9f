"""Helpers shared by the tests (importable because pyproject puts tests/ on sys.path)."""

from __future__ import annotations

import numpy as np

# Named tolerances (relative to the largest |reference| entry of a result).
# float32 accumulation over K terms, checked against a float64 reference.
F32_SUM_RTOL = 2e-5
# Two float32 paths (SIMD vs scalar twin) summing in different orders.
F32_PATHS_RTOL = 1e-5


def random_sparse(rng, shape, density, *, block=(1, 1), empty_rows=0):
    """A float32 matrix with the given density of nonzero (R, C) blocks."""
    m, k = shape
    r, c = block
    a = rng.standard_normal((m, k)).astype(np.float32)
    if density >= 1.0:
        return a
    keep = rng.random(((m + r - 1) // r, (k + c - 1) // c)) < density
    mask = np.kron(keep, np.ones((r, c), dtype=bool))[:m, :k]
    a[~mask] = 0.0
    if empty_rows:
        a[rng.choice(m, size=min(empty_rows, m), replace=False)] = 0.0
    return a


def relerr(y, ref):
    y = np.asarray(y, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if ref.size == 0:
        return 0.0
    return float(np.max(np.abs(y - ref)) / max(np.max(np.abs(ref)), 1e-30))


def random_nm(rng, shape, n, m, fill=1.0):
    """A float32 matrix whose rows keep at most n of every m consecutive weights
    (exactly n where fill == 1; fewer, down to none, as fill drops)."""
    rows, cols = shape
    groups = -(-cols // m)
    # Rank m random keys per (row, group); keep the n smallest that exist.
    keys = rng.random((rows, groups, m))
    keys.reshape(rows, -1)[:, cols:] = np.inf  # columns past K never win
    ranks = keys.argsort(axis=2).argsort(axis=2)
    keep = (ranks < n) & np.isfinite(keys) & (rng.random(keys.shape) < fill)
    keep = keep.reshape(rows, -1)[:, :cols]
    a = rng.standard_normal((rows, cols)).astype(np.float32)
    a[~keep] = 0.0
    return a
