"""The pruner's fast selection (partition, no sort) picks exactly what the full
(tier, score, index) order picks: same groups, same tie-breaks, same global caps."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pysparse import prune  # noqa: E402
from pysparse.prune import ranking  # noqa: E402
from pysparse.prune.ranking import _first_k, _order, _Ranking  # noqa: E402

nn = torch.nn


def tied_scores(rng, n: int, levels: int, dtype=np.float32) -> np.ndarray:
    """Scores drawn from a few values, with -0.0 beside 0.0, so ties are everywhere."""
    s = rng.integers(0, levels, n).astype(dtype) / 4
    s[rng.random(n) < 0.1] = -0.0
    return s


@pytest.mark.parametrize("tiers", [(0,), (-1, 0), (-1, 0, 1), (0, 1), (-1, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_first_k_is_the_head_of_the_full_order(rng, tiers, dtype):
    for n in (1, 2, 7, 64, 1000):
        tier = rng.choice(np.array(tiers, np.int8), n)
        score = tied_scores(rng, n, levels=5, dtype=dtype)
        order = _order(tier, score)
        assert (np.lexsort((np.arange(n), score, tier)) == order).all()  # ties: lower index first
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n, *rng.integers(0, n + 1, 5).tolist()}):
            got = _first_k(tier, score, k)
            assert (got == np.sort(order[:k])).all(), (n, k)


def test_choose_and_cap_k_for_equal_groups_match_the_cumsum(rng):
    for size in (1, 3, 8, 1024):
        for n in (1, 2, 5, 97):
            uniform = _Ranking(np.zeros(n, np.int8), rng.random(n), size)
            explicit = _Ranking(np.zeros(n, np.int8), uniform.scores, np.full(n, size, np.int64))
            total = size * n
            # Exact multiples, halves (ties between two counts) and their neighbours.
            targets = {0.0, float(total), *(size * x for x in np.arange(0, n + 1, 0.5))}
            targets |= {np.nextafter(t, np.inf) for t in targets} | {np.nextafter(t, -np.inf) for t in targets}
            targets |= set(rng.random(20) * total)
            for t in sorted(targets):
                for max_k in (n, n - 1, n // 2):
                    assert uniform.choose_k(t, max_k) == explicit.choose_k(t, max_k), (size, n, t, max_k)
                    assert uniform.cap_k(t, max_k) == explicit.cap_k(t, max_k), (size, n, t, max_k)


def tied_mlp(seed: int) -> nn.Sequential:
    """Weights from a handful of values (and exact zeros), so many scores tie."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(24, 40), nn.ReLU(), nn.Linear(40, 32), nn.ReLU(), nn.Linear(32, 8))
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.randint(-3, 4, m.weight.shape) / 8)
        model[4].weight.mul_(1e-3)  # a global threshold would empty this layer: the cap binds
    return model


def masks_of(fast: bool, seed: int, **kw) -> list[dict[str, torch.Tensor]]:
    """Masks after each step of a gradual schedule, with weights drifting (and tying) between steps."""
    with contextlib.nullcontext() if fast else ranking.reference_order():
        model = tied_mlp(seed)
        pruner = prune.Pruner(model, schedule=prune.gradual(begin=0, end=4, every=1), **kw)
        gen = torch.Generator().manual_seed(seed)
        seen = []
        for _ in range(5):
            with torch.no_grad():
                for name, m in pruner.layers_.items():
                    w = m.parametrizations.weight.original
                    w.add_(torch.randint(-1, 2, w.shape, generator=gen) / (8000 if name == "4" else 8))
            pruner.step()
            seen.append({k: v.clone() for k, v in pruner.masks_.items()})
    if kw.get("max_layer_sparsity") == 0.8:  # the cap binds: layer 4 stops at 80%
        assert 0.75 <= 1 - seen[-1]["4"].float().mean() <= 0.8
    return seen


@pytest.mark.parametrize(
    "kw",
    [
        dict(pattern="unstructured", scope="layer"),
        dict(pattern="unstructured", scope="global"),
        dict(pattern="unstructured", scope="global", max_layer_sparsity=0.8),
        dict(pattern=(8, 4), scope="global", max_layer_sparsity=0.8),  # every shape divides: equal blocks
        dict(pattern=(8, 4), scope="layer", criterion="l2"),
        dict(pattern="channel", scope="layer"),
        dict(pattern="2:4", scope="global", sparsity=0.6),
    ],
    ids=lambda kw: "-".join(str(v) for v in kw.values()),
)
def test_fast_path_picks_the_reference_masks(kw):
    kw = {"sparsity": 0.85, **kw}
    for seed in (0, 1):
        fast = masks_of(True, seed, **kw)
        reference = masks_of(False, seed, **kw)
        assert fast[0].keys() == reference[0].keys()
        for step, (a, b) in enumerate(zip(fast, reference)):
            for name in a:
                assert torch.equal(a[name], b[name]), f"step {step}, layer {name}"
        assert not torch.equal(fast[0]["0"], fast[-1]["0"])  # the masks did change along the way
