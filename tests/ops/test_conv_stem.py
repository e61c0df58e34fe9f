"""The C++ direct dense convolution of network stems (_core.conv2d_direct, ops.Conv2dPlan's 'direct'
path) against numpy float64 and torch: random odd shapes, kernel sizes 1-7, strides 1-3, paddings,
1-4 input channels, output channels not a multiple of the channel block, every activation, every
ISA, every thread count, non-finite values, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the torch-free CI (arm64 under qemu): the float64 references still run
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch")

from pysparse import _core
from pysparse.ops.conv import Conv2dPlan

# float32 vs float64, per unit of sum |w x| + |b| of the output (as the depthwise tests)
ATOL = 1e-5


def reference(x, w, b, stride, padding, act):
    """float64 conv (w (Cout, Cin, kh, kw)) and the scale sum |w x| + |b| per output."""
    n, c, h, wd = x.shape
    cout, _, kh, kw = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    ho = (h + 2 * padding[0] - kh) // stride[0] + 1
    wo = (wd + 2 * padding[1] - kw) // stride[1] + 1
    bb = np.zeros(cout) if b is None else b.astype(np.float64)
    y = np.broadcast_to(bb[None, :, None, None], (n, cout, ho, wo)).copy()
    scale = np.abs(y)
    with np.errstate(invalid="ignore"):
        for ci in range(c):
            for i in range(kh):
                for j in range(kw):
                    win = xp[:, ci, i:i + stride[0] * (ho - 1) + 1:stride[0], j:j + stride[1] * (wo - 1) + 1:stride[1]]
                    t = win[:, None] * w[None, :, ci, i, j, None, None].astype(np.float64)
                    y += t
                    scale += np.abs(t)
    if act != "none":
        y = np.where(np.isnan(y), y, np.maximum(y, 0.0))
    if act == "relu6":
        y = np.where(np.isnan(y), y, np.minimum(y, 6.0))
    return y, scale


def random_case(rng, nonfinite=False):
    k = int(rng.choice([3, 3, 5, 1, 2, 4, 7]))
    s = int(rng.integers(1, 4))
    p = int(rng.integers(0, 4))
    n, c, cout = int(rng.integers(1, 3)), int(rng.integers(1, 5)), int(rng.integers(1, 11))
    h = int(rng.integers(max(1, k - 2 * p), 24))
    wd = int(rng.integers(max(1, k - 2 * p), 29))
    x = (rng.standard_normal((n, c, h, wd)) * 3).astype(np.float32)
    if nonfinite:
        flat = x.reshape(-1)
        flat[rng.integers(0, flat.size, 3)] = rng.choice([np.nan, np.inf, -np.inf], 3)
    w = rng.standard_normal((cout, c, k, k)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if rng.random() < 0.8 else None
    act = str(rng.choice(["none", "relu", "relu6"]))
    return x, w, b, (s, s), (p, p), act


def check(y, ref, scale, nonfinite):
    assert y.shape == ref.shape and y.dtype == np.float32
    fin = np.isfinite(ref)
    np.testing.assert_array_less(np.abs(y[fin] - ref[fin]), ATOL * scale[fin] + 1e-30)
    if nonfinite:
        assert not np.isfinite(y[~fin]).any()  # inf - inf in another order: non-finite either way
    else:
        assert fin.all()


@pytest.mark.parametrize("trial", range(12))
def test_direct_conv_matches_float64(isa, rng, trial):
    nonfinite = trial % 4 == 3
    x, w, b, s, p, act = random_case(rng, nonfinite)
    ref, scale = reference(x, w, b, s, p, act)
    for threads in (1, 2, 3):
        check(_core.conv2d_direct(x, w, b, s, p, act, threads), ref, scale, nonfinite)


def test_direct_conv_unequal_strides_and_paddings(isa, rng):
    x = rng.standard_normal((2, 3, 19, 23)).astype(np.float32)
    w = rng.standard_normal((7, 3, 3, 5)).astype(np.float32)
    b = rng.standard_normal(7).astype(np.float32)
    for s, p in (((1, 2), (2, 1)), ((3, 1), (0, 2)), ((2, 3), (1, 0))):
        ref, scale = reference(x, w, b, s, p, "relu")
        check(_core.conv2d_direct(x, w, b, s, p, "relu"), ref, scale, False)


@needs_torch
@pytest.mark.parametrize("k, s", [(3, 2), (3, 1), (5, 2), (7, 2)])
def test_direct_conv_matches_torch(isa, rng, k, s):
    # stems: RGB images, odd sizes, a wide batch
    for n, c, cout, h in ((1, 3, 32, 33), (4, 3, 13, 17), (2, 1, 6, 9)):
        x = rng.standard_normal((n, c, h, h + 5)).astype(np.float32)
        w = rng.standard_normal((cout, c, k, k)).astype(np.float32)
        b = rng.standard_normal(cout).astype(np.float32)
        want = F.hardtanh(F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), s, k // 2),
                          0.0, 6.0).numpy()
        got = _core.conv2d_direct(x, w, b, (s, s), (k // 2, k // 2), "relu6")
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_direct_conv_bitwise_across_threads_and_strided_input(rng):
    x = rng.standard_normal((3, 3, 41, 37)).astype(np.float32)
    w = rng.standard_normal((18, 3, 3, 3)).astype(np.float32)
    base = _core.conv2d_direct(x, w, None, (2, 2), (1, 1), "relu6", 1)
    for threads in range(2, 5):
        np.testing.assert_array_equal(_core.conv2d_direct(x, w, None, (2, 2), (1, 1), "relu6", threads), base)
    xs = np.zeros((3, 6, 41, 74), np.float32)[:, ::2, :, ::2]  # non-contiguous: copied, same answer
    xs[...] = x
    np.testing.assert_array_equal(_core.conv2d_direct(xs, w, None, (2, 2), (1, 1), "relu6", 2), base)


def test_direct_conv_isas_agree_and_kernel_forcing(rng):
    x = rng.standard_normal((2, 3, 13, 21)).astype(np.float32)
    w = rng.standard_normal((9, 3, 5, 5)).astype(np.float32)
    kernels = [k for k in _core.conv_kernels() if k["runnable"]]
    isas, runnable = {k["isa"] for k in kernels}, _core.runnable_isas()
    assert isas <= set(runnable) and set(runnable) - isas <= {"avx512"}  # avx512 runs the avx2 kernel
    assert sum(k["active"] for k in _core.conv_kernels()) == 1
    active = next(k for k in _core.conv_kernels() if k["active"])
    assert active["isa"] == (_core.get_isa() if _core.get_isa() in isas else "avx2")  # not a fall to scalar
    ref, scale = reference(x, w, None, (1, 2), (2, 1), "none")
    for k in kernels:
        check(_core.conv2d_direct(x, w, None, (1, 2), (2, 1), kernel=k["name"]), ref, scale, False)


def test_direct_conv_nan_stays_nan_through_relu(isa):
    x = np.zeros((1, 2, 5, 9), np.float32)
    x[0, 1, 2, 4] = np.nan
    w = np.ones((3, 2, 3, 3), np.float32)
    for act in ("none", "relu", "relu6"):
        y = _core.conv2d_direct(x, w, None, (1, 1), (1, 1), act)
        assert np.isnan(y[0, :, 1:4, 3:6]).all() and np.isnan(y).sum() == 27, act  # as torch: relu(nan) is nan


def test_direct_conv_empty_batch():
    y = _core.conv2d_direct(np.zeros((0, 3, 6, 6), np.float32), np.ones((4, 3, 3, 3), np.float32), None, (2, 2), (1, 1))
    assert y.shape == (0, 4, 3, 3)


@pytest.mark.parametrize(
    "kw, err, match",
    [
        (dict(x=np.zeros((1, 3, 6), np.float32)), ValueError, "4-D"),
        (dict(x=np.zeros((1, 3, 6, 6), np.float64)), TypeError, "float32"),
        (dict(weight=np.ones((4, 2, 3, 3), np.float32)), ValueError, "channel mismatch"),
        (dict(weight=np.ones((4, 27), np.float32)), ValueError, "4-D"),
        (dict(weight=np.ones((4, 3, 17, 3), np.float32)), ValueError, "kernel size"),
        (dict(weight=np.ones((4, 3, 3, 3), np.float64)), TypeError, "float32"),
        (dict(bias=np.ones(5, np.float32)), ValueError, "bias"),
        (dict(stride=(0, 1)), ValueError, "stride"),
        (dict(stride=(1,)), TypeError, "pair"),
        (dict(padding=(-1, 0)), ValueError, "padding"),
        (dict(padding=(65, 0)), ValueError, "padding"),
        (dict(x=np.zeros((1, 3, 1, 6), np.float32)), ValueError, "too small"),
        (dict(activation="gelu"), ValueError, "activation"),
        (dict(activation=None), TypeError, "activation"),
        (dict(threads=-1), ValueError, "threads"),
        (dict(kernel="f32_conv_direct__nope"), ValueError, "unknown kernel"),
    ],
)
def test_direct_conv_bad_input(kw, err, match):
    args = dict(x=np.zeros((1, 3, 6, 6), np.float32), weight=np.ones((4, 3, 3, 3), np.float32), bias=None,
                stride=(1, 1), padding=(0, 0), activation="none", threads=0, kernel=None)
    args.update(kw)
    with pytest.raises(err, match=match):
        _core.conv2d_direct(**args)


def test_plan_takes_the_direct_path(rng):
    w = rng.standard_normal((10, 27)).astype(np.float32)
    b = rng.standard_normal(10).astype(np.float32)
    x = rng.standard_normal((2, 3, 15, 11)).astype(np.float32)
    for act in ("none", "relu", "relu6"):
        plan = Conv2dPlan(w, b, kernel_size=3, stride=2, padding=1, activation=act)
        assert plan.path == "direct"
        numpy_plan = Conv2dPlan(w, b, kernel_size=3, stride=2, padding=1, activation=act)
        numpy_plan.stem = False  # the numpy path, the same activation applied after it
        np.testing.assert_allclose(plan(x), numpy_plan(x), rtol=1e-5, atol=1e-5)
        if torch is not None:
            assert isinstance(plan(torch.from_numpy(x)), torch.Tensor)
    # many input channels, dilation, plain 1x1 and grouped weights keep their paths
    assert Conv2dPlan(np.ones((4, 5 * 9), np.float32), kernel_size=3).path == "im2col"
    assert Conv2dPlan(w, kernel_size=3, dilation=2).path == "im2col"
    assert Conv2dPlan(np.ones((4, 3), np.float32), kernel_size=1).path == "1x1"
    assert Conv2dPlan(np.ones((4, 9), np.float32), kernel_size=3, groups=2).path == "im2col"
    with pytest.raises(ValueError, match="channel mismatch"):
        plan(x[:, :2])
