"""Bad input raises a clear exception: never a crash, never a wrong answer."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import pysparse as ps
from pysparse import _core


@pytest.fixture
def w():
    return ps.CSRMatrix.from_dense(np.eye(4, 6, dtype=np.float32))


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, np.int64, np.bool_, np.complex64])
def test_wrong_dtype(w, dtype):
    with pytest.raises(TypeError, match="float32"):
        ps.linear(np.ones((2, 6), dtype=dtype), w)
    with pytest.raises(TypeError, match="float32"):
        w @ np.ones((6, 2), dtype=dtype)


def test_wrong_ndim_and_shape(w):
    with pytest.raises(ValueError, match="1-D .* or 2-D"):
        ps.linear(np.ones((2, 2, 6), np.float32), w)
    with pytest.raises(ValueError, match="1-D .* or 2-D"):
        ps.linear(np.ones((), np.float32), w)
    with pytest.raises(ValueError, match="shape mismatch"):
        ps.linear(np.ones((2, 5), np.float32), w)
    with pytest.raises(ValueError, match="shape mismatch"):
        w @ np.ones((5, 3), np.float32)
    with pytest.raises(ValueError, match="bias must have shape"):
        ps.linear(np.ones((2, 6), np.float32), w, np.ones(5, np.float32))
    with pytest.raises(TypeError, match="float32"):
        ps.linear(np.ones((2, 6), np.float32), w, np.ones(4))


def test_not_an_array(w):
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        ps.linear([[1.0] * 6], w)
    with pytest.raises(TypeError, match="CSRMatrix, BSRMatrix, NMMatrix or SELLMatrix"):
        ps.linear(np.ones((1, 6), np.float32), np.eye(4, 6, dtype=np.float32))


CSR_OK = dict(indptr=[0, 1, 3], indices=[2, 0, 1], data=[1.0, 2.0, 3.0], shape=(2, 3))


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(indices=[3, 0, 1]), "out of range"),
        (dict(indices=[-1, 0, 1]), "out of range"),
        (dict(indices=[2**40, 0, 1]), "out of range"),
        (dict(indices=[2, 1, 0]), "sorted and unique"),
        (dict(indices=[2, 1, 1]), "sorted and unique"),
        (dict(indptr=[0, 3, 1]), "non-decreasing"),
        (dict(indptr=[1, 1, 3]), r"indptr\[0\] must be 0"),
        (dict(indptr=[0, 3]), "must have 3 entries"),
        (dict(indptr=[0, 1, 4]), "indices must have"),
        (dict(data=[1.0, 2.0]), "data must have 3 values"),
        (dict(indptr=[0.0, 1.0, 3.0]), "integer"),
        (dict(shape=(-2, 3)), "non-negative"),
        (dict(shape=(2, 2**33)), "columns"),
    ],
)
@pytest.mark.parametrize("cls", [ps.CSRMatrix, ps.SELLMatrix])  # SELL takes CSR arrays, checked alike
def test_hostile_csr_arrays(change, message, cls):
    args = {**CSR_OK, **change}
    data = np.asarray(args["data"], dtype=np.float32)
    with pytest.raises((ValueError, TypeError), match=message):
        cls(np.asarray(args["indptr"]), np.asarray(args["indices"]), data, args["shape"])


def test_valid_csr_arrays_accepted():
    w = ps.CSRMatrix(
        np.asarray(CSR_OK["indptr"]), np.asarray(CSR_OK["indices"]), np.float32(CSR_OK["data"]), (2, 3)
    )
    np.testing.assert_array_equal(w.to_dense(), [[0, 0, 1], [2, 3, 0]])


def test_hostile_bsr_arrays():
    data = np.ones((2, 4, 2), np.float32)
    with pytest.raises(ValueError, match="out of range"):  # start + C > K
        ps.BSRMatrix([0, 2], [0, 3], data, (4, 4), (4, 2))
    with pytest.raises(ValueError, match="must have 2 entries"):
        ps.BSRMatrix([0, 1, 2], [0, 2], data, (4, 4), (4, 2))
    with pytest.raises(ValueError, match="blocks are"):
        ps.BSRMatrix([0, 2], [0, 2], data, (4, 4), (8, 2))
    with pytest.raises(TypeError, match="float32"):
        ps.BSRMatrix([0, 2], [0, 2], data.astype(np.float64), (4, 4), (4, 2))
    ok = ps.BSRMatrix([0, 2], [0, 2], data, (4, 4), (4, 2))
    np.testing.assert_array_equal(ok.to_dense(), np.ones((4, 4)))


@pytest.mark.parametrize("block", [(3, 1), (0, 1), (32, 1), (8, 0), (8, 65), "8x1", (8,)])
def test_bad_block(block):
    with pytest.raises(ValueError, match="block"):
        ps.BSRMatrix.from_dense(np.ones((8, 8), np.float32), block=block)


def test_block_wider_than_matrix():
    with pytest.raises(ValueError, match="exceed"):
        ps.BSRMatrix.from_dense(np.ones((8, 3), np.float32), block=(8, 4))


def test_from_dense_rejects_bad_arrays():
    with pytest.raises(ValueError, match="2-D"):
        ps.CSRMatrix.from_dense(np.ones(4, np.float32))
    with pytest.raises(TypeError, match="real numbers"):
        ps.CSRMatrix.from_dense(np.ones((2, 2), np.complex64))


def test_forced_kernel_must_fit(w):
    with pytest.raises(ValueError, match="unknown kernel"):
        _core.spmm(w._m, np.ones(6, np.float32), None, 1, "f32_nope")
    with pytest.raises(ValueError, match="does not fit"):
        _core.spmm(w._m, np.ones((6, 3), np.float32), None, 1, "f32_spmm_csr_n1__scalar")
    with pytest.raises(ValueError, match="does not fit"):
        _core.spmm(w._m, np.ones(6, np.float32), None, 1, "f32_spmm_bsr_8xc_n1__scalar")


def test_set_num_threads_bounds():
    for bad in (0, -3, 10_000):
        with pytest.raises(ValueError, match="threads"):
            ps.set_num_threads(bad)
    with pytest.raises(TypeError):
        ps.set_num_threads(2.0)


def test_set_isa_rejects_unknown_or_unrunnable():
    with pytest.raises(ValueError, match="unknown ISA"):
        _core.set_isa("avx9000")
    for name in ("avx2", "avx512", "neon", "scalar"):
        if name not in _core.runnable_isas():
            with pytest.raises(ValueError, match="not runnable"):
                _core.set_isa(name)


def _run(code, env_isa, cwd):
    import os
    import shlex

    env = {**os.environ, "PYSPARSE_ISA": env_isa}
    # Under qemu-user (.ci/aarch64) the interpreter must be started through the
    # emulator: PYSPARSE_TEST_PYTHON holds that command line.
    python = shlex.split(os.environ.get("PYSPARSE_TEST_PYTHON", "")) or [sys.executable]
    # cwd away from the source tree, so the installed package is what imports.
    return subprocess.run(python + ["-c", code], capture_output=True, text=True, env=env, timeout=300, cwd=cwd)


@pytest.mark.parametrize("name", _core.runnable_isas())
def test_pysparse_isa_env_forces_a_path(name, tmp_path):
    r = _run("import pysparse as ps; print(ps.cpu_info()['isa'])", name, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == name


def test_pysparse_isa_env_bad_value_fails_import_with_reason(tmp_path):
    r = _run("import pysparse", "avx9000", tmp_path)
    assert r.returncode != 0
    assert "unknown ISA 'avx9000'" in r.stderr
