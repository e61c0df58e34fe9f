"""The thread pool: sizing, concurrent callers, fork."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading

import numpy as np
import pytest

import pysparse as ps
from pysparse import _core

from pstest import F32_SUM_RTOL, make_matrix, random_sparse, relerr


@pytest.fixture
def threads4():
    previous = ps.get_num_threads()
    ps.set_num_threads(4)
    yield
    ps.set_num_threads(previous)


def test_default_threads_is_physical_cores():
    assert 1 <= _core.default_num_threads() <= (os.cpu_count() or 1)
    assert ps.cpu_info()["default_threads"] == _core.default_num_threads()


def test_set_get_round_trip():
    previous = ps.get_num_threads()
    try:
        for n in (1, 3, 2):
            ps.set_num_threads(n)
            assert ps.get_num_threads() == n
            assert ps.cpu_info()["threads"] == n
    finally:
        ps.set_num_threads(previous)


def test_small_work_stays_on_one_thread():
    w = ps.CSRMatrix.from_dense(np.eye(16, dtype=np.float32))
    assert _core.testing.threads_for(w._m, 1) == 1


def test_concurrent_python_threads_get_correct_results(rng, threads4):
    """Python threads call kernels at once (the GIL is released): each gets its own answer."""
    mats = [random_sparse(rng, (257, 300), 0.3, block=b) for b in [(1, 1), (8, 1), (4, 1), (1, 1)]]
    ws = [ps.CSRMatrix.from_dense(a) if i % 2 == 0 else ps.BSRMatrix.from_dense(a, block=(8, 1)) for i, a in enumerate(mats)]
    xs = [rng.standard_normal((b, 300)).astype(np.float32) for b in (1, 32, 5, 64)]
    refs = [x.astype(np.float64) @ a.T for x, a in zip(xs, mats)]
    errors: list[str] = []
    barrier = threading.Barrier(len(ws))

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(60):
            e = relerr(ps.linear(xs[i], ws[i]), refs[i])
            if e > F32_SUM_RTOL:
                errors.append(f"thread {i}: error {e}")
                return

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(ws))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_resize_while_other_threads_compute(rng):
    a = random_sparse(rng, (500, 400), 0.3)
    w = ps.CSRMatrix.from_dense(a)
    x = rng.standard_normal((16, 400)).astype(np.float32)
    ref = x.astype(np.float64) @ a.T
    stop = threading.Event()
    errors: list[float] = []

    def work() -> None:
        while not stop.is_set():
            e = relerr(ps.linear(x, w), ref)
            if e > F32_SUM_RTOL:
                errors.append(e)

    previous = ps.get_num_threads()
    t = threading.Thread(target=work)
    t.start()
    try:
        for n in (1, 3, 2, 4, 1, 2) * 3:
            ps.set_num_threads(n)
    finally:
        stop.set()
        t.join()
        ps.set_num_threads(previous)
    assert not errors


def _child(q, a, x):
    w = ps.CSRMatrix.from_dense(a)
    q.put(ps.linear(x, w))


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_pool_works_in_a_forked_child(rng, threads4):
    a = random_sparse(rng, (400, 300), 0.5)
    x = rng.standard_normal((32, 300)).astype(np.float32)
    w = ps.CSRMatrix.from_dense(a)
    ps.linear(x, w)  # workers exist in the parent before the fork
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q, a, x))
    p.start()
    y = q.get(timeout=60)
    p.join(timeout=60)
    assert p.exitcode == 0
    assert relerr(y, x.astype(np.float64) @ a.T) <= F32_SUM_RTOL


@pytest.mark.parametrize("fmt", ["csr", (4, 1), (8, 1), (16, 1), (2, 1), (1, 4), "sell"], ids=str)
@pytest.mark.parametrize("batch", [31, 32, 63, 64, 128, 130, 257, 520])
def test_linear_split_by_tokens_gives_the_bits_of_one_thread(isa, rng, fmt, batch):
    """Past two of the x86 tile engine's widest tiles of tokens, a multi-thread linear splits x by
    tokens at multiples of that tile (spmm.cc: token_quantum): every column keeps its tile, so
    every thread count must give the one-thread bits, with bias, activation and residual fused;
    batches around the AVX2 and AVX-512 tile widths (16..256 columns by block height)."""
    x = rng.standard_normal((batch, 96)).astype(np.float32)
    x[rng.integers(batch), rng.integers(96)] = np.nan  # one token's row goes NaN, on every thread count
    _check_linear_bits_on_every_thread_count(make_matrix(rng, (200, 96), fmt, density=0.5), x, "gelu_tanh", rng)


def _check_linear_bits_on_every_thread_count(w, x, act, rng):
    """_core.linear with bias, `act` and a residual fused, and plain, on 2-4 threads: the bits of 1
    thread; plain against float64 where finite."""
    m = w.shape[0]
    b = rng.standard_normal(m).astype(np.float32)
    r = rng.standard_normal((x.shape[0], m)).astype(np.float32)
    previous = ps.get_num_threads()
    try:
        ps.set_num_threads(1)
        want = _core.linear(x, w._m, b, activation=act, residual=r)
        ref = x.astype(np.float64) @ w.to_dense().T.astype(np.float64) + b
        ok = np.isfinite(ref)
        plain = _core.linear(x, w._m, b)
        assert relerr(plain[ok], ref[ok]) < F32_SUM_RTOL * 10
        for threads in (2, 3, 4):
            ps.set_num_threads(threads)
            np.testing.assert_array_equal(_core.linear(x, w._m, b, activation=act, residual=r), want)
            np.testing.assert_array_equal(_core.linear(x, w._m, b), plain)
    finally:
        ps.set_num_threads(previous)


@pytest.mark.parametrize("fmt", ["csr", (4, 1), (16, 1), (1, 4), "sell"], ids=str)
@pytest.mark.parametrize("batch", [2, 9, 20])
def test_linear_row_split_with_few_tokens_gives_the_bits_of_one_thread(isa, rng, fmt, batch):
    """Under two widest tiles of tokens a multi-thread linear splits W by rows, and only when each
    thread gets enough work (spmm.cc: kMinRowSplitWork): a layer big enough for 4 threads at a few
    tokens, with bias, activation and residual fused, must give the one-thread bits on every
    thread count (the boundaries on whole cache lines of y's rows)."""
    x = rng.standard_normal((batch, 512)).astype(np.float32)
    x[rng.integers(batch), rng.integers(512)] = np.nan  # one token's row goes NaN, on every thread count
    _check_linear_bits_on_every_thread_count(make_matrix(rng, (1024, 512), fmt, density=0.5), x, "gelu_erf", rng)
