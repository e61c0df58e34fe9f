"""Ranking groups: which groups of weights die, for one layer or a global pool.

Groups are ranked by (tier, score, index): already-pruned groups first (tier
-1), then those a pattern says must go (0), then the rest (1); least important
first within a tier, the lower index first on ties, so every machine picks the
same groups. ``rank_groups`` builds a layer's ``_Ranking`` from its scores and
pattern; ``allocate_global`` splits one target over several layers with one
ranking, each capped.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from .patterns import Pattern

__all__ = ["rank_groups", "allocate_global", "reference_order"]

# When all groups have one size (unstructured, channels, blocks that divide the shape)
# the first k groups are what is needed, not their order: a partition finds them in
# O(n) instead of a full sort; otherwise the full order is built. Rankings made inside
# ``reference_order()`` build the full order everywhere (the reference the tests compare
# the fast path against). A context variable, so the setting ends with its block and
# never reaches another thread.
_REFERENCE = contextvars.ContextVar("pysparse_prune_reference_order", default=False)


@contextlib.contextmanager
def reference_order() -> Iterator[None]:
    """Rankings made inside this block take the full (tier, score, index) order, never the
    partition shortcut: slower, and by construction what the shortcut must reproduce."""
    token = _REFERENCE.set(True)
    try:
        yield
    finally:
        _REFERENCE.reset(token)


def _order(tier: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Every group, sorted by (tier, score, index): least important first."""
    tiers = np.unique(tier)
    if len(tiers) == 1:
        return np.argsort(score, kind="stable")
    parts = []
    for t in tiers:
        idx = np.flatnonzero(tier == t)
        parts.append(idx[np.argsort(score[idx], kind="stable")])
    return np.concatenate(parts)


def _smallest(score: np.ndarray, k: int) -> np.ndarray:
    """Ascending indices of the k smallest scores, the lower index first on ties."""
    n = len(score)
    if k <= 0:
        return np.empty(0, np.intp)
    if k >= n:
        return np.arange(n)
    v = np.partition(score, k - 1)[k - 1]  # the k-th smallest value
    take = score < v
    ties = np.flatnonzero(score == v)[: k - int(np.count_nonzero(take))]
    take[ties] = True
    return np.flatnonzero(take)


def _first_k(tier: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """Ascending indices of the first k groups in (tier, score, index) order:
    the set ``np.sort(_order(tier, score)[:k])`` without sorting everything."""
    present = [t for t in (-1, 0, 1) if np.any(tier == t)]  # the tiers _Ranking uses
    if len(present) <= 1:
        return _smallest(score, k)
    take = np.zeros(len(score), bool)
    for t in present:
        if k <= 0:
            break
        in_t = tier == t
        count = int(np.count_nonzero(in_t))
        if k >= count:
            take |= in_t
        else:
            idx = np.flatnonzero(in_t)
            take[idx[_smallest(score[idx], k)]] = True
        k -= count
    return np.flatnonzero(take)


def _count_multiples(size: int, n: int, x: float, strict: bool) -> int:
    """How many of size * 1, size * 2, ..., size * n are < x (``strict``) or <= x."""
    j = min(max(math.floor(x / size), 0), n)
    below = (lambda v: v < x) if strict else (lambda v: v <= x)
    while j > 0 and not below(size * j):  # exact integer-vs-float comparisons fix
        j -= 1  # the float estimate, as searchsorted on the int cumsum would
    while j < n and below(size * (j + 1)):
        j += 1
    return j


@dataclass
class _Ranking:
    """Groups of one layer (or of a global pool): tier (-1 already pruned, 0 must go
    first, 1 others), score, and size: one int when every group has that many weights,
    else an array. ``fast``: equal groups may take the partition shortcut (False inside
    ``reference_order()``)."""

    tiers: np.ndarray
    scores: np.ndarray
    size: int | np.ndarray
    _order: np.ndarray | None = None
    _cums: np.ndarray | None = None
    fast: bool = field(default_factory=lambda: not _REFERENCE.get())

    @property
    def uniform(self) -> bool:
        """Every group has ``size`` weights, and the fast path is on."""
        return isinstance(self.size, int) and self.fast

    @property
    def order(self) -> np.ndarray:
        if self._order is None:
            self._order = _order(self.tiers, self.scores)
        return self._order

    @property
    def sizes(self) -> np.ndarray:
        return np.full(len(self), self.size, np.int64) if isinstance(self.size, int) else self.size

    @property
    def cums(self) -> np.ndarray:
        """Weights pruned if the first k groups (in order) go, k = 1, 2, ... (uneven sizes)."""
        if self._cums is None:
            self._cums = np.cumsum(self.sizes[self.order])
        return self._cums

    def cum(self, k: int) -> int:
        """Weights pruned if the first k groups (in order) go."""
        if k <= 0:
            return 0
        return self.size * k if self.uniform else int(self.cums[k - 1])

    def count_within(self, x: float, strict: bool) -> int:
        """The most leading groups whose total is < x (``strict``) or <= x."""
        if self.uniform:
            return _count_multiples(self.size, len(self), x, strict)  # type: ignore[arg-type]
        return int(np.searchsorted(self.cums, x, side="left" if strict else "right"))

    def choose_k(self, target: float, max_k: int) -> int:
        """How many leading groups to prune so the pruned count is closest to ``target``
        (at most ``max_k``; on a tie, the smaller count)."""
        m = min(len(self), max_k)
        j = min(self.count_within(target, strict=True), m)  # cum(j) < target <= cum(j + 1)
        return j + 1 if j < m and abs(self.cum(j + 1) - target) < abs(self.cum(j) - target) else j

    def cap_k(self, limit: float, max_k: int) -> int:
        """The most leading groups whose total stays within ``limit`` (at most ``max_k``)."""
        return min(self.count_within(limit + 1e-9, strict=False), max_k)

    def first(self, k: int) -> np.ndarray:
        """Ascending indices of the first k groups in order."""
        if self.uniform:
            return _first_k(self.tiers, self.scores, k)
        take = np.zeros(len(self), bool)
        take[self.order[:k]] = True
        return np.flatnonzero(take)

    def weights_in(self, groups: np.ndarray) -> int:
        """Total size of ``groups``."""
        return self.size * len(groups) if isinstance(self.size, int) else int(self.size[groups].sum())

    def __len__(self) -> int:
        return len(self.scores)

    @staticmethod
    def concat(parts: list[_Ranking]) -> _Ranking:
        sizes = {p.size for p in parts if isinstance(p.size, int)}
        size: int | np.ndarray
        if len(sizes) == 1 and all(isinstance(p.size, int) for p in parts):
            size = sizes.pop()
        else:
            size = np.concatenate([p.sizes for p in parts])
        tiers, scores = np.concatenate([p.tiers for p in parts]), np.concatenate([p.scores for p in parts])
        return _Ranking(tiers, scores, size, fast=all(p.fast for p in parts))


def rank_groups(
    scores: torch.Tensor, alive: torch.Tensor, groups: tuple[torch.Tensor | None, int], pattern: Pattern
) -> _Ranking:
    """The ranking of one layer's groups: ``scores`` and ``alive`` are its W[out, in]
    weight scores and current mask, ``groups`` the pattern's (group ids, count)."""
    gid, ngroups = groups
    size: int | np.ndarray
    if gid is None:
        gscore, galive, size = scores.reshape(-1), alive.reshape(-1), 1
    else:
        flat = gid.reshape(-1)
        gsize = torch.bincount(flat, minlength=ngroups)
        gscore = torch.bincount(flat, weights=scores.reshape(-1).double(), minlength=ngroups) / gsize
        galive = torch.bincount(flat, weights=alive.reshape(-1).double(), minlength=ngroups) > 0
        size = int(gsize[0]) if bool((gsize == gsize[0]).all()) else gsize.numpy()
    tiers = None
    if type(pattern).tiers is not Pattern.tiers:  # only N:M has tiers here
        d = scores.double()
        tiers = pattern.tiers(torch.where(alive, d, torch.full_like(d, -1e300)))
    tier = np.zeros(ngroups, np.int8) if tiers is None else tiers.reshape(-1).numpy().copy()
    tier[~galive.numpy()] = -1
    return _Ranking(tier, gscore.numpy(), size)


def allocate_global(
    ranks: dict[int, _Ranking], numels: dict[int, int], t: float, max_layer_sparsity: float
) -> dict[int, np.ndarray]:
    """Groups to prune per pooled layer (keys of ``ranks``, each of ``numels[i]``
    weights): one ranking over all of them towards ``t`` of their weights, each layer
    capped at ``max_layer_sparsity`` (a capped layer's surplus goes to the others)."""
    pruned: dict[int, np.ndarray] = {}
    limits = {}
    for i, r in ranks.items():
        n, largest = numels[i], r.size
        largest = largest if isinstance(largest, int) else int(largest.max())
        # At most the cap, and never every group: one (the largest, to be safe) survives.
        limits[i] = min(math.floor(max_layer_sparsity * n + 1e-9), n - largest)
    remaining = t * sum(numels[i] for i in ranks)
    pool = list(ranks)
    while pool:
        combo = _Ranking.concat([ranks[i] for i in pool])
        chosen = combo.first(combo.choose_k(remaining, len(combo)))  # ascending
        starts = np.cumsum([0] + [len(ranks[i]) for i in pool])
        cuts = np.searchsorted(chosen, starts)
        mine = {i: chosen[cuts[j] : cuts[j + 1]] - starts[j] for j, i in enumerate(pool)}
        over = [i for i in pool if ranks[i].weights_in(mine[i]) > limits[i]]
        if not over:
            pruned.update(mine)
            break
        for i in over:
            r = ranks[i]
            pruned[i] = r.first(r.cap_k(limits[i], len(r) - 1))
            remaining -= r.weights_in(pruned[i])
            pool.remove(i)
    return pruned
