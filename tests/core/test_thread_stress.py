"""Thread stress: many Python threads on shared matrices while the pool is resized; fork after use.

Every call must give the result a lone single-threaded call gives, bit for bit
(README: results do not depend on the thread count), and nothing may crash,
deadlock or raise. Bounded: each test runs for about two seconds.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

import pysparse as ps
from pysparse import _core

from pstest import random_nm, random_sparse

SECONDS = 2.0


@pytest.fixture
def restore_threads():
    n = ps.get_num_threads()
    yield
    ps.set_num_threads(n)


def _cases(rng):
    """(name, matrix, x for linear): every format, batch 1 and a batch of 8; shapes odd on purpose."""
    a = random_sparse(rng, (203, 157), 0.2)
    nm = random_nm(rng, (203, 157), 2, 4)
    mats = {
        "csr": ps.CSRMatrix.from_dense(a),
        "sell": ps.SELLMatrix.from_dense(a),
        "bsr": ps.BSRMatrix.from_dense(random_sparse(rng, (203, 157), 0.3, block=(4, 1)), block=(4, 1)),
        "nm": ps.NMMatrix.from_dense(nm, "2:4"),
    }
    xs = [rng.standard_normal((b, 157)).astype(np.float32) for b in (1, 8)]
    return [(f"{name}-b{x.shape[0]}", w, x) for name, w in mats.items() for x in xs]


def _expected(cases):
    ps.set_num_threads(1)
    return [ps.linear(x, w) for _, w, x in cases], [ps.spmm(w, x.T.copy()) for _, w, x in cases]


def test_threads_share_matrices_while_the_pool_resizes(rng, restore_threads):
    cases = _cases(rng)
    want_lin, want_mm = _expected(cases)
    stop = threading.Event()
    errors: list[str] = []
    calls = [0] * 6

    def worker(slot):
        r = np.random.default_rng(slot)
        try:
            while not stop.is_set():
                i = int(r.integers(len(cases)))
                name, w, x = cases[i]
                t = None if r.random() < 0.5 else int(r.integers(1, 5))
                if r.random() < 0.5:
                    y, want = ps.linear(x, w, threads=t), want_lin[i]
                else:
                    y, want = ps.spmm(w, x.T.copy(), threads=t), want_mm[i]
                if not np.array_equal(y.view(np.uint32), want.view(np.uint32)):
                    errors.append(f"{name} threads={t}: result differs from the single-threaded one")
                    return
                calls[slot] += 1
        except Exception as e:  # noqa: BLE001 - any exception is the failure this test reports
            errors.append(f"{type(e).__name__}: {e}")

    def resizer():
        r = np.random.default_rng(99)
        while not stop.is_set():
            ps.set_num_threads(int(r.integers(1, 5)))
            time.sleep(0.001)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(len(calls))]
    threads.append(threading.Thread(target=resizer, daemon=True))
    for t in threads:
        t.start()
    time.sleep(SECONDS)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a thread hung (deadlock in the pool?)"
    assert not errors, errors[:5]
    assert all(c > 0 for c in calls), calls


def test_one_matrix_many_threads_bitwise(rng, restore_threads):
    """A batch >= 32 product (the panel path) from 8 threads at once equals the 1-thread result."""
    a = random_sparse(rng, (256, 192), 0.3)
    w = ps.CSRMatrix.from_dense(a)
    x = rng.standard_normal((40, 192)).astype(np.float32)
    ps.set_num_threads(1)
    want = ps.linear(x, w)
    ps.set_num_threads(4)
    out: list[np.ndarray] = []
    lock = threading.Lock()

    def run():
        for _ in range(20):
            y = ps.linear(x, w)
            with lock:
                out.append(y)

    ts = [threading.Thread(target=run) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=60)
    assert len(out) == 160
    assert all(np.array_equal(y.view(np.uint32), want.view(np.uint32)) for y in out)


# qemu-user itself aborts when a multi-threaded guest forks (see .ci/aarch64): native only.
@pytest.mark.skipif(not hasattr(os, "fork") or bool(os.environ.get("PYSPARSE_TEST_PYTHON")),
                    reason="no fork here, or an emulator that cannot fork a threaded process")
def test_fork_after_use(rng, restore_threads):
    """A child forked after the pool has run (with worker threads alive) computes the same results."""
    cases = _cases(rng)
    ps.set_num_threads(4)
    want = [ps.linear(x, w) for _, w, x in cases]  # starts the pool's workers
    for threads_in_child in (1, 3):
        pid = os.fork()
        if pid == 0:  # the child: no pytest machinery, only an exit status
            status = 1
            try:
                ps.set_num_threads(threads_in_child)
                ok = all(np.array_equal(ps.linear(x, w), y) for (_, w, x), y in zip(cases, want))
                ok = ok and all(np.array_equal(ps.linear(x, w, threads=2), y) for (_, w, x), y in zip(cases, want))
                status = 0 if ok else 2
            finally:
                os._exit(status)
        deadline = time.monotonic() + 60
        while True:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail(f"the forked child (threads={threads_in_child}) hung: the pool deadlocks after fork")
            time.sleep(0.01)
        assert os.WIFEXITED(st), f"the child died by signal {os.WTERMSIG(st) if os.WIFSIGNALED(st) else '?'}"
        assert os.WEXITSTATUS(st) == 0, "the forked child's results differ from the parent's"
    # and the parent still works after its children
    assert all(np.array_equal(ps.linear(x, w), y) for (_, w, x), y in zip(cases, want))


def _uneven(rng):
    """1024x768 with the top half 40% dense and the bottom half 5%: thread parts of unequal cost."""
    a = rng.standard_normal((1024, 768)).astype(np.float32)
    a[:512][rng.random((512, 768)) > 0.4] = 0.0
    a[512:][rng.random((512, 768)) > 0.05] = 0.0
    return a


@pytest.mark.parametrize("fmt", ["sell", "bsr8x1", "bsr1x4"])
@pytest.mark.parametrize("batch", [1, 32, 64])
def test_uneven_rows_bitwise_across_thread_counts(rng, fmt, batch):
    a = _uneven(rng)
    w = {"sell": lambda: ps.SELLMatrix.from_dense(a), "bsr8x1": lambda: ps.BSRMatrix.from_dense(a, block=(8, 1)),
         "bsr1x4": lambda: ps.BSRMatrix.from_dense(a, block=(1, 4))}[fmt]()
    x = rng.standard_normal((batch, 768)).astype(np.float32)
    y1 = ps.linear(x, w, threads=1)
    for t in (2, 3, 4):
        assert np.array_equal(ps.linear(x, w, threads=t).view(np.uint32), y1.view(np.uint32)), f"threads={t}"


# Issue 16, finding 4: the L1-panel path (AVX2 only, spmm-nx.inl) was chosen per thread part.
@pytest.mark.parametrize("batch", [32, 64])
def test_regression_csr_uneven_rows_bitwise(rng, batch):
    w = ps.CSRMatrix.from_dense(_uneven(rng))
    x = rng.standard_normal((batch, 768)).astype(np.float32)
    y1 = ps.linear(x, w, threads=1)
    for t in (2, 3, 4):
        assert np.array_equal(ps.linear(x, w, threads=t).view(np.uint32), y1.view(np.uint32)), f"threads={t}"
