"""The fp32 epilogue (csrc/epilogue.h): activation= and residual= on _core.linear,
_core.spmm and _core.conv2d_shifted.

The fused call must give the same bits as the unfused one (the product, then the
activation, then the float32 add) on the same ISA: the epilogue runs after the
kernel on the same values, so there is nothing to round differently. relu and
relu6 are checked against numpy, GELU against the standalone GELU kernel (itself
tested against float64 in tests/ops/test_transformer_ops.py). Every ISA (isa
fixture and PYSPARSE_ISA), every thread count, odd sizes, every format, NaN/inf.
"""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

import pysparse as ps
from pysparse import _core
from pysparse import ops

from pstest import make_matrix as make
from pstest import python_command, random_sparse

ACTS = ["none", "relu", "relu6", "gelu_erf", "gelu_tanh"]
FORMATS = ["csr", (4, 1), (8, 1), (2, 1), (1, 4), "sell", "nm"]




def activate(y, act):
    if act == "none":
        return y
    if act == "relu":
        return np.maximum(y, np.float32(0))
    if act == "relu6":
        return np.minimum(np.maximum(y, np.float32(0)), np.float32(6))
    return _core.gelu(np.ascontiguousarray(y), "none" if act == "gelu_erf" else "tanh")


def unfused(y, act, residual):
    out = activate(y, act)
    return out if residual is None else (out + residual).astype(np.float32)


def assert_fused(got, y, act, residual):
    """got == the unfused act(y) + residual. Bit for bit, except that the compiler
    may fuse GELU's last multiply with the residual add into one FMA (one rounding
    instead of two): there, within one rounding of the two terms."""
    want = unfused(y, act, residual)
    if residual is None or not act.startswith("gelu"):
        np.testing.assert_array_equal(got, want)
        return
    a = activate(y, act).astype(np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got[~np.isfinite(want)], want[~np.isfinite(want)])
    ok = np.isfinite(want)
    bound = np.finfo(np.float32).eps * (np.abs(a) + np.abs(residual))[ok]
    assert np.all(np.abs(got[ok].astype(np.float64) - want[ok]) <= bound)


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("batch", [1, 3, 17, 128])
@pytest.mark.parametrize("with_residual", [False, True])
def test_linear_fused_equals_unfused(isa, rng, fmt, act, batch, with_residual):
    m, k = 37, 24
    w = make(rng, (m, k), fmt)
    x = (rng.standard_normal((batch, k)) * 3).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    r = rng.standard_normal((batch, m)).astype(np.float32) if with_residual else None
    y = _core.linear(x, w._m, b)
    assert_fused(_core.linear(x, w._m, b, activation=act, residual=r), y, act, r)
    if batch == 1:  # the 1-D form goes through the batch-1 kernels
        got1 = _core.linear(x[0], w._m, b, activation=act, residual=None if r is None else r[0])
        assert_fused(got1, y[0], act, None if r is None else r[0])


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("n", [1, 5, 16, 65])
def test_spmm_fused_equals_unfused(isa, rng, fmt, act, n):
    m, k = 41, 19
    w = make(rng, (m, k), fmt)
    x = (rng.standard_normal((k, n)) * 3).astype(np.float32)
    r = rng.standard_normal((m, n)).astype(np.float32)
    y = _core.spmm(w._m, x)
    assert_fused(_core.spmm(w._m, x, activation=act, residual=r), y, act, r)
    # A strided view of X (read in place) and a Fortran-ordered residual (copied).
    xs = np.zeros((k, 2 * n), np.float32)
    xs[:, ::2] = x
    assert_fused(_core.spmm(w._m, xs[:, ::2], activation=act, residual=np.asfortranarray(r)), y, act, r)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("images", [1, 3])
def test_conv2d_shifted_fused_equals_unfused(isa, rng, act, images):
    w2d = random_sparse(rng, (6, 4 * 9), 0.5)
    plan = ops.Conv2dPlan(ps.CSRMatrix.from_dense(w2d), kernel_size=3, padding=1)
    m = plan.offset_matrix(4, 9, 2 * 7)
    x = rng.standard_normal((images, 4, 7, 5)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    r = rng.standard_normal((images, 6, 7, 5)).astype(np.float32)
    base = _core.conv2d_shifted(m, x, (3, 3), (1, 1), (1, 1), 2, b)
    got = _core.conv2d_shifted(m, x, (3, 3), (1, 1), (1, 1), 2, b, activation=act, residual=r)
    assert_fused(got, base, act, r)
    got = _core.conv2d_shifted(m, x, (3, 3), (1, 1), (1, 1), 2, b, activation=act)
    np.testing.assert_array_equal(got, activate(base, act))


@pytest.mark.parametrize("fmt", ["csr", (4, 1), "sell", "nm"], ids=str)
@pytest.mark.parametrize("threads", [1, 2, 3, 4])
def test_every_thread_count_gives_the_same_bits(rng, fmt, threads):
    # Large enough that the pool splits it (SELL: several sort windows of 128 rows).
    m, k, batch = 600, 256, 16
    w = make(rng, (m, k), fmt, density=0.2)
    x = rng.standard_normal((batch, k)).astype(np.float32)
    r = rng.standard_normal((batch, m)).astype(np.float32)
    want = _core.linear(x, w._m, None, 1, activation="gelu_erf", residual=r)
    assert_fused(want, _core.linear(x, w._m, None, 1), "gelu_erf", r)
    old = _core.get_num_threads()
    _core.set_num_threads(4)
    try:
        np.testing.assert_array_equal(_core.linear(x, w._m, None, threads, activation="gelu_erf", residual=r), want)
        xt, rt = np.ascontiguousarray(x.T), np.ascontiguousarray(r.T)
        want_t = _core.spmm(w._m, xt, None, 1, activation="gelu_erf", residual=rt)
        np.testing.assert_array_equal(_core.spmm(w._m, xt, None, threads, activation="gelu_erf", residual=rt), want_t)
    finally:
        _core.set_num_threads(old)


@pytest.mark.parametrize("act", ACTS)
def test_non_finite_values(isa, act):
    w = ps.CSRMatrix.from_dense(np.eye(12, dtype=np.float32))
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30, 3.0, -3.0, 6.5, 1e-40, -7.0], np.float32)
    r = np.array([0, 0, 0, np.inf, -np.inf, np.nan, 1, 2, 3, 4, 5, 6], np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        assert_fused(_core.linear(x, w._m, activation=act, residual=r), x, act, r)
        xb, rb = np.tile(x, (9, 1)), np.tile(r, (9, 1))
        assert_fused(_core.linear(xb, w._m, activation=act, residual=rb), xb, act, rb)
    assert np.isnan(_core.linear(x, w._m, activation=act)[0])  # NaN stays NaN through every activation
    if act.startswith("relu"):
        assert _core.linear(x, w._m, activation=act)[2] == 0.0  # relu(-inf); GELU's is NaN, as torch's (-inf * 0)


def test_activation_values_against_float64():
    # The unfused oracle above uses the same GELU kernel: pin the activations themselves too.
    from math import erf, sqrt, tanh, pi

    w = ps.CSRMatrix.from_dense(np.eye(9, dtype=np.float32))
    x = np.array([-8, -3, -1, -0.25, 0, 0.5, 2, 5.5, 7], np.float32)
    ref = {
        "relu": [max(v, 0.0) for v in x.tolist()],
        "relu6": [min(max(v, 0.0), 6.0) for v in x.tolist()],
        "gelu_erf": [v / 2 * (1 + erf(v / sqrt(2))) for v in x.tolist()],
        "gelu_tanh": [v / 2 * (1 + tanh(sqrt(2 / pi) * (v + 0.044715 * v**3))) for v in x.tolist()],
    }
    for act, want in ref.items():
        np.testing.assert_allclose(_core.linear(x, w._m, activation=act), want, rtol=3e-6, atol=1e-6)


def test_pysparse_isa_env_selects_the_epilogue(tmp_path, rng):
    # The epilogue follows PYSPARSE_ISA like the kernels: each forced path gives
    # the in-process result of that path.
    code = (
        "import numpy as np, pysparse as ps; from pysparse import _core\n"
        "a = np.load('in.npz'); w = ps.CSRMatrix.from_dense(a['w'])\n"
        "np.save('out.npy', _core.linear(a['x'], w._m, a['b'], activation='gelu_tanh', residual=a['r']))\n"
    )
    w = random_sparse(rng, (33, 20), 0.4)
    x = rng.standard_normal((7, 20)).astype(np.float32)
    b = rng.standard_normal(33).astype(np.float32)
    r = rng.standard_normal((7, 33)).astype(np.float32)
    np.savez(tmp_path / "in.npz", w=w, x=x, b=b, r=r)
    previous = _core.get_isa()
    try:
        for name in _core.runnable_isas():
            env = dict(os.environ, PYSPARSE_ISA=name)
            subprocess.run([*python_command(), "-c", code], check=True, cwd=tmp_path, env=env, timeout=300)
            _core.set_isa(name)
            want = _core.linear(x, ps.CSRMatrix.from_dense(w)._m, b, activation="gelu_tanh", residual=r)
            np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), want)
    finally:
        _core.set_isa(previous)


def test_bad_input():
    w = ps.CSRMatrix.from_dense(np.eye(4, dtype=np.float32))._m
    x = np.ones((3, 4), np.float32)
    with pytest.raises(TypeError, match="activation must be a str"):
        _core.linear(x, w, activation=None)
    with pytest.raises(ValueError, match="unknown activation 'gelu'.*gelu_erf"):
        _core.linear(x, w, activation="gelu")
    with pytest.raises(ValueError, match=r"residual must have the output's shape \(3, 4\), got \(4, 3\)"):
        _core.linear(x, w, residual=np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"output's shape \(4,\)"):
        _core.linear(x[0], w, residual=np.ones((1, 4), np.float32))
    with pytest.raises(TypeError, match="residual must be float32"):
        _core.linear(x, w, residual=np.ones((3, 4)))
    with pytest.raises(TypeError, match="residual must be a numpy array"):
        _core.spmm(w, x.T, residual=[[1.0] * 3] * 4)
    with pytest.raises(ValueError, match="residual must have the output's shape"):
        _core.spmm(w, x.T, residual=np.ones((4, 4), np.float32))
    with pytest.raises(TypeError):  # keyword-only: no positional slot after kernel
        _core.linear(x, w, None, 0, None, "relu")
