"""spmm / linear / W @ X: numpy and torch inputs, layouts, bias, non-finite values."""

from __future__ import annotations

import numpy as np
import pytest

import pysparse as ps

from pstest import F32_SUM_RTOL, random_sparse, relerr


@pytest.fixture
def problem(rng):
    a = random_sparse(rng, (37, 53), 0.2, empty_rows=3)
    x = rng.standard_normal((11, 53)).astype(np.float32)
    bias = rng.standard_normal(37).astype(np.float32)
    return a, x, bias


def test_matmul_vector_and_matrix(problem, isa):
    a, x, _ = problem
    w = ps.CSRMatrix.from_dense(a)
    y1 = w @ x[0]
    assert y1.shape == (37,) and y1.dtype == np.float32
    assert relerr(y1, a.astype(np.float64) @ x[0]) <= F32_SUM_RTOL
    y = w @ x.T
    assert y.shape == (37, 11)
    assert relerr(y, a.astype(np.float64) @ x.T.astype(np.float64)) <= F32_SUM_RTOL


@pytest.mark.parametrize("layout", ["c", "fortran", "strided", "negative", "transposed_view"])
def test_linear_handles_any_numpy_layout(problem, isa, layout):
    a, x, bias = problem
    ref = x.astype(np.float64) @ a.T + bias
    if layout == "fortran":
        x = np.asfortranarray(x)
    elif layout == "strided":
        x = np.repeat(x, 2, axis=1)[:, ::2]
    elif layout == "negative":
        x, ref = x[::-1], ref[::-1]
    elif layout == "transposed_view":
        x = np.ascontiguousarray(x.T).T
    w = ps.BSRMatrix.from_dense(a, block=(4, 1))
    y = ps.linear(x, w, bias)
    assert y.shape == (11, 37) and y.flags.c_contiguous
    assert relerr(y, ref) <= F32_SUM_RTOL


def test_spmm_strided_rows_of_x(problem):
    a, x, _ = problem
    big = np.zeros((53, 20), dtype=np.float32)
    big[:, :11] = x.T
    view = big[:, :11]  # rows of X with stride 20 floats: used without a copy
    w = ps.CSRMatrix.from_dense(a)
    assert relerr(w @ view, a.astype(np.float64) @ x.T) <= F32_SUM_RTOL
    assert relerr(w @ big[:, ::2], a.astype(np.float64) @ big[:, ::2]) <= F32_SUM_RTOL


def test_torch_in_torch_out(problem):
    torch = pytest.importorskip("torch")
    a, x, bias = problem
    w = ps.CSRMatrix.from_dense(a)
    xt = torch.from_numpy(x)
    y = ps.linear(xt, w, torch.from_numpy(bias))
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    ref = torch.nn.functional.linear(xt, torch.from_numpy(a), torch.from_numpy(bias))
    assert relerr(y.numpy(), ref.numpy()) <= F32_SUM_RTOL
    assert isinstance(w @ xt.T, torch.Tensor)
    # Non-contiguous tensors work too.
    assert relerr(ps.linear(xt.T.contiguous().T, w).numpy(), (ref - torch.from_numpy(bias)).numpy()) <= F32_SUM_RTOL


def test_torch_requires_grad_is_refused_in_grad_mode(problem):
    torch = pytest.importorskip("torch")
    a, x, _ = problem
    w = ps.CSRMatrix.from_dense(a)
    xt = torch.from_numpy(x).requires_grad_()
    with pytest.raises(ValueError, match="no_grad"):
        ps.linear(xt, w)
    with torch.no_grad():
        assert ps.linear(xt, w).shape == (11, 37)


def test_nan_and_inf_propagate_through_used_columns(isa):
    a = np.zeros((3, 4), dtype=np.float32)
    a[0, 1] = 2.0  # row 0 reads column 1
    a[1, 2] = 1.0  # row 1 reads column 2
    a[2, 3] = 1.0
    w = ps.CSRMatrix.from_dense(a)
    x = np.array([0.0, np.nan, np.inf, 1.0], dtype=np.float32)
    y = ps.linear(x, w)
    assert np.isnan(y[0]) and np.isposinf(y[1]) and y[2] == 1.0
    bias = np.array([0, -np.inf, 0], dtype=np.float32)
    assert np.isnan(ps.linear(x, w, bias)[1])  # inf + -inf, as dense gives


def test_empty_batch_and_empty_matrix():
    w = ps.CSRMatrix.from_dense(np.zeros((5, 3), dtype=np.float32))
    assert ps.linear(np.zeros((0, 3), np.float32), w).shape == (0, 5)
    np.testing.assert_array_equal(ps.linear(np.ones((2, 3), np.float32), w), np.zeros((2, 5)))
    e = ps.CSRMatrix.from_dense(np.zeros((0, 3), dtype=np.float32))
    assert ps.linear(np.ones((4, 3), np.float32), e).shape == (4, 0)


def test_threads_argument(problem):
    a, x, _ = problem
    w = ps.CSRMatrix.from_dense(a)
    np.testing.assert_array_equal(ps.linear(x, w, threads=1), ps.linear(x, w, threads=2))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            ps.linear(x, w, threads=bad)
