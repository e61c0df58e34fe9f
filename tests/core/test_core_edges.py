"""The edges of the C++ entry points (issue 16's probe): strided and unaligned
inputs, copies that cannot be made, integers past 64 bits, sizes whose storage
count overflows, and scratch that must not stay pinned after a huge call.

Each test here failed (wrong values, a crash, a pybind11 RuntimeError, an
hours-long loop) before the fix it guards.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time

import numpy as np
import pytest

import pysparse as ps
from pysparse import _core

from pstest import F32_SUM_RTOL, random_nm, random_sparse, relerr

FORMATS = ["csr", "bsr", "sell", "nm"]
# The interpreter for child processes: under the aarch64 job, a command line through qemu.
PYTHON = shlex.split(os.environ.get("PYSPARSE_TEST_PYTHON", "")) or [sys.executable]
EMULATED = bool(os.environ.get("PYSPARSE_TEST_PYTHON"))


def build(rng, fmt, m=24, k=20):
    if fmt == "nm":
        a = random_nm(rng, (m, k), 2, 4)
        return a, ps.NMMatrix.from_dense(a, "2:4")
    a = random_sparse(rng, (m, k), 0.4)
    if fmt == "csr":
        return a, ps.CSRMatrix.from_dense(a)
    if fmt == "sell":
        return a, ps.SELLMatrix.from_dense(a)
    return a, ps.BSRMatrix.from_dense(a, block=(8, 1))


# --- Strided columns (finding 1) ----------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_strided_column_of_x(isa, rng, fmt):
    a, w = build(rng, fmt)
    x = rng.standard_normal((20, 3)).astype(np.float32)
    for col in (x[:, :1], x[:, 1:2], x[:, 2:3], x[::-1, :1], x.T.copy().T[:, 1:2]):
        assert col.shape == (20, 1)
        ref = a.astype(np.float64) @ np.ascontiguousarray(col)
        assert relerr(w @ col, ref) <= F32_SUM_RTOL
        assert relerr(_core.spmm(w._m, col), ref) <= F32_SUM_RTOL
    x2 = rng.standard_normal((40, 5)).astype(np.float32)
    col = x2[::2, 3:4]  # both strides unusual
    assert relerr(w @ col, a.astype(np.float64) @ np.ascontiguousarray(col)) <= F32_SUM_RTOL


@pytest.mark.parametrize("fmt", FORMATS)
def test_strided_1d_x_and_linear_rows(isa, rng, fmt):
    a, w = build(rng, fmt)
    x = rng.standard_normal((3, 40)).astype(np.float32)
    v = x[1, ::2]  # 1-D, stride 8 bytes
    assert relerr(w @ v, a.astype(np.float64) @ v) <= F32_SUM_RTOL
    xb = rng.standard_normal((20, 6)).astype(np.float32).T  # (6, 20) F-ordered
    assert relerr(ps.linear(xb, w), xb.astype(np.float64) @ a.T) <= F32_SUM_RTOL
    row = xb[2:3]  # (1, 20) with strides (4, 24)
    assert relerr(ps.linear(row, w), row.astype(np.float64) @ a.T) <= F32_SUM_RTOL


@pytest.mark.parametrize("fmt", FORMATS)
def test_unaligned_inputs_are_read_correctly(rng, fmt):
    a, w = build(rng, fmt)
    raw = rng.standard_normal(64).astype(np.float32)
    buf = b"\0" + raw.tobytes()
    x = np.frombuffer(buf, np.float32, count=20, offset=1)
    assert not x.flags.aligned
    ref = a.astype(np.float64) @ raw[:20]
    assert relerr(w @ x, ref) <= F32_SUM_RTOL
    assert relerr(ps.linear(x, w), ref) <= F32_SUM_RTOL
    xm = np.frombuffer(buf, np.float32, count=60, offset=1).reshape(3, 20)
    assert relerr(ps.linear(xm, w), raw[:60].reshape(3, 20).astype(np.float64) @ a.T) <= F32_SUM_RTOL


# --- Copies that cannot be made (finding 3) -------------------------------------
# Each of these killed the interpreter (a null pointer read after a failed
# copy); run in a child so a regression shows as a failure, not a dead suite.

_HUGE = r"""
import numpy as np, pysparse as ps
from pysparse import _core
w = ps.CSRMatrix.from_dense(np.eye(10, dtype=np.float32))
cases = {
    "linear": lambda: ps.linear(np.broadcast_to(np.ones(10, np.float32), (2**40, 10)), w),
    "matmul": lambda: w @ np.broadcast_to(np.ones((10, 1), np.float32), (10, 2**40)),
    "core.linear": lambda: _core.linear(np.broadcast_to(np.ones(10, np.float32), (2**40, 10)), w._m),
    "core.spmm": lambda: _core.spmm(w._m, np.broadcast_to(np.ones((10, 1), np.float32), (10, 2**40))),
    "core.from_dense": lambda: _core.SparseMatrix.from_dense(np.broadcast_to(np.ones(10, np.float32), (2**38, 10))),
    "core.bias": lambda: _core.spmm(w._m, np.ones(10, np.float32), np.broadcast_to(np.float32(1), (10,))),
}
for name, f in cases.items():
    try:
        f()
        print(name, "ok")
    except MemoryError:
        print(name, "MemoryError")
    except ValueError as e:
        print(name, "ValueError", e)
"""


def test_copies_that_cannot_be_made_raise_memory_error():
    out = subprocess.run([*PYTHON, "-c", _HUGE], capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    for name in ("linear", "matmul", "core.linear", "core.spmm", "core.from_dense"):
        assert lines[name].startswith(("MemoryError", "ValueError")), (name, lines[name])
    assert lines["core.bias"] == "ok"  # a broadcast bias of the right size is copied, not refused


# --- Integers and sizes past the limits (findings 6, 7) -------------------------


def test_shapes_past_64_bits_raise_value_error():
    e = np.zeros(0, np.int64)
    with pytest.raises(ValueError, match="shape"):
        _core.SparseMatrix.from_arrays((2**63, 4), (1, 1), np.zeros(2, np.int64), e, np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="shape"):
        _core.SparseMatrix.from_arrays((4, 2**70), (1, 1), np.zeros(5, np.int64), e, np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="shape"):
        _core.SparseMatrix.from_arrays_nm((-1, 4), 2, 4, np.zeros(0, np.float32), e)
    with pytest.raises(TypeError, match="int"):
        _core.SparseMatrix.from_arrays((4.0, 4), (1, 1), np.zeros(5, np.int64), e, np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="rows"):
        _core.SparseMatrix.from_arrays((2**27, 4), (1, 1), np.zeros(2, np.int64), e, np.zeros(0, np.float32))


def test_thread_counts_past_int_raise_value_error():
    w = ps.CSRMatrix.from_dense(np.eye(4, dtype=np.float32))
    for bad in (2**40, 2**70, -1, 257):
        with pytest.raises(ValueError, match="threads"):
            _core.set_num_threads(bad)
        with pytest.raises(ValueError, match="threads"):
            _core.spmm(w._m, np.ones(4, np.float32), None, bad)
        with pytest.raises(ValueError, match="threads"):
            _core.linear(np.ones(4, np.float32), w._m, None, bad)
    with pytest.raises(TypeError, match="int"):
        _core.set_num_threads(True)


def test_nm_storage_count_that_overflows_is_refused_before_allocating():
    # block rows x groups x N x 8 passes 2**63 here; and a 37-entry input for a
    # 65535-square shape once allocated (and zeroed) 5 GB before it was refused.
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="N:M arrays must hold"):
        _core.SparseMatrix.from_arrays_nm((2**26, 2**32 - 1), 2, 2, np.zeros(0, np.float32), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="N:M arrays must hold"):
        ps.NMMatrix(np.ones(37, np.float32), np.zeros(37, np.uint8), (65535, 65535), (2, 8))
    assert time.perf_counter() - t0 < 1.0


def test_tall_zero_column_matrices_are_refused_not_allocated():
    # rows x 0 has no values to bound it: the row pointers alone would be 16 GB.
    for make in (ps.CSRMatrix.from_dense, ps.SELLMatrix.from_dense):
        with pytest.raises(ValueError, match="rows"):
            make(np.zeros((2**31 - 1, 0), np.float32))
    with pytest.raises(ValueError, match="rows"):
        ps.BSRMatrix.from_dense(np.zeros((2**31 - 1, 0), np.float32), block=(1, 1))


def test_zero_column_matrices_build_fast():
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="rows"):
        ps.NMMatrix.from_dense(np.zeros((2**40, 0), np.float32), "2:4")
    w = ps.NMMatrix.from_dense(np.zeros((2**20, 0), np.float32), "2:4")
    assert w.shape == (2**20, 0) and w.nnz == 0
    assert time.perf_counter() - t0 < 5.0


def test_uint64_indices_above_int64_are_out_of_range():
    with pytest.raises(ValueError, match="out of range"):
        _core.SparseMatrix.from_arrays(
            (1, 4), (1, 1), np.array([0, 1]), np.array([2**64 - 1], np.uint64), np.ones(1, np.float32)
        )


# --- Scratch is released after a huge call (finding 7) --------------------------

_SCRATCH = r"""
import numpy as np, pysparse as ps
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
w = ps.CSRMatrix.from_dense(np.eye(2048, dtype=np.float32))
x = np.ones((8192, 2048), np.float32)   # 64 MiB in, 64 MiB out, 128 MiB scratch
ps.linear(x[:64], w, threads=1)
base = rss()
y = ps.linear(x, w, threads=1)
assert float(y[5, 5]) == 1.0
del y
print(rss() - base)
"""


@pytest.mark.skipif(EMULATED, reason="under qemu-user the RSS is the emulator's, not the guest's allocations")
def test_linear_scratch_does_not_stay_after_a_huge_call():
    out = subprocess.run([*PYTHON, "-c", _SCRATCH], capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    grown = int(out.stdout.strip())
    assert grown < 48 * 2**20, f"RSS stayed {grown / 2**20:.0f} MiB above the baseline after the call"
