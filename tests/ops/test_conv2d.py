"""ops.conv2d against torch.nn.functional.conv2d in float64: kernel sizes, stride,
padding, dilation, groups, odd sizes, batch, every weight format, numpy and torch
inputs; and the bad inputs it must refuse.

ops.conv2d is what the torch-free runtime runs, so without torch (the ARM CI) the
same cases check it against a plain float64 numpy convolution, itself checked
against torch here whenever torch is there."""

from __future__ import annotations

import numpy as np
import pytest

import pysparse as ps

from pstest import F32_SUM_RTOL, numpy_conv, pair, random_nm, random_sparse, relerr

try:
    import torch
except ImportError:  # the torch-free CI: numpy reference only
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch")

FORMATS = ["dense", "csr", "sell", "bsr4x1", "bsr8x1", "nm2:4"]


def pack(w2d: np.ndarray, fmt: str):
    if fmt == "dense":
        return w2d
    if fmt == "csr":
        return ps.CSRMatrix.from_dense(w2d)
    if fmt == "sell":
        return ps.SELLMatrix.from_dense(w2d)
    if fmt.startswith("bsr"):
        return ps.BSRMatrix.from_dense(w2d, block=(int(fmt[3:-2]), 1))
    return ps.NMMatrix.from_dense(w2d, fmt[2:])


def weight(rng, fmt: str, cout: int, cin: int, kh: int, kw: int) -> np.ndarray:
    """A (Cout, Cin*kh*kw) weight pruned in the pattern ``fmt`` runs best."""
    shape = (cout, cin * kh * kw)
    if fmt.startswith("nm"):
        return random_nm(rng, shape, 2, 4)
    block = (int(fmt[3:-2]), 1) if fmt.startswith("bsr") else (1, 1)
    return random_sparse(rng, shape, 0.3, block=block)


def torch_conv(x, w4, bias, stride, padding, dilation, groups):
    t = torch.nn.functional.conv2d(
        torch.from_numpy(x).double(), torch.from_numpy(w4).double(),
        None if bias is None else torch.from_numpy(bias).double(), stride, padding, dilation, groups,
    )
    return t.numpy()


reference = numpy_conv if torch is None else torch_conv


# (kernel, stride, padding, dilation, H, W): odd sizes, non-square images and kernels
CASES = [
    (1, 1, 0, 1, 5, 7),
    (1, 2, 0, 1, 9, 6),
    (1, 1, 1, 1, 4, 4),
    (3, 1, 1, 1, 7, 7),
    (3, 2, 1, 1, 11, 8),
    (3, 1, 0, 2, 9, 10),
    (5, 1, 2, 1, 13, 9),
    (5, 3, 1, 1, 17, 16),
    ((3, 1), (2, 1), (1, 0), 1, 9, 5),
    ((1, 5), 1, (0, 2), (1, 2), 6, 12),
]


@needs_torch
@pytest.mark.parametrize("case", CASES + [(3, 2, 1, 1, 9, 8, 2), (3, 1, 1, 2, 8, 8, 6)], ids=str)
def test_numpy_reference_matches_torch(rng, case):
    k, s, p, d, h, w, *g = case
    groups = g[0] if g else 1
    kh, kw = pair(k)
    x = rng.standard_normal((2, 6, h, w)).astype(np.float32)
    w4 = rng.standard_normal((12, 6 // groups, kh, kw)).astype(np.float32)
    bias = rng.standard_normal(12).astype(np.float32)
    ref = torch_conv(x, w4, bias, s, p, d, groups)
    assert relerr(numpy_conv(x, w4, bias, s, p, d, groups), ref) <= 1e-12


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "k{}s{}p{}d{}_{}x{}".format(*c))
@pytest.mark.parametrize("batch", [1, 3])
def test_matches_torch(rng, fmt, case, batch):
    k, s, p, d, h, w = case
    kh, kw = (k, k) if isinstance(k, int) else k
    cin, cout = 5, 16
    w2d = weight(rng, fmt, cout, cin, kh, kw)
    x = rng.standard_normal((batch, cin, h, w)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    ref = reference(x, w2d.reshape(cout, cin, kh, kw), bias, s, p, d, 1)
    y = ps.conv2d(x, pack(w2d, fmt), bias, kernel_size=k, stride=s, padding=p, dilation=d)
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.shape == ref.shape
    assert relerr(y, ref) <= F32_SUM_RTOL


@needs_torch
@pytest.mark.parametrize("fmt", FORMATS)
def test_torch_in_torch_out(rng, fmt):
    w2d = weight(rng, fmt, 8, 4, 3, 3)
    x = rng.standard_normal((2, 4, 6, 7)).astype(np.float32)
    ref = reference(x, w2d.reshape(8, 4, 3, 3), None, 1, 1, 1, 1)
    # A non-contiguous (channels-last) tensor works too.
    xt = torch.from_numpy(x).to(memory_format=torch.channels_last)
    y = ps.conv2d(xt, pack(w2d, fmt), kernel_size=3, padding=1)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    assert relerr(y.numpy(), ref) <= F32_SUM_RTOL
    bias = torch.from_numpy(rng.standard_normal(8).astype(np.float32))
    y = ps.conv2d(torch.from_numpy(x), pack(w2d, fmt), bias, kernel_size=3, padding=1)
    assert relerr(y.numpy(), ref + bias.numpy()[:, None, None]) <= F32_SUM_RTOL


@pytest.mark.parametrize(
    "groups,cin,cout,k",
    [(2, 6, 4, 3), (3, 6, 9, 1), (6, 6, 6, 3), (4, 4, 8, 5)],  # depthwise (6) and multiplier 2 (4 -> 8)
)
def test_grouped_and_depthwise_dense(rng, groups, cin, cout, k):
    w4 = rng.standard_normal((cout, cin // groups, k, k)).astype(np.float32)
    x = rng.standard_normal((3, cin, 9, 8)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    ref = reference(x, w4, bias, 2, k // 2, 1, groups)
    y = ps.conv2d(x, w4.reshape(cout, -1), bias, kernel_size=k, stride=2, padding=k // 2, groups=groups)
    assert relerr(y, ref) <= F32_SUM_RTOL


def test_1x1_large_image_per_image_path_and_big_batch(rng):
    # 1x1 over >= 256 pixels runs per image on views of x; 3x3 at batch 9: im2col (dense), direct path (csr).
    w2d = random_sparse(rng, (24, 16), 0.2)
    x = rng.standard_normal((2, 16, 20, 17)).astype(np.float32)
    ref = reference(x, w2d.reshape(24, 16, 1, 1), None, 1, 0, 1, 1)
    assert relerr(ps.conv2d(x, ps.CSRMatrix.from_dense(w2d), kernel_size=1), ref) <= F32_SUM_RTOL
    w3 = random_sparse(rng, (8, 16 * 9), 0.2)
    x = rng.standard_normal((9, 16, 18, 18)).astype(np.float32)
    ref = reference(x, w3.reshape(8, 16, 3, 3), None, 1, 1, 1, 1)
    for fmt in ("dense", "csr"):
        assert relerr(ps.conv2d(x, pack(w3, fmt), kernel_size=3, padding=1), ref) <= F32_SUM_RTOL


def test_zero_weights_and_empty_batch(rng):
    w = ps.CSRMatrix.from_dense(np.zeros((4, 3 * 9), dtype=np.float32))
    bias = np.arange(4, dtype=np.float32)
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    y = ps.conv2d(x, w, bias, kernel_size=3)
    assert y.shape == (2, 4, 3, 3)
    assert np.array_equal(y, np.broadcast_to(bias[:, None, None], (2, 4, 3, 3)))
    assert ps.conv2d(x[:0], w, kernel_size=3).shape == (0, 4, 3, 3)


@pytest.fixture
def conv_problem(rng):
    w2d = random_sparse(rng, (8, 4 * 9), 0.3)
    x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    return w2d, x


def test_bad_ndim_and_dtype(conv_problem):
    w2d, x = conv_problem
    w = ps.CSRMatrix.from_dense(w2d)
    with pytest.raises(ValueError, match="4-D"):
        ps.conv2d(x[0], w, kernel_size=3)
    with pytest.raises(ValueError, match="4-D"):
        ps.conv2d(x[None], w, kernel_size=3)
    with pytest.raises(TypeError, match="float32"):
        ps.conv2d(x.astype(np.float64), w, kernel_size=3)
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        ps.conv2d(x.tolist(), w, kernel_size=3)
    with pytest.raises(TypeError, match="float32"):
        ps.conv2d(x, w2d.astype(np.float64), kernel_size=3)
    with pytest.raises(ValueError, match="2-D"):
        ps.conv2d(x, w2d.reshape(8, 4, 3, 3), kernel_size=3)
    with pytest.raises(TypeError, match="CSRMatrix"):
        ps.conv2d(x, w2d.tolist(), kernel_size=3)


def test_channel_mismatch(conv_problem):
    w2d, x = conv_problem
    w = ps.CSRMatrix.from_dense(w2d)
    with pytest.raises(ValueError, match="channel mismatch"):
        ps.conv2d(x[:, :3], w, kernel_size=3)
    with pytest.raises(ValueError, match="channel mismatch"):
        ps.conv2d(x, w, kernel_size=1)
    with pytest.raises(ValueError, match="bias"):
        ps.conv2d(x, w, np.zeros(7, dtype=np.float32), kernel_size=3)


def test_groups_with_sparse_weight_refused(rng):
    w = ps.CSRMatrix.from_dense(random_sparse(rng, (8, 2 * 9), 0.3))
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    with pytest.raises(ValueError, match="dense weight"):
        ps.conv2d(x, w, kernel_size=3, groups=2)
    with pytest.raises(ValueError, match="divide"):
        ps.conv2d(x, random_sparse(rng, (8, 12), 1.0), kernel_size=1, groups=3)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"kernel_size": 0}, ValueError, "kernel_size"),
        ({"kernel_size": 3, "stride": 0}, ValueError, "stride"),
        ({"kernel_size": 3, "padding": -1}, ValueError, "padding"),
        ({"kernel_size": 3, "dilation": (1, 0)}, ValueError, "dilation"),
        ({"kernel_size": (3, 3, 3)}, TypeError, "pair"),
        ({"kernel_size": 3.0}, TypeError, "kernel_size"),
        ({"kernel_size": 3, "padding": "same"}, TypeError, "padding"),
        ({"kernel_size": 3, "groups": 0}, ValueError, "groups"),
        ({"kernel_size": 3, "dilation": 4}, ValueError, "too small"),
        ({"kernel_size": 3, "threads": 0}, ValueError, "threads"),
    ],
)
def test_bad_hyper_parameters(conv_problem, kwargs, error, match):
    w2d, x = conv_problem
    with pytest.raises(error, match=match):
        ps.conv2d(x, ps.CSRMatrix.from_dense(w2d), **kwargs)


@needs_torch
def test_requires_grad_refused(conv_problem):
    w2d, x = conv_problem
    xt = torch.from_numpy(x).requires_grad_()
    with pytest.raises(ValueError, match="no_grad"):
        ps.conv2d(xt, ps.CSRMatrix.from_dense(w2d), kernel_size=3)
