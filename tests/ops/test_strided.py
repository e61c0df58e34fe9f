"""Every Python entry point that takes x passes it to the kernels correctly whatever its
strides: sliced, transposed, negative-step and column views, numpy and torch.

The reference is float64 numpy on a contiguous copy. The kernels take any strides
(bindings copy or pass ldx); these tests pin that down at the Python level."""

from __future__ import annotations

import numpy as np
import pytest

import pysparse as ps
from pysparse import ops

from pstest import F32_SUM_RTOL, numpy_conv, random_nm, random_sparse, relerr

M, K = 19, 24


def weights(rng):
    a = random_sparse(rng, (M, K), 0.3)
    nm = random_nm(rng, (M, K), 2, 4)
    return [
        ("csr", ps.CSRMatrix.from_dense(a), a),
        ("sell", ps.SELLMatrix.from_dense(a), a),
        ("bsr4x1", ps.BSRMatrix.from_dense(a, block=(4, 1)), a),
        ("bsr2x4", ps.BSRMatrix.from_dense(a, block=(2, 4)), a),
        ("nm2:4", ps.NMMatrix.from_dense(nm, "2:4"), nm),
    ]


def x_views(rng, k, n):
    """(name, view) pairs of a (k, n) float32 operand with odd strides."""
    big = rng.standard_normal((2 * k + 1, 3 * n + 2)).astype(np.float32)
    views = {
        "rows_and_cols_step": big[1::2, ::3][:k, :n],
        "transposed": rng.standard_normal((n, k)).astype(np.float32).T,
        "negative_step": big[:k, ::-1][:, :n],
        "column_slice": big[:k, 1 : n + 1],
    }
    assert all(v.shape == (k, n) for v in views.values())
    return views


WIDTHS = [1, 3, 9]
# W @ X[:, :1] with X's rows 3 floats apart (strides (12, 4)): the batch-1 kernels once
# read X as if contiguous (issue 16, finding 1); the driver gathers such a column now.


def cases():
    out = []
    for n in WIDTHS:
        for view in ("rows_and_cols_step", "transposed", "negative_step", "column_slice"):
            out.append(pytest.param(n, view, id=f"n{n}-{view}"))
    return out


def _check(y, ref):
    assert y.shape == ref.shape and y.dtype == np.float32
    assert relerr(y, ref) <= F32_SUM_RTOL


def _column_of(rng, k, stride):
    """x of shape (k, 1) whose rows are `stride` floats apart."""
    return rng.standard_normal((k, stride)).astype(np.float32)[:, :1]


@pytest.mark.parametrize("n,view", cases())
def test_spmm_and_matmul_take_any_strides(rng, n, view):
    x = x_views(rng, K, n)[view]
    for name, w, dense in weights(rng):
        ref = dense.astype(np.float64) @ x.astype(np.float64)
        _check(ps.spmm(w, x), ref)
        _check(w @ x, ref)


@pytest.mark.parametrize("n,view", cases())
def test_linear_and_plan_take_any_strides(rng, n, view):
    x = x_views(rng, n, K)[view]
    bias = rng.standard_normal(M).astype(np.float32)
    for name, w, dense in weights(rng):
        ref = x.astype(np.float64) @ dense.T.astype(np.float64) + bias
        _check(ps.linear(x, w, bias), ref)
        _check(ops.LinearPlan(w, bias)(x), ref)


@pytest.mark.parametrize("stride", [2, 3, 7])
def test_spmm_column_view_with_row_stride(rng, stride):
    # The issue-16 case: W @ X[:, :1] with strides (4 * stride, 4).
    x = _column_of(rng, K, stride)
    assert x.strides == (4 * stride, 4)
    for name, w, dense in weights(rng):
        ref = dense.astype(np.float64) @ x.astype(np.float64)
        _check(ps.spmm(w, x), ref)
        _check(w @ x, ref)


def test_one_d_views(rng):
    x = rng.standard_normal(3 * K).astype(np.float32)[::3]
    for name, w, dense in weights(rng):
        _check(ps.spmm(w, x), dense.astype(np.float64) @ x)
        _check(ps.linear(x, w), dense.astype(np.float64) @ x)


@pytest.mark.parametrize("kind", ["sliced", "channels_last", "negative"])
@pytest.mark.parametrize("k,padding,stride", [(1, 0, 1), (3, 1, 1), (3, 1, 2)], ids=["1x1", "3x3", "3x3s2"])
def test_conv2d_and_plan_take_any_strides(rng, kind, k, padding, stride):
    cin, cout = 4, 8
    base = rng.standard_normal((3, 2 * cin, 9, 12)).astype(np.float32)
    if kind == "sliced":
        x = base[:, ::2, :, 1:11]
    elif kind == "channels_last":
        x = np.ascontiguousarray(base[:, :cin].transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    else:
        x = base[:, :cin, ::-1, ::-1]
    w2d = random_sparse(rng, (cout, cin * k * k), 0.4)
    ref = numpy_conv(x, w2d.reshape(cout, cin, k, k), None, stride, padding, 1, 1)
    for w in (ps.CSRMatrix.from_dense(w2d), ps.SELLMatrix.from_dense(w2d), ps.BSRMatrix.from_dense(w2d, block=(4, 1)),
              w2d):
        _check(ps.conv2d(x, w, kernel_size=k, padding=padding, stride=stride), ref)
        _check(ops.Conv2dPlan(w, kernel_size=k, padding=padding, stride=stride)(x), ref)


def test_torch_modules_take_any_strides(rng):
    torch = pytest.importorskip("torch")
    from pysparse.nn import SparseConv2d, SparseLinear

    a = random_sparse(rng, (M, K), 0.3)
    bias = rng.standard_normal(M).astype(np.float32)
    big = torch.from_numpy(rng.standard_normal((11, 3 * K)).astype(np.float32))
    views = [big[:, ::3], big[:, :K], big[:, : 2 * K].reshape(22, K)[::2], torch.from_numpy(
        np.ascontiguousarray(rng.standard_normal((K, 5)).astype(np.float32))).T]
    for fmt in ("csr", "sell", "bsr", "dense"):
        w = ps.formats.pack_weight(a, fmt)
        lin = SparseLinear(w, torch.from_numpy(bias))
        for x in views:
            ref = x.double().numpy() @ a.T.astype(np.float64) + bias
            with torch.no_grad():
                _check(lin(x).numpy(), ref)
                _check(ps.linear(x, w, bias).numpy() if fmt != "dense" else lin(x).numpy(), ref)
    cin, cout = 3, 6
    w2d = random_sparse(rng, (cout, cin * 9), 0.4)
    xs = torch.from_numpy(rng.standard_normal((2, 2 * cin, 8, 10)).astype(np.float32))
    for x in (xs[:, ::2], xs[:, :cin].contiguous(memory_format=torch.channels_last), xs[:, :cin, :, 1:9]):
        ref = numpy_conv(x.numpy(), w2d.reshape(cout, cin, 3, 3), None, 1, 1, 1, 1)
        for fmt in ("csr", "sell", "bsr", "dense"):
            conv = SparseConv2d(ps.formats.pack_weight(w2d, fmt), None, in_channels=cin, out_channels=cout,
                                kernel_size=3, padding=1)
            with torch.no_grad():
                _check(conv(x).numpy(), ref)
