"""The kernel benchmark's grid: shapes x sparsities x batches x threads, full and quick."""

from __future__ import annotations

FULL = dict(
    shapes=[(768, 768), (3072, 768), (768, 3072), (4096, 4096)],
    sparsities=[0.5, 0.7, 0.8, 0.9, 0.95, 0.98],
    batches=[1, 8, 32, 128],
    threads=[1, 2],
    rounds=15,
)
QUICK = dict(shapes=[(3072, 768)], sparsities=[0.5, 0.9], batches=[1, 32], threads=[1, 2], rounds=7)


def cells(cfg: dict) -> list[tuple[tuple[int, int], float, int, int]]:
    """Every (shape, sparsity, batch, threads) of ``cfg``, in the order they run."""
    return [
        (shape, s, b, t)
        for shape in cfg["shapes"]
        for s in cfg["sparsities"]
        for b in cfg["batches"]
        for t in cfg["threads"]
    ]
