"""The C++ depthwise convolution (_core.dwconv2d, ops.Conv2dPlan's 'depthwise' path) against
numpy float64 and torch: random odd shapes, 3x3 / 5x5 and other sizes, strides 1-3, paddings,
every activation, every ISA, every thread count, non-finite values, and bad input; the blocked
engine (8 channels at a time) bitwise against the planes engine of the same ISA (the same fma
order per output) and against float64 within DW_ATOL."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the torch-free CI (arm64 under qemu): the float64 references still run
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch")

import pysparse as ps
from pysparse import _core
from pysparse.ops.conv import Conv2dPlan

from pstest import kernel_isa_for, python_command

# float32 vs float64, per unit of sum |w x| + |b| of the output (the C++ tests' kDwAtol)
DW_ATOL = 1e-5


def reference(x, w, b, stride, padding, act):
    """float64 depthwise conv (w (C, kh, kw)) and the scale sum |w x| + |b| per output."""
    n, c, h, wd = x.shape
    kh, kw = w.shape[1:]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    ho = (h + 2 * padding[0] - kh) // stride[0] + 1
    wo = (wd + 2 * padding[1] - kw) // stride[1] + 1
    bb = np.zeros(c) if b is None else b.astype(np.float64)
    y = np.broadcast_to(bb[None, :, None, None], (n, c, ho, wo)).copy()
    scale = np.abs(y)
    for i in range(kh):
        for j in range(kw):
            win = xp[:, :, i:i + stride[0] * (ho - 1) + 1:stride[0], j:j + stride[1] * (wo - 1) + 1:stride[1]]
            t = win * w[None, :, i, j, None, None].astype(np.float64)
            y += t
            scale += np.abs(t)
    if act != "none":
        y = np.where(np.isnan(y), y, np.maximum(y, 0.0))
    if act == "relu6":
        y = np.where(np.isnan(y), y, np.minimum(y, 6.0))
    return y, scale


def random_case(rng, nonfinite=False):
    k = int(rng.choice([3, 3, 5, 5, 1, 2, 4, 7]))
    s = int(rng.integers(1, 4))
    p = int(rng.integers(0, 4))
    n, c = int(rng.integers(1, 4)), int(rng.integers(1, 19))
    h = int(rng.integers(max(1, k - 2 * p), 26))
    wd = int(rng.integers(max(1, k - 2 * p), 31))
    x = (rng.standard_normal((n, c, h, wd)) * 3).astype(np.float32)
    if nonfinite:
        flat = x.reshape(-1)
        flat[rng.integers(0, flat.size, 3)] = rng.choice([np.nan, np.inf, -np.inf], 3)
    w = rng.standard_normal((c, k, k)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32) if rng.random() < 0.8 else None
    act = str(rng.choice(["none", "relu", "relu6"]))
    return x, w, b, (s, s), (p, p), act


def check(y, ref, scale, nonfinite):
    assert y.shape == ref.shape and y.dtype == np.float32
    fin = np.isfinite(ref)
    np.testing.assert_array_less(np.abs(y[fin] - ref[fin]), DW_ATOL * scale[fin] + 1e-30)
    if nonfinite:
        # inf - inf may sum in another order: non-finite either way, NaN where the reference is NaN
        # unless an inf of both signs meets
        assert not np.isfinite(y[~fin]).any()
    else:
        assert fin.all()


@pytest.mark.parametrize("trial", range(12))
def test_dwconv_matches_float64(isa, rng, trial):
    nonfinite = trial % 4 == 3
    x, w, b, s, p, act = random_case(rng, nonfinite)
    ref, scale = reference(x, w, b, s, p, act)
    for threads in (1, 2, 3):
        check(_core.dwconv2d(x, w, b, s, p, act, threads), ref, scale, nonfinite)


def test_dwconv_nan_stays_nan_through_relu(isa):
    x = np.zeros((1, 2, 5, 9), np.float32)
    x[0, 1, 2, 4] = np.nan
    w = np.ones((2, 3, 3), np.float32)
    for act in ("none", "relu", "relu6"):
        y = _core.dwconv2d(x, w, None, (1, 1), (1, 1), act)
        assert np.isnan(y[0, 1, 1:4, 3:6]).all() and np.isnan(y).sum() == 9, act  # as torch: relu(nan) is nan


@needs_torch
@pytest.mark.parametrize("k, s", [(3, 1), (3, 2), (5, 1), (5, 2)])
def test_dwconv_matches_torch(isa, rng, k, s):
    # MobileNet-like planes, wide batch, odd sizes
    for n, c, h in ((1, 32, 17), (5, 24, 14), (2, 7, 9)):
        x = rng.standard_normal((n, c, h, h + 3)).astype(np.float32)
        w = rng.standard_normal((c, k, k)).astype(np.float32)
        b = rng.standard_normal(c).astype(np.float32)
        want = F.hardtanh(F.conv2d(torch.from_numpy(x), torch.from_numpy(w[:, None]), torch.from_numpy(b), s, k // 2,
                                   1, c), 0.0, 6.0).numpy()
        got = _core.dwconv2d(x, w, b, (s, s), (k // 2, k // 2), "relu6")
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_dwconv_bitwise_across_threads_and_strided_input(rng):
    x = rng.standard_normal((3, 40, 29, 31)).astype(np.float32)
    w = rng.standard_normal((40, 3, 3)).astype(np.float32)
    base = _core.dwconv2d(x, w, None, (2, 2), (1, 1), "relu", 1)
    for threads in range(2, 5):
        np.testing.assert_array_equal(_core.dwconv2d(x, w, None, (2, 2), (1, 1), "relu", threads), base)
    xs = np.zeros((3, 80, 29, 62), np.float32)[:, ::2, :, ::2]  # non-contiguous: copied, same answer
    xs[...] = x
    np.testing.assert_array_equal(_core.dwconv2d(xs, w, None, (2, 2), (1, 1), "relu", 2), base)


def test_dwconv_isas_agree_and_kernel_forcing(rng):
    x = rng.standard_normal((2, 9, 13, 21)).astype(np.float32)
    w = rng.standard_normal((9, 5, 5)).astype(np.float32)
    kernels = [k for k in _core.dwconv_kernels() if k["runnable"]]
    isas, runnable = {k["isa"] for k in kernels}, _core.runnable_isas()
    assert isas <= set(runnable)
    # every runnable ISA runs a kernel of its own or the next rung down's (avx512 -> avx2)
    assert all(kernel_isa_for(name, isas.__contains__) in isas for name in runnable)
    assert set(runnable) - isas <= {"avx512"}
    ref, scale = reference(x, w, None, (1, 2), (2, 1), "none")
    for k in kernels:
        check(_core.dwconv2d(x, w, None, (1, 2), (2, 1), kernel=k["name"]), ref, scale, False)


# The blocked engine's edges: channel counts below, at and past multiples of 8 (the c % 8 left
# over run as planes), planes from 1x1 to 15x13, 3x3 and 5x5 (unrolled) and 4x4 (generic).
BLOCKED_CHANNELS = (1, 7, 8, 9, 17, 96)
BLOCKED_PLANES = ((1, 1), (3, 5), (7, 7), (14, 14), (15, 13))


@pytest.mark.parametrize("c", BLOCKED_CHANNELS)
@pytest.mark.parametrize("plane", BLOCKED_PLANES, ids=lambda p: f"{p[0]}x{p[1]}")
def test_dwconv_blocked_equals_planes_bitwise(isa, rng, c, plane):
    h, wd = plane
    i = 0
    for k in (3, 5, 4):
        for s in (1, 2):
            for p in (0, 1, 2):
                if h + 2 * p < k or wd + 2 * p < k:
                    continue
                act = ("none", "relu", "relu6")[i % 3]
                n = 1 + i % 2
                i += 1
                x = (rng.standard_normal((n, c, h, wd)) * 3).astype(np.float32)
                w = rng.standard_normal((c, k, k)).astype(np.float32)
                b = rng.standard_normal(c).astype(np.float32) if i % 4 else None
                ref, scale = reference(x, w, b, (s, s), (p, p), act)
                planes = _core.dwconv2d(x, w, b, (s, s), (p, p), act, 1, engine="planes")
                check(planes, ref, scale, False)
                for threads in (1, 2):
                    blocked = _core.dwconv2d(x, w, b, (s, s), (p, p), act, threads, engine="blocked")
                    np.testing.assert_array_equal(blocked, planes, err_msg=f"k{k} s{s} p{p} {act} t{threads}")
                    auto = _core.dwconv2d(x, w, b, (s, s), (p, p), act, threads)
                    np.testing.assert_array_equal(auto, planes)
    assert i >= 5  # every plane size ran several geometries


@pytest.mark.parametrize("trial", range(8))
def test_dwconv_blocked_random_shapes_and_nonfinite(isa, rng, trial):
    # random odd shapes (several bands of output rows when wide), NaN/inf where trial is odd:
    # the same NaN and inf positions and the same finite values as the planes engine
    nonfinite = trial % 2 == 1
    x, w, b, s, p, act = random_case(rng, nonfinite)
    if trial % 4 == 0:  # wide planes: the tile holds a band of rows, not the whole plane
        n, c = 1, int(rng.integers(8, 20))
        x = rng.standard_normal((n, c, int(rng.integers(30, 50)), int(rng.integers(100, 180)))).astype(np.float32)
        w = rng.standard_normal((c, 3, 3)).astype(np.float32)
        b = rng.standard_normal(c).astype(np.float32)
    ref, scale = reference(x, w, b, s, p, act)
    planes = _core.dwconv2d(x, w, b, s, p, act, 1, engine="planes")
    check(planes, ref, scale, nonfinite)
    for threads in (1, 2, 3):
        np.testing.assert_array_equal(_core.dwconv2d(x, w, b, s, p, act, threads, engine="blocked"), planes)


def test_dwconv_blocked_nan_and_inf_weights(isa):
    # a non-finite tap meets the zero padding too (0 * inf = NaN): both engines compute every tap
    x = np.ones((1, 9, 6, 7), np.float32)
    w = np.ones((9, 3, 3), np.float32)
    w[3, 0, 0], w[8, 1, 1] = np.inf, np.nan
    b = np.zeros(9, np.float32)
    for act in ("none", "relu6"):
        planes = _core.dwconv2d(x, w, b, (1, 1), (1, 1), act, engine="planes")
        assert np.isnan(planes[0, 3, 0, :]).all() and np.isnan(planes[0, 8]).all()
        np.testing.assert_array_equal(_core.dwconv2d(x, w, b, (1, 1), (1, 1), act, engine="blocked"), planes)


def test_dwconv_kernels_list_blocked_twins():
    kernels = _core.dwconv_kernels()
    names = {k["name"]: k for k in kernels}
    for k in kernels:
        if k["engine"] == "planes":
            twin = names[k["name"] + "_blocked"]
            assert twin["engine"] == "blocked" and twin["isa"] == k["isa"]
    assert {k["engine"] for k in kernels} == {"planes", "blocked"}
    # one kernel of each engine is the active ISA's
    assert sorted(k["engine"] for k in kernels if k["active"]) == ["blocked", "planes"]


def test_pysparse_isa_env_selects_the_blocked_kernels(tmp_path, rng):
    # PYSPARSE_ISA forces the blocked engine's ISA like the planes': each forced path in a child
    # process gives this process's result of that path, bitwise
    code = (
        "import numpy as np; from pysparse import _core\n"
        "a = np.load('in.npz')\n"
        "np.save('out.npy', _core.dwconv2d(a['x'], a['w'], a['b'], (2, 2), (1, 1), 'relu6', 2, engine='blocked'))\n"
        "print([k['name'] for k in _core.dwconv_kernels() if k['active']])\n"
    )
    x = rng.standard_normal((2, 19, 15, 13)).astype(np.float32)
    w = rng.standard_normal((19, 3, 3)).astype(np.float32)
    b = rng.standard_normal(19).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x, w=w, b=b)
    previous = _core.get_isa()
    try:
        for name in _core.runnable_isas():
            env = dict(os.environ, PYSPARSE_ISA=name)
            out = subprocess.run([*python_command(), "-c", code], check=True, cwd=tmp_path, env=env, timeout=300,
                                 capture_output=True, text=True).stdout
            kernel_isa = kernel_isa_for(name, {k["isa"] for k in _core.dwconv_kernels()}.__contains__)
            assert f"f32_dwconv__{kernel_isa}_blocked" in out
            _core.set_isa(name)
            want = _core.dwconv2d(x, w, b, (2, 2), (1, 1), "relu6", 1, engine="planes")
            np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), want)
    finally:
        _core.set_isa(previous)


def test_dwconv_empty_batch():
    y = _core.dwconv2d(np.zeros((0, 4, 6, 6), np.float32), np.ones((4, 3, 3), np.float32), None, (2, 2), (1, 1))
    assert y.shape == (0, 4, 3, 3)


@pytest.mark.parametrize(
    "kw, err, match",
    [
        (dict(x=np.zeros((1, 4, 6), np.float32)), ValueError, "4-D"),
        (dict(x=np.zeros((1, 4, 6, 6), np.float64)), TypeError, "float32"),
        (dict(weight=np.ones((3, 3, 3), np.float32)), ValueError, "channel mismatch"),
        (dict(weight=np.ones((4, 9), np.float32)), ValueError, "3-D"),
        (dict(weight=np.ones((4, 17, 3), np.float32)), ValueError, "kernel size"),
        (dict(bias=np.ones(5, np.float32)), ValueError, "bias"),
        (dict(stride=(0, 1)), ValueError, "stride"),
        (dict(stride=(1,)), TypeError, "pair"),
        (dict(padding=(-1, 0)), ValueError, "padding"),
        (dict(padding=(65, 0)), ValueError, "padding"),
        (dict(x=np.zeros((1, 4, 1, 6), np.float32)), ValueError, "too small"),
        (dict(activation="gelu"), ValueError, "activation"),
        (dict(activation=None), TypeError, "activation"),
        (dict(threads=-1), ValueError, "threads"),
        (dict(kernel="f32_dwconv__nope"), ValueError, "unknown kernel"),
        (dict(engine="fast"), ValueError, "engine must be 'auto', 'planes' or 'blocked'"),
        (dict(engine=None), TypeError, "engine must be a str"),
        (dict(kernel="f32_dwconv__scalar", engine="blocked"), ValueError, "'planes' engine, not 'blocked'"),
        (dict(kernel="f32_dwconv__scalar_blocked", engine="planes"), ValueError, "'blocked' engine, not 'planes'"),
    ],
)
def test_dwconv_bad_input(kw, err, match):
    args = dict(x=np.zeros((1, 4, 6, 6), np.float32), weight=np.ones((4, 3, 3), np.float32), bias=None,
                stride=(1, 1), padding=(0, 0), activation="none", threads=0, kernel=None, engine="auto")
    args.update(kw)
    with pytest.raises(err, match=match):
        _core.dwconv2d(**args)


def test_plan_takes_the_depthwise_path(rng):
    c = 12
    w = rng.standard_normal((c, 9)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    x = rng.standard_normal((2, c, 15, 11)).astype(np.float32)
    for act in ("none", "relu", "relu6"):
        plan = Conv2dPlan(w, b, kernel_size=3, stride=2, padding=1, groups=c, activation=act)
        assert plan.path == "depthwise"
        numpy_plan = Conv2dPlan(w, b, kernel_size=3, stride=2, padding=1, groups=c, activation=act)
        numpy_plan.depthwise = False  # the numpy path, the same activation applied after it
        np.testing.assert_allclose(plan(x), numpy_plan(x), rtol=1e-5, atol=1e-5)
        if torch is not None:
            assert isinstance(plan(torch.from_numpy(x)), torch.Tensor)
    # dilation 2 and channel multipliers stay on numpy
    assert Conv2dPlan(w, kernel_size=3, dilation=2, groups=c).path == "im2col"
    assert Conv2dPlan(np.ones((2 * c, 9), np.float32), kernel_size=3, groups=c).path == "im2col"
    with pytest.raises(ValueError, match="activation"):
        Conv2dPlan(w, kernel_size=3, groups=c, activation="silu")
    with pytest.raises(ValueError, match="channel mismatch"):
        plan(x[:, :5])


@needs_torch
def test_sparse_conv2d_module_runs_depthwise_in_pysparse(rng):
    conv = torch.nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16).eval()
    m = ps.nn.SparseConv2d.from_module(conv, "dense")
    assert m._plan is not None and m._plan.path == "depthwise"
    x = torch.randn(2, 16, 13, 13)
    with torch.no_grad():
        torch.testing.assert_close(m(x), conv(x), rtol=1e-5, atol=1e-5)
        traced = torch.fx.symbolic_trace(m)  # the torch.library op
        torch.testing.assert_close(traced(x), conv(x), rtol=1e-5, atol=1e-5)
