"""Every kernel against a float64 reference and against its scalar twin.

Sizes follow ruy/XNNPACK practice: 1-10, tile-1 / tile / tile+1 around 8 and 64,
odd primes; densities from empty to fully dense; empty rows; every block shape;
uint16 and uint32 column indices; batches around the 8-wide (AVX2) and 16-wide
(AVX-512) vectors, every masked tail of 1-15 columns, and the register tiles up
to AVX-512's 256 columns.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import pysparse as ps
from pysparse import _core

from pstest import F32_PATHS_RTOL, F32_SUM_RTOL, kernel_isa_for, random_nm, random_sparse, relerr

ROWS = [1, 2, 7, 8, 9, 17, 63, 64, 65]
COLS = [1, 3, 8, 31, 64, 97]
DENSITIES = [0.0, 0.01, 0.1, 0.5, 1.0]
BATCHES = [1, 3, 8, 13, 16, 17, 32, 65, 129]
BLOCKS = [(1, 1), (2, 1), (4, 1), (8, 1), (16, 1), (1, 4), (4, 2), (8, 3)]

KERNELS = [k for k in _core.kernels() if k["runnable"]]
SIMD_KERNELS = [k for k in KERNELS if k["isa"] != "scalar"]


# The SELL kernels' "block": 1x1 weights (CSR's) in the SELL-8-sigma layout.
SELL = ("sell", 1)


def make(a, block):
    if block[0] == "nm":
        return ps.NMMatrix.from_dense(a, block[1:])
    if block == SELL:
        return ps.SELLMatrix.from_dense(a)
    return ps.CSRMatrix.from_dense(a) if block == (1, 1) else ps.BSRMatrix.from_dense(a, block=block)


def generate(rng, shape, density, block, empty_rows=0):
    if block[0] == "nm":
        a = random_nm(rng, shape, block[1], block[2], fill=min(1.0, density * 2))
        if empty_rows:
            a[rng.choice(shape[0], size=min(empty_rows, shape[0]), replace=False)] = 0.0
        return a
    if block == SELL:
        block = (1, 1)
    return random_sparse(rng, shape, density, block=block, empty_rows=empty_rows)


def twin(kernel):
    for k in _core.kernels():
        if k["isa"] == "scalar" and (k["format"], k["block_r"], k["batch"]) == (
            kernel["format"],
            kernel["block_r"],
            kernel["batch"],
        ):
            return k["name"]
    raise AssertionError(f"{kernel['name']} has no scalar twin")


NM_PATTERNS = [(1, 2), (2, 2), (1, 4), (2, 4), (3, 4), (1, 8), (2, 8), (4, 8), (8, 8)]


def blocks_for(kernel):
    if kernel["format"] == "csr":
        return [(1, 1)]
    if kernel["format"] == "nm":
        return [("nm", n, m) for n, m in NM_PATTERNS]
    if kernel["format"] == "sell":
        return [SELL]
    r = kernel["block_r"]
    return [(r, 1), (r, 2), (r, 5)]


def test_every_simd_kernel_has_a_scalar_twin():
    for k in _core.kernels():
        if k["isa"] != "scalar":
            twin(k)


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k["name"])
def test_kernel_matches_float64_reference(kernel, rng):
    batches = [1] if kernel["batch"] == "n1" else [2, 3, 8, 9, 11, 15, 16, 17, 31, 47, 64, 65, 129, 257]
    for block in blocks_for(kernel):
        for m, k in itertools.product([1, 7, 16, 17, 33], [5, 8, 61]):
            if block[0] != "nm" and block[1] > k:
                continue
            for density in (0.0, 0.15, 1.0):
                a = generate(rng, (m, k), density, block)
                w = make(a, block)
                bias = rng.standard_normal(m).astype(np.float32)
                for n in batches:
                    x = rng.standard_normal((k, n)).astype(np.float32)
                    ref = a.astype(np.float64) @ x + bias[:, None]
                    y = _core.spmm(w._m, x if n > 1 else x[:, 0], bias, 1, kernel["name"])
                    assert relerr(y.reshape(m, n), ref) <= F32_SUM_RTOL, (block, m, k, density, n)


@pytest.mark.parametrize("kernel", SIMD_KERNELS, ids=lambda k: k["name"])
def test_simd_kernel_matches_scalar_twin(kernel, rng):
    scalar = twin(kernel)
    batches = [1] if kernel["batch"] == "n1" else [2, 5, 7, 8, 13, 15, 16, 17, 24, 33, 63, 64, 65, 130, 271]
    for block in blocks_for(kernel):
        for m, k in [(1, 1), (9, 10), (63, 64), (65, 67), (130, 257)]:
            if block[0] != "nm" and block[1] > k:
                continue
            for density in (0.0, 0.05, 0.5, 1.0):
                a = generate(rng, (m, k), density, block, empty_rows=m // 4)
                w = make(a, block)
                for n in batches:
                    x = rng.standard_normal((k, n)).astype(np.float32)
                    xin = x if n > 1 else x[:, 0]
                    y_simd = _core.spmm(w._m, xin, None, 1, kernel["name"])
                    y_ref = _core.spmm(w._m, xin, None, 1, scalar)
                    assert relerr(y_simd, y_ref) <= F32_PATHS_RTOL, (block, m, k, density, n)


@pytest.mark.parametrize("m", ROWS)
@pytest.mark.parametrize("k", COLS)
@pytest.mark.parametrize("density", DENSITIES)
def test_csr_shapes_and_densities(isa, rng, m, k, density):
    a = random_sparse(rng, (m, k), density)
    w = ps.CSRMatrix.from_dense(a)
    for n in (1, 3, 8, 17):
        x = rng.standard_normal((k, n)).astype(np.float32)
        assert relerr(w @ x, a.astype(np.float64) @ x) <= F32_SUM_RTOL


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("density", DENSITIES)
def test_bsr_blocks_with_ragged_shapes(isa, rng, block, density):
    for m, k in [(7, 9), (8, 8), (17, 33), (65, 70)]:
        a = random_sparse(rng, (m, k), density, block=block)
        w = ps.BSRMatrix.from_dense(a, block=block)
        for n in (1, 8, 17, 129):
            x = rng.standard_normal((k, n)).astype(np.float32)
            assert relerr(w @ x, a.astype(np.float64) @ x) <= F32_SUM_RTOL, (m, k, n)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("block", [(1, 1), (4, 1), (8, 1), (16, 1)])
def test_linear_batches_with_bias(isa, rng, batch, block):
    a = random_sparse(rng, (67, 129), 0.1, block=block, empty_rows=5)
    w = make(a, block)
    bias = rng.standard_normal(67).astype(np.float32)
    x = rng.standard_normal((batch, 129)).astype(np.float32)
    ref = x.astype(np.float64) @ a.T.astype(np.float64) + bias
    assert relerr(ps.linear(x, w, bias), ref) <= F32_SUM_RTOL
    assert relerr(ps.linear(x, w), ref - bias) <= F32_SUM_RTOL


def test_uint32_indices_above_65536_columns(isa, rng):
    k = 70_001
    a = np.zeros((9, k), dtype=np.float32)
    cols = rng.choice(k, size=(9, 40))
    for i in range(9):
        a[i, cols[i]] = rng.standard_normal(40)
    a[:, k - 1] = 1.5  # the last column, where a narrow index would wrap
    for w in (ps.CSRMatrix.from_dense(a), ps.BSRMatrix.from_dense(a, block=(8, 1))):
        assert w.index_dtype == np.uint32
        for n in (1, 5, 16):
            x = rng.standard_normal((k, n)).astype(np.float32)
            assert relerr(w @ x, a.astype(np.float64) @ x) <= F32_SUM_RTOL


def test_uint16_indices_up_to_65536_columns(rng):
    k = 65_536
    a = np.zeros((3, k), dtype=np.float32)
    a[:, [0, 1000, k - 1]] = 2.0
    w = ps.CSRMatrix.from_dense(a)
    assert w.index_dtype == np.uint16
    x = rng.standard_normal(k).astype(np.float32)
    assert relerr(w @ x, a.astype(np.float64) @ x) <= F32_SUM_RTOL


@pytest.mark.parametrize("threads", [1, 2, 3, 4])
@pytest.mark.parametrize("block", [(1, 1), (8, 1)])
def test_every_thread_count_gives_identical_results(isa, rng, threads, block):
    """Each row is computed by one thread, so results are bitwise independent of threads."""
    # Big enough that even batch 1 is split across 4 threads; unbalanced on purpose.
    a = random_sparse(rng, (1001, 257), 0.7, block=block, empty_rows=100)
    a[:40] = rng.standard_normal((40, 257))
    w = make(a, block)
    previous = ps.get_num_threads()
    try:
        ps.set_num_threads(threads)
        for n in (1, 32, 47):
            x = rng.standard_normal((257, n)).astype(np.float32)
            assert _core.testing.threads_for(w._m, n) == threads
            y1 = ps.spmm(w, x, threads=1)
            yt = ps.spmm(w, x)
            np.testing.assert_array_equal(y1, yt)
            assert relerr(yt, a.astype(np.float64) @ x) <= F32_SUM_RTOL
            # A per-call request above the pool size is capped, never drops rows.
            np.testing.assert_array_equal(ps.spmm(w, x, threads=threads + 3), y1)
    finally:
        ps.set_num_threads(previous)


@pytest.mark.parametrize("threads", [2, 3, 4])
@pytest.mark.parametrize("block", [(1, 1), (8, 1), (4, 2)])
@pytest.mark.parametrize("shape", [(1001, 257), (203, 3001), (4099, 7)])
def test_linear_batched_every_thread_count(isa, rng, threads, block, shape):
    """linear (batch > 1) splits the transposes of x and y across threads as well:
    odd widths, boundaries inside cache lines and a K below one line still give
    the single-thread result bit for bit."""
    a = random_sparse(rng, shape, 0.3, block=block, empty_rows=7)
    w = make(a, block)
    previous = ps.get_num_threads()
    try:
        ps.set_num_threads(threads)
        for batch in (3, 11, 17, 129):
            x = rng.standard_normal((batch, shape[1])).astype(np.float32)
            y1 = ps.linear(x, w, threads=1)
            yt = ps.linear(x, w)
            np.testing.assert_array_equal(yt, y1)
            assert relerr(yt, x.astype(np.float64) @ a.T.astype(np.float64)) <= F32_SUM_RTOL
    finally:
        ps.set_num_threads(previous)


def test_default_isa_is_the_best_runnable():
    assert _core.get_isa() == _core.runnable_isas()[0]
    info = ps.cpu_info()
    assert info["isa"] == _core.runnable_isas()[0]
    assert "scalar" in info["runnable"]
    f = info["features"]
    avx2 = f["avx2"] and f["fma"] and f["bmi1"] and "avx2" in info["built"]
    avx512 = avx2 and "avx512" in info["built"] and all(
        f[name] for name in ("avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_os"))
    if avx512:
        assert info["isa"] == "avx512" and info["runnable"][:2] == ["avx512", "avx2"]
        assert info["kernels"]["bsr_4xc_nx"] == "f32_spmm_bsr_4xc_nx__avx512"
        assert info["kernels"]["csr_n1"] == "f32_spmm_csr_n1__avx2"  # no avx512 rung: the avx2 one runs
    elif avx2:
        assert info["isa"] == "avx2"
        assert info["kernels"]["csr_n1"] == "f32_spmm_csr_n1__avx2"


def test_every_slot_runs_the_first_rung_down_that_has_a_kernel():
    """dispatch.h's isa_fallback: avx512 -> avx2 -> scalar, neon -> scalar, for every slot."""
    slots = {}
    for k in _core.kernels():
        slots.setdefault((k["format"], k["block_r"], k["batch"]), {})[k["isa"]] = k["name"]
    previous = _core.get_isa()
    try:
        for name in _core.runnable_isas():
            _core.set_isa(name)
            in_use = ps.cpu_info()["kernels"]
            for (fmt, r, batch), by_isa in slots.items():
                scalar = by_isa["scalar"]
                slot = scalar[len("f32_spmm_"):scalar.index("__")]
                assert in_use[slot] == by_isa[kernel_isa_for(name, by_isa.__contains__)], (name, slot)
    finally:
        _core.set_isa(previous)


@pytest.mark.parametrize("nm", NM_PATTERNS)
@pytest.mark.parametrize("batch", [1, 3, 8, 16, 24, 31, 33])
def test_nm_linear_ragged_shapes(isa, rng, nm, batch):
    for shape in [(1, 1), (7, 9), (8, 8), (17, 30), (65, 67)]:
        a = random_nm(rng, shape, *nm)
        w = ps.NMMatrix.from_dense(a, nm)
        np.testing.assert_array_equal(w.to_dense(), a)
        bias = rng.standard_normal(shape[0]).astype(np.float32)
        x = rng.standard_normal((batch, shape[1])).astype(np.float32)
        assert relerr(ps.linear(x, w, bias), x.astype(np.float64) @ a.T + bias) <= F32_SUM_RTOL


@pytest.mark.parametrize("threads", [1, 2, 3, 4])
def test_nm_thread_counts_identical(isa, rng, threads):
    a = random_nm(rng, (1000, 256), 2, 4)
    w = ps.NMMatrix.from_dense(a, "2:4")
    previous = ps.get_num_threads()
    try:
        ps.set_num_threads(threads)
        for n in (1, 32):
            x = rng.standard_normal((256, n)).astype(np.float32)
            np.testing.assert_array_equal(ps.spmm(w, x), ps.spmm(w, x, threads=1))
    finally:
        ps.set_num_threads(previous)


# --- Non-finite values stay in their own rows -------------------------------
# Dense semantics: an inf or NaN reaches exactly the outputs whose products
# touch it. A masked tail that read the next row's weights once turned an inf
# there into 0 * inf = NaN in this row (issue 16, finding 2).


def test_inf_weight_does_not_leak_into_the_row_before(isa):
    w = ps.CSRMatrix.from_dense(np.array([[1, 0, 0, 0], [np.inf, 0, 0, 0]], np.float32))
    y = w @ np.ones(4, np.float32)
    assert y[0] == 1.0 and y[1] == np.inf


def _poison(rng, a, where, count):
    """a with `count` stored entries set to inf, -inf or NaN (in W) or an x with them."""
    a = a.copy()
    flat = np.flatnonzero(a) if where == "w" else np.arange(a.size)
    for i in rng.choice(flat, size=min(count, len(flat)), replace=False) if len(flat) else []:
        a.flat[i] = rng.choice([np.inf, -np.inf, np.nan])
    return a


def _same_nonfinite(y, ref):
    """Equal NaN and inf positions (inf with its sign); finite parts within tolerance."""
    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    assert np.array_equal(np.isnan(y), np.isnan(ref))
    assert np.array_equal(np.isposinf(y), np.isposinf(ref)) and np.array_equal(np.isneginf(y), np.isneginf(ref))
    fin = np.isfinite(ref)
    return relerr(np.where(fin, y, 0.0), np.where(fin, ref, 0.0))


@pytest.mark.parametrize("kernel", SIMD_KERNELS, ids=lambda k: k["name"])
def test_simd_kernel_nonfinite_pattern_matches_scalar_twin(kernel, rng):
    scalar = twin(kernel)
    batches = [1] if kernel["batch"] == "n1" else [2, 9, 16, 21, 32, 65, 129]
    for block in blocks_for(kernel):
        for m, k in [(2, 4), (9, 10), (33, 64), (65, 300)]:
            if block[0] != "nm" and block[1] > k:
                continue
            for density in (0.1, 0.5, 1.0):
                a = generate(rng, (m, k), density, block, empty_rows=m // 4)
                for where in ("w", "x"):
                    aw = _poison(rng, a, "w", 3) if where == "w" else a
                    w = make(aw, block)
                    for n in batches:
                        x = rng.standard_normal((k, n)).astype(np.float32)
                        if where == "x":
                            x = _poison(rng, x, "x", 2)
                        xin = x if n > 1 else x[:, 0]
                        y_simd = _core.spmm(w._m, xin, None, 1, kernel["name"])
                        y_ref = _core.spmm(w._m, xin, None, 1, scalar)
                        assert _same_nonfinite(y_simd, y_ref) <= F32_PATHS_RTOL, (block, m, k, density, where, n)


@pytest.mark.parametrize("kernel", [k for k in KERNELS if k["format"] in ("csr", "sell")], ids=lambda k: k["name"])
def test_nonfinite_weights_reach_only_their_rows(kernel, rng):
    # With finite x, the float64 dense product is the reference: a row without
    # a non-finite weight must come out finite and right.
    batches = [1] if kernel["batch"] == "n1" else [3, 13, 32, 40]
    block = SELL if kernel["format"] == "sell" else (1, 1)
    for m, k in [(2, 4), (17, 9), (64, 600)]:
        for density in (0.05, 0.3, 1.0):
            a = _poison(rng, random_sparse(rng, (m, k), density), "w", max(1, m // 8))
            w = make(a, block)
            for n in batches:
                x = rng.standard_normal((k, n)).astype(np.float32) + 3.0  # no exact zeros
                with np.errstate(invalid="ignore"):
                    ref = a.astype(np.float64) @ x
                y = _core.spmm(w._m, x if n > 1 else x[:, 0], None, 1, kernel["name"]).reshape(m, n)
                assert _same_nonfinite(y, ref) <= F32_SUM_RTOL, (m, k, density, n)


# --- Results do not depend on the thread count ------------------------------
# The README promises bitwise-identical results for every thread count. A path
# chosen per thread part (CSR's L1 panels at batch >= 32) once broke it for
# rows of uneven density (issue 16, finding 4).


def _uneven(rng, m, k):
    a = np.zeros((m, k), np.float32)
    h = m // 2
    a[:h] = random_sparse(rng, (h, k), 0.4)
    a[h:] = random_sparse(rng, (m - h, k), 0.05)
    return a


@pytest.mark.parametrize("kernel", [k for k in KERNELS if k["batch"] == "nx"], ids=lambda k: k["name"])
def test_results_bitwise_equal_for_every_thread_count(kernel, rng):
    previous = ps.get_num_threads()
    ps.set_num_threads(4)
    try:
        for block in blocks_for(kernel)[:2]:
            a = _uneven(rng, 300, 768)
            if block[0] == "nm":
                a = random_nm(rng, (300, 768), block[1], block[2], fill=0.5)
            w = make(a, block)
            for n in (32, 40, 64):
                x = rng.standard_normal((768, n)).astype(np.float32)
                y1 = _core.spmm(w._m, x, None, 1, kernel["name"])
                for t in (2, 3, 4):
                    assert np.array_equal(y1, _core.spmm(w._m, x, None, t, kernel["name"])), (block, n, t)
    finally:
        ps.set_num_threads(previous)


@pytest.mark.parametrize("fmt", ["csr", "bsr", "sell", "nm"])
def test_linear_bitwise_equal_for_every_thread_count(isa, rng, fmt):
    a = _uneven(rng, 1024, 768)
    if fmt == "nm":
        w = ps.NMMatrix.from_dense(random_nm(rng, (1024, 768), 2, 4), "2:4")
    else:
        w = make(a, {"csr": (1, 1), "bsr": (8, 1), "sell": SELL}[fmt])
    previous = ps.get_num_threads()
    ps.set_num_threads(4)
    try:
        for batch in (1, 32, 64):
            x = rng.standard_normal((batch, 768)).astype(np.float32)
            y1 = ps.linear(x, w, threads=1)
            for t in (2, 3, 4):
                assert np.array_equal(y1, ps.linear(x, w, threads=t)), (batch, t)
    finally:
        ps.set_num_threads(previous)
