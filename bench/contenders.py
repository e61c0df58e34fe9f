"""The contenders of one kernel-benchmark cell, built from the same pruned weights, and
their check against float64 (timing them: harness.py).

Every contender computes y = x @ W.T for x (batch, K) and W (M, K), the
nn.Linear convention.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import pysparse as ps

CHECK_RTOL = 1e-4  # every contender's output against a float64 reference
AA = "torch_dense_again"  # the A/A contender (see build_cell)


def prune_unstructured(rng: np.random.Generator, w: np.ndarray, sparsity: float) -> np.ndarray:
    """Zero the smallest |w|: exactly round(sparsity * size) weights."""
    k = int(round(sparsity * w.size))
    out = w.copy()
    if k:
        out.reshape(-1)[np.argpartition(np.abs(w).reshape(-1), k - 1)[:k]] = 0.0
    return out


def prune_blocks(w: np.ndarray, sparsity: float, block: tuple[int, int] = (8, 1)) -> np.ndarray:
    """Zero the (R, C) blocks of W[out, in] with the smallest L2 norm."""
    r, c = block
    m, k = w.shape
    pad = np.zeros(((m + r - 1) // r * r, (k + c - 1) // c * c), dtype=w.dtype)
    pad[:m, :k] = w
    norms = np.sqrt((pad.reshape(pad.shape[0] // r, r, pad.shape[1] // c, c) ** 2).sum(axis=(1, 3)))
    n = int(round(sparsity * norms.size))
    keep = np.ones(norms.size, dtype=bool)
    if n:
        keep[np.argpartition(norms.reshape(-1), n - 1)[:n]] = False
    mask = np.kron(keep.reshape(norms.shape), np.ones((r, c), dtype=bool))[:m, :k]
    return np.where(mask, w, 0.0).astype(w.dtype)


def prune_nm(w: np.ndarray, n: int, m: int) -> np.ndarray:
    """Keep the n largest |w| of every m consecutive inputs of each row (K % m == 0)."""
    rows, cols = w.shape
    g = np.abs(w).reshape(rows, cols // m, m)
    keep = np.zeros_like(g, dtype=bool)
    np.put_along_axis(keep, np.argsort(-g, axis=2)[:, :, :n], True, axis=2)
    return (w.reshape(rows, cols // m, m) * keep).reshape(rows, cols)


NM_AT = {0.5: (2, 4), 0.75: (1, 4), 0.875: (1, 8)}


@dataclass
class Contender:
    name: str
    fn: Callable[[], Any]
    weights: str  # which pruned matrix it runs: "unstructured" | "block8x1" | "nm"
    nnz: int


@dataclass
class Cell:
    shape: tuple[int, int]
    sparsity: float
    batch: int
    threads: int
    contenders: list[Contender] = field(default_factory=list)
    refs: dict[str, np.ndarray] = field(default_factory=dict)


def build_cell(rng: np.random.Generator, shape: tuple[int, int], sparsity: float, batch: int, threads: int) -> Cell:
    import scipy.sparse as sp
    import torch

    m, k = shape
    dense = rng.standard_normal((m, k)).astype(np.float32)
    weights = {"unstructured": prune_unstructured(rng, dense, sparsity), "block8x1": prune_blocks(dense, sparsity)}
    if sparsity in NM_AT and k % NM_AT[sparsity][1] == 0:
        weights["nm"] = prune_nm(dense, *NM_AT[sparsity])
    x = rng.standard_normal((batch, k)).astype(np.float32)
    xt = torch.from_numpy(x)
    cell = Cell(shape, sparsity, batch, threads)
    cell.refs = {key: x.astype(np.float64) @ w.T.astype(np.float64) for key, w in weights.items()}

    wu = weights["unstructured"]
    wt = torch.from_numpy(wu)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        wt_csr = wt.to_sparse_csr()  # int64 indices by default; int32 is what MKL takes fastest
        wt_csr = torch.sparse_csr_tensor(
            wt_csr.crow_indices().to(torch.int32),
            wt_csr.col_indices().to(torch.int32),
            wt_csr.values(),
            wt.shape,
            check_invariants=True,
        )
    w_sp = sp.csr_matrix(wu)
    xT = np.ascontiguousarray(x.T)
    nnz_u = int(np.count_nonzero(wu))
    csr = ps.CSRMatrix.from_dense(wu)
    sell = ps.SELLMatrix.from_csr(csr)
    bsr_u = ps.BSRMatrix.from_dense(wu, block=(8, 1))
    bsr = ps.BSRMatrix.from_dense(weights["block8x1"], block=(8, 1))
    add = cell.contenders.append
    add(Contender("torch_dense", lambda: torch.nn.functional.linear(xt, wt), "unstructured", m * k))
    # A/A: the baseline again, under another name. Its "speedup" would be 1.00
    # on a quiet machine; how far it strays is this cell's noise.
    add(Contender(AA, lambda: torch.nn.functional.linear(xt, wt), "unstructured", m * k))
    add(Contender("numpy_dense", lambda: x @ wu.T, "unstructured", m * k))
    add(Contender("torch_csr", lambda: torch.mm(wt_csr, xt.T).T, "unstructured", nnz_u))
    add(Contender("scipy_csr", lambda: (w_sp @ xT).T, "unstructured", nnz_u))
    add(Contender("pysparse_csr", lambda: ps.linear(x, csr), "unstructured", nnz_u))
    add(Contender("pysparse_sell", lambda: ps.linear(x, sell), "unstructured", nnz_u))
    add(Contender("pysparse_bsr8x1_unstructured", lambda: ps.linear(x, bsr_u), "unstructured", nnz_u))
    add(Contender("pysparse_bsr8x1", lambda: ps.linear(x, bsr), "block8x1", int(np.count_nonzero(weights["block8x1"]))))
    if threads == 1:
        # The same kernels on 2 threads, inside the 1-thread cell: the scaling
        # ratio then comes from the same interleaved rounds.
        def two(fn):
            def run():
                ps.set_num_threads(2)
                try:
                    return fn()
                finally:
                    ps.set_num_threads(1)

            return run

        # The control for the 2-thread figures: torch dense (MKL) on 2 threads in
        # the same rounds. On this shared VM the second vCPU comes and goes; when
        # MKL does not scale either, the machine did not give us a second core.
        def torch_two():
            torch.set_num_threads(2)
            try:
                return torch.nn.functional.linear(xt, wt)
            finally:
                torch.set_num_threads(1)

        add(Contender("torch_dense@2t", torch_two, "unstructured", m * k))
        add(Contender("pysparse_csr@2t", two(lambda: ps.linear(x, csr)), "unstructured", nnz_u))
        add(Contender("pysparse_sell@2t", two(lambda: ps.linear(x, sell)), "unstructured", nnz_u))
        add(Contender("pysparse_bsr8x1@2t", two(lambda: ps.linear(x, bsr)), "block8x1", int(np.count_nonzero(weights["block8x1"]))))
    if "nm" in weights:
        n_, m_ = NM_AT[sparsity]
        nm = ps.NMMatrix.from_dense(weights["nm"], (n_, m_))
        add(Contender(f"pysparse_nm{n_}:{m_}", lambda: ps.linear(x, nm), "nm", int(np.count_nonzero(weights["nm"]))))
    return cell


def check(cell: Cell) -> None:
    """A benchmark of a wrong answer is void: every contender against float64."""
    for c in cell.contenders:
        y = np.asarray(c.fn(), dtype=np.float64)
        ref = cell.refs[c.weights]
        err = np.max(np.abs(y - ref)) / max(np.max(np.abs(ref)), 1e-30)
        if not err <= CHECK_RTOL:
            raise AssertionError(f"{c.name} is wrong on {cell.shape} s={cell.sparsity} b={cell.batch}: rel err {err:.2e}")
