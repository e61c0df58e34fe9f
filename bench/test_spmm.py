"""pytest-benchmark view of the kernel benchmark: a representative subset of
report.py's grid (3072x768 at 90% and 50%, batch 1 and 32, one thread), one
benchmark per contender, grouped per cell so pytest-benchmark's table compares
them. The full grid with interleaved rounds and ratios is `python bench/report.py`.
"""

from __future__ import annotations

import numpy as np
import pytest

from contenders import build_cell, check
from harness import threads

pytest.importorskip("pytest_benchmark")

CELLS = [((3072, 768), 0.9, 1), ((3072, 768), 0.9, 32), ((3072, 768), 0.5, 1), ((3072, 768), 0.5, 32)]
_cache: dict = {}


def cell_for(shape, sparsity, batch):
    key = (shape, sparsity, batch)
    if key not in _cache:
        with threads(1):
            c = build_cell(np.random.default_rng(0), shape, sparsity, batch, 1)
            check(c)
        _cache[key] = c
    return _cache[key]


def _ids(cell):
    shape, s, b = cell
    return f"{shape[0]}x{shape[1]}-s{s}-b{b}"


CONTENDERS = [
    "torch_dense",
    "numpy_dense",
    "torch_csr",
    "scipy_csr",
    "pysparse_csr",
    "pysparse_sell",
    "pysparse_bsr8x1",
    "pysparse_nm2:4",
]


# N:M runs where its pattern has the cell's sparsity (2:4 = 50%).
PAIRS = [(cell, name) for cell in CELLS for name in CONTENDERS if not (name.startswith("pysparse_nm") and cell[1] != 0.5)]


@pytest.mark.parametrize("cell, name", PAIRS, ids=[f"{_ids(c)}-{n}" for c, n in PAIRS])
def test_linear(benchmark, cell, name):
    c = cell_for(*cell)
    found = [x for x in c.contenders if x.name == name]
    assert found, f"{name} missing from the cell"
    benchmark.group = _ids(cell)
    benchmark.extra_info.update(nnz=found[0].nnz, weights=found[0].weights)
    with threads(1):
        out = benchmark(found[0].fn)
    assert np.asarray(out).shape == (cell[2], cell[0][0])
