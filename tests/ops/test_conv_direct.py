"""The direct ("shifted rows") sparse convolution: ops.conv2d with a CSR or BSR (R, 1)
weight and stride 1 runs the nx SpMM over offsets into the padded image
(_core.testing.spmm_shifted) instead of im2col.

Checked against a float64 numpy convolution (so these run without torch too) and,
when torch is there, against torch.nn.functional.conv2d; on every ISA path; thread
counts bit-identical; the entry point's bad inputs refused with ValueError/TypeError.
Every case also asserts the direct path ran, so none passes by falling back."""

from __future__ import annotations

import numpy as np
import pytest

import pysparse as ps
from pysparse import _core, ops
from pysparse.ops import conv as conv_mod

from pstest import F32_SUM_RTOL, numpy_conv, pair, random_nm, random_sparse, relerr

FORMATS = {"csr": (1, 1), "sell": (1, 1), "bsr4x1": (4, 1), "bsr8x1": (8, 1)}
DENSITIES = [0.0, 0.1, 1.0]


def pack(w2d: np.ndarray, fmt: str):
    if fmt == "sell":  # runs the direct path through its CSR view
        return ps.SELLMatrix.from_dense(w2d)
    block = FORMATS[fmt]
    return ps.CSRMatrix.from_dense(w2d) if block == (1, 1) else ps.BSRMatrix.from_dense(w2d, block=block)


@pytest.fixture
def direct_calls(monkeypatch):
    """Counts the images ops.conv2d sends down the direct path."""
    calls = []
    real = conv_mod._conv_shifted

    def counting(xa, *args, **kwargs):
        calls.append(xa.shape[0])
        return real(xa, *args, **kwargs)

    monkeypatch.setattr(conv_mod, "_conv_shifted", counting)
    return calls


def output_size(h, w, k, p, d):
    (kh, kw), (ph, pw), (dh, dw) = pair(k), pair(p), pair(d)
    return h + 2 * ph - dh * (kh - 1), w + 2 * pw - dw * (kw - 1)


# (H, W) pairs: 1, 3, 7, 17 in both roles, square and not.
SIZES = [(1, 1), (3, 7), (7, 3), (17, 1), (1, 17), (17, 17)]


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("padding", [0, 1, 2, (1, 2)], ids=lambda p: f"p{p}")
@pytest.mark.parametrize("dilation", [1, 2], ids=lambda d: f"d{d}")
@pytest.mark.parametrize("k", [2, 3, 5], ids=lambda k: f"k{k}")
def test_matches_numpy_reference(rng, isa, direct_calls, k, dilation, padding, fmt):
    cin, cout = 3, 5
    ran = 0
    for h, w in SIZES:
        if min(output_size(h, w, k, padding, dilation)) < 1:
            continue
        for batch in (1, 3):
            for density in DENSITIES:
                w2d = random_sparse(rng, (cout, cin * k * k), density, block=FORMATS[fmt], empty_rows=1)
                x = rng.standard_normal((batch, cin, h, w)).astype(np.float32)
                bias = rng.standard_normal(cout).astype(np.float32) if density != 0.1 else None
                ref = numpy_conv(x, w2d.reshape(cout, cin, k, k), bias, 1, padding, dilation, 1)
                before = len(direct_calls)
                y = ps.conv2d(x, pack(w2d, fmt), bias, kernel_size=k, padding=padding, dilation=dilation)
                assert len(direct_calls) > before, "the direct path did not run"
                assert y.dtype == np.float32 and y.shape == ref.shape
                assert relerr(y, ref) <= F32_SUM_RTOL, (h, w, batch, density)
                ran += 1
    assert ran >= 6  # some sizes are too small for big kernels, never all of them


def test_numpy_reference_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 7, 17)).astype(np.float32)
    w4 = rng.standard_normal((5, 3, 5, 5)).astype(np.float32)
    for padding, dilation in ((0, 1), ((1, 2), 2), (2, 1)):
        ref = torch.nn.functional.conv2d(
            torch.from_numpy(x).double(), torch.from_numpy(w4).double(), None, 1, padding, dilation
        ).numpy()
        assert relerr(numpy_conv(x, w4, None, 1, padding, dilation, 1), ref) <= 1e-12


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("case", [(3, 1, 1), (2, (1, 2), 1), (5, 2, 2), (3, 0, 2)], ids=str)
def test_matches_torch(rng, isa, direct_calls, case, fmt):
    torch = pytest.importorskip("torch")
    k, padding, dilation = case
    cin, cout = 5, 7
    w2d = random_sparse(rng, (cout, cin * k * k), 0.1, block=FORMATS[fmt])
    x = rng.standard_normal((3, cin, 17, 7)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    ref = torch.nn.functional.conv2d(
        torch.from_numpy(x).double(), torch.from_numpy(w2d.reshape(cout, cin, k, k)).double(),
        torch.from_numpy(bias).double(), 1, padding, dilation,
    ).numpy()
    # torch in, torch out; a channels-last (non-contiguous) input too.
    xt = torch.from_numpy(x).to(memory_format=torch.channels_last)
    y = ps.conv2d(xt, pack(w2d, fmt), torch.from_numpy(bias), kernel_size=k, padding=padding, dilation=dilation)
    assert direct_calls and isinstance(y, torch.Tensor) and y.dtype == torch.float32
    assert relerr(y.numpy(), ref) <= F32_SUM_RTOL


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_threads_bit_identical(rng, isa, direct_calls, fmt):
    cin, cout = 9, 33
    w2d = random_sparse(rng, (cout, cin * 9), 0.3, block=FORMATS[fmt], empty_rows=3)
    w = pack(w2d, fmt)
    x = rng.standard_normal((1, cin, 33, 31)).astype(np.float32)
    previous = ps.get_num_threads()
    ps.set_num_threads(4)
    try:
        ys = [ps.conv2d(x, w, kernel_size=3, padding=1, threads=t) for t in (1, 2, 3, 4)]
        plan = ops.Conv2dPlan(w, kernel_size=3, padding=1, threads=4)
        assert np.array_equal(plan(x), ys[0])
        (m,) = plan.offset_matrices.values()
        assert _core.testing.threads_for(m, 33 * 33, 4) == 4  # the work really splits 4 ways
    finally:
        ps.set_num_threads(previous)
    assert len(direct_calls) == 5
    for y in ys[1:]:
        assert np.array_equal(y, ys[0])
    assert relerr(ys[0], numpy_conv(x, w2d.reshape(cout, cin, 3, 3), None, 1, 1, 1, 1)) <= F32_SUM_RTOL


@pytest.mark.parametrize("batch,fit,per_chunk", [(5, 2, 2), (7, 3, 3), (4, 3, 2), (3, 1, 1), (2, 9, 2)])
def test_batch_chunks_and_remainder(rng, isa, monkeypatch, direct_calls, batch, fit, per_chunk):
    # Images go side by side, `fit` at most per product (the byte budget), in balanced
    # chunks; a short last chunk leaves empty (zero) slots. One geometry per call.
    cin, cout, h, w = 4, 6, 5, 6
    monkeypatch.setattr(conv_mod, "SHIFTED_BYTES", fit * 4 * cin * (h + 2) * (w + 2))
    w2d = random_sparse(rng, (cout, cin * 9), 0.3, empty_rows=1)
    bias = rng.standard_normal(cout).astype(np.float32)
    x = rng.standard_normal((batch, cin, h, w)).astype(np.float32)
    wm = ps.CSRMatrix.from_dense(w2d)
    plan = ops.Conv2dPlan(wm, bias, kernel_size=3, padding=1)
    y = plan(x)
    assert direct_calls == [batch]
    ((key, m),) = plan.offset_matrices.items()
    assert key[-1] == per_chunk * (w + 2)  # padded row: per_chunk images side by side
    assert relerr(y, numpy_conv(x, w2d.reshape(cout, cin, 3, 3), bias, 1, 1, 1, 1)) <= F32_SUM_RTOL


def test_plan_cache_reused_and_bounded(rng):
    w2d = random_sparse(rng, (4, 2 * 9), 0.5)
    w = ps.CSRMatrix.from_dense(w2d)
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    plan = ops.Conv2dPlan(w, kernel_size=3, padding=1)
    assert plan.path == "shifted"
    plan(x)
    (first,) = plan.offset_matrices.values()
    plan(x)
    assert next(iter(plan.offset_matrices.values())) is first  # built once per geometry
    for size in range(3, 3 + 2 * conv_mod.SHIFTED_CACHE_SIZE):
        x = rng.standard_normal((1, 2, size, size + 1)).astype(np.float32)
        y = plan(x)
        assert relerr(y, numpy_conv(x, w2d.reshape(4, 2, 3, 3), None, 1, 1, 1, 1)) <= F32_SUM_RTOL
        assert len(plan.offset_matrices) <= conv_mod.SHIFTED_CACHE_SIZE


def test_wide_offsets_use_uint32(rng, direct_calls):
    # 4 x 150 x 152 padded: offsets reach past 65536, so the offset matrix needs uint32 indices.
    cin, cout = 4, 4
    w2d = random_sparse(rng, (cout, cin * 9), 0.5)
    w = ps.CSRMatrix.from_dense(w2d)
    assert w.index_dtype == np.uint16
    x = rng.standard_normal((1, cin, 148, 150)).astype(np.float32)
    plan = ops.Conv2dPlan(w, kernel_size=3, padding=1)
    y = plan(x)
    (m,) = plan.offset_matrices.values()
    assert direct_calls and m.index_dtype == "uint32" and m.shape[1] > 65536
    assert relerr(y, numpy_conv(x, w2d.reshape(cout, cin, 3, 3), None, 1, 1, 1, 1)) <= F32_SUM_RTOL


@pytest.mark.parametrize(
    "make,kwargs",
    [
        (lambda w2d: ps.CSRMatrix.from_dense(w2d), {"stride": 2, "padding": 1}),  # strided: im2col
        (lambda w2d: ps.CSRMatrix.from_dense(w2d[:, :4]), {"kernel_size": 1}),  # plain 1x1: its own direct path
        (lambda w2d: ps.BSRMatrix.from_dense(w2d, block=(4, 2)), {"padding": 1}),  # C > 1 blocks
        (lambda w2d: ps.NMMatrix.from_dense(random_nm(np.random.default_rng(0), w2d.shape, 2, 4), "2:4"), {}),
    ],
    ids=["stride2", "1x1", "bsr4x2", "nm2:4"],
)
def test_other_convs_keep_im2col(rng, direct_calls, make, kwargs):
    w2d = random_sparse(rng, (8, 4 * 9), 0.3)
    w = make(w2d)
    kwargs = {"kernel_size": 3, **kwargs}
    k = pair(kwargs["kernel_size"])
    x = rng.standard_normal((2, 4, 9, 8)).astype(np.float32)
    y = ps.conv2d(x, w, **kwargs)
    ref = numpy_conv(x, w.to_dense().reshape(8, 4, *k), None, kwargs.get("stride", 1), kwargs.get("padding", 0), 1, 1)
    assert direct_calls == []
    assert relerr(y, ref) <= F32_SUM_RTOL


def test_too_wasteful_shapes_keep_im2col(rng, monkeypatch, direct_calls):
    # A tiny image padded wide: most wide columns are cropped, so im2col is cheaper.
    w2d = random_sparse(rng, (8, 4 * 25), 1.0)
    x = rng.standard_normal((1, 4, 2, 2)).astype(np.float32)
    ref = numpy_conv(x, w2d.reshape(8, 4, 5, 5), None, 1, 2, 1, 1)
    monkeypatch.setattr(conv_mod, "SHIFTED_MAX_WASTE", 1.0)  # (6 - 2) / 2 * 8 = 16 > 1
    y = ps.conv2d(x, ps.CSRMatrix.from_dense(w2d), kernel_size=5, padding=2)
    assert direct_calls == [] and relerr(y, ref) <= F32_SUM_RTOL


# ---------------------------------------------------------------------------
# The entry point: Y[i, j] = sum_p W_p x[idx_p + j], j < n.


def shifted_reference(w2d: np.ndarray, x: np.ndarray, n: int) -> np.ndarray:
    k = w2d.shape[1]
    windows = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), n)[:k]  # (K, n): row k = x[k : k + n]
    return w2d.astype(np.float64) @ windows


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "sell"])  # the core refuses SELL (test_sell.py)
@pytest.mark.parametrize("n", [1, 7, 8, 9, 64, 65])
def test_entry_point_semantics(rng, isa, fmt, n):
    w2d = random_sparse(rng, (13, 37), 0.3, block=FORMATS[fmt], empty_rows=2)
    w = pack(w2d, fmt)._m
    x = rng.standard_normal(37 - 1 + n).astype(np.float32)  # exactly long enough
    bias = rng.standard_normal(13).astype(np.float32)
    y = _core.testing.spmm_shifted(w, x, n, bias)
    assert y.shape == (13, n) and y.dtype == np.float32
    assert relerr(y, shifted_reference(w2d, x, n) + bias[:, None]) <= F32_SUM_RTOL


@pytest.fixture
def entry_problem(rng):
    w = ps.CSRMatrix.from_dense(random_sparse(rng, (6, 20), 0.5))._m
    return w, rng.standard_normal(20 - 1 + 10).astype(np.float32)


@pytest.mark.parametrize(
    "bad,error,match",
    [
        (lambda w, x: (w, x[:-1], 10), ValueError, "too short"),
        (lambda w, x: (w, x[:5], 1), ValueError, "too short"),
        (lambda w, x: (w, x, 2**62), ValueError, "too short"),
        (lambda w, x: (w, x, 0), ValueError, "n must be >= 1"),
        (lambda w, x: (w, x, -3), ValueError, "n must be >= 1"),
        (lambda w, x: (w, x.astype(np.float64), 10), TypeError, "float32"),
        (lambda w, x: (w, x.tolist(), 10), TypeError, "numpy array"),
        (lambda w, x: (w, x.reshape(1, -1), 10), ValueError, "1-D"),
        (lambda w, x: (w, np.repeat(x, 2)[::2], 10), ValueError, "contiguous"),
        (lambda w, x: (ps.BSRMatrix.from_dense(np.ones((4, 8), np.float32), block=(2, 2))._m, x, 10),
         ValueError, "R, 1"),
        (lambda w, x: (ps.NMMatrix.from_dense(np.tile(np.float32([1, 1, 0, 0]), (8, 2)), "2:4")._m, x, 10),
         ValueError, "N:M"),
        (lambda w, x: (w.to_sell(), x, 10), ValueError, "SELL"),
    ],
    ids=["short_by_one", "shorter_than_K", "huge_n", "n0", "n_negative", "float64", "list", "2d", "strided",
         "bsr2x2", "nm", "sell"],
)
def test_entry_point_bad_inputs(entry_problem, bad, error, match):
    args = bad(*entry_problem)  # built outside: only the call may raise
    with pytest.raises(error, match=match):
        _core.testing.spmm_shifted(*args)


def test_entry_point_bad_bias_and_threads(entry_problem):
    w, x = entry_problem
    with pytest.raises(ValueError, match="bias"):
        _core.testing.spmm_shifted(w, x, 10, np.zeros(5, np.float32))
    with pytest.raises(TypeError, match="float32"):
        _core.testing.spmm_shifted(w, x, 10, np.zeros(6, np.float64))
    with pytest.raises(ValueError, match="threads"):
        _core.testing.spmm_shifted(w, x, 10, None, -1)
    assert _core.testing.spmm_shifted(w, x, 10).shape == (6, 10)  # the problem itself is fine


# ---------------------------------------------------------------------------
# The fused entry point ops.conv2d calls: pad, product, crop.


@pytest.fixture
def conv_entry(rng):
    w2d = random_sparse(rng, (6, 4 * 9), 0.5)
    plan = ops.Conv2dPlan(ps.CSRMatrix.from_dense(w2d), kernel_size=3, padding=1)
    m = plan.offset_matrix(4, 9, 2 * 7)  # 2 images side by side
    x = rng.standard_normal((2, 4, 7, 5)).astype(np.float32)
    return m, x, w2d


@pytest.mark.parametrize("images", [1, 2, 3, 4])
def test_conv_entry_point_direct_call(conv_entry, isa, images):
    # A matrix built for 2 images side by side runs any batch: chunks of 2, a last one short.
    m, x, w2d = conv_entry
    x = np.concatenate([x, x[::-1] * 2])[:images]
    y = _core.conv2d_shifted(m, x, (3, 3), (1, 1), (1, 1), 2)
    assert y.shape == (images, 6, 7, 5) and y.dtype == np.float32
    assert relerr(y, numpy_conv(x, w2d.reshape(6, 4, 3, 3), None, 1, 1, 1, 1)) <= F32_SUM_RTOL


@pytest.mark.parametrize(
    "bad,error,match",
    [
        (lambda m, x: (m, x[0], (3, 3), (1, 1), (1, 1), 2), ValueError, "4-D"),
        (lambda m, x: (m, x.astype(np.float64), (3, 3), (1, 1), (1, 1), 2), TypeError, "float32"),
        (lambda m, x: (m, x.tolist(), (3, 3), (1, 1), (1, 1), 2), TypeError, "numpy array"),
        (lambda m, x: (m, x.transpose(0, 1, 3, 2), (3, 3), (1, 1), (1, 1), 2), ValueError, "C-contiguous"),
        (lambda m, x: (m, x, (0, 3), (1, 1), (1, 1), 2), ValueError, "kernel_size"),
        (lambda m, x: (m, x, (3, 3), (-1, 1), (1, 1), 2), ValueError, "padding"),
        (lambda m, x: (m, x, (3, 3), (1, 1), (1, 0), 2), ValueError, "dilation"),
        (lambda m, x: (m, x, (3, 3), (1, 1), (1, 1), 0), ValueError, "chunk"),
        (lambda m, x: (m, x, (3, 3), (1, 1), (9, 1), 2), ValueError, "larger than the padded input"),
        (lambda m, x: (m, x, (3, 3), (1, 1), (1, 1), 1), ValueError, "do not fit"),  # W built for 2 images
        (lambda m, x: (m, np.ascontiguousarray(x[:, :, :, :3]), (3, 3), (1, 1), (1, 1), 2), ValueError,
         "do not fit"),  # narrower image: a padded row shorter than W's
        (lambda m, x: (m, x, (3, 3, 3), (1, 1), (1, 1), 2), TypeError, "kernel_size must be a pair of ints"),
        (lambda m, x: (ps.BSRMatrix.from_dense(np.ones((4, 36), np.float32), block=(2, 2))._m, x, (3, 3), (1, 1),
                       (1, 1), 2), ValueError, "R, 1"),
    ],
    ids=["3d", "float64", "list", "not_contiguous", "kernel0", "padding_negative", "dilation0", "chunk0",
         "kernel_too_big", "matrix_for_other_chunk", "matrix_for_bigger_image", "kernel_triple", "bsr2x2"],
)
def test_conv_entry_point_bad_inputs(conv_entry, bad, error, match):
    args = bad(*conv_entry[:2])
    with pytest.raises(error, match=match):
        _core.conv2d_shifted(*args)


def test_conv_entry_point_bad_bias_and_threads(conv_entry):
    m, x, _ = conv_entry
    with pytest.raises(ValueError, match="bias"):
        _core.conv2d_shifted(m, x, (3, 3), (1, 1), (1, 1), 2, np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="threads"):
        _core.conv2d_shifted(m, x, (3, 3), (1, 1), (1, 1), 2, None, -1)


# ---------------------------------------------------------------------------
# The plan: attributes checked and the path picked once; a call checks x.


def test_plan_checks_attributes_at_construction(rng):
    w = ps.CSRMatrix.from_dense(random_sparse(rng, (8, 4 * 9), 0.3))
    with pytest.raises(ValueError, match="stride"):
        ops.Conv2dPlan(w, kernel_size=3, stride=0)
    with pytest.raises(ValueError, match="channel mismatch"):
        ops.Conv2dPlan(w, kernel_size=5)  # 36 columns are no Cin * 5 * 5
    with pytest.raises(ValueError, match="bias"):
        ops.Conv2dPlan(w, np.zeros(7, np.float32), kernel_size=3)
    with pytest.raises(ValueError, match="threads"):
        ops.Conv2dPlan(w, kernel_size=3, threads=0)
    with pytest.raises(TypeError, match="CSRMatrix"):
        ops.Conv2dPlan(w.to_dense().tolist(), kernel_size=3)
    plan = ops.Conv2dPlan(w, kernel_size=3, padding=1)
    assert plan.in_channels == 4 and plan.out_channels == 8
    with pytest.raises(ValueError, match="channel mismatch"):
        plan(np.zeros((1, 3, 5, 5), np.float32))
    with pytest.raises(ValueError, match="4-D"):
        plan(np.zeros((4, 5, 5), np.float32))
    with pytest.raises(TypeError, match="float32"):
        plan(np.zeros((1, 4, 5, 5)))


def test_plan_picks_its_path(rng):
    w2d = random_sparse(rng, (8, 4 * 9), 0.3)
    csr, nm = ps.CSRMatrix.from_dense(w2d), ps.NMMatrix.from_dense(random_nm(rng, (8, 36), 2, 4), "2:4")
    assert ops.Conv2dPlan(csr, kernel_size=3, padding=1).path == "shifted"
    assert ops.Conv2dPlan(ps.SELLMatrix.from_csr(csr), kernel_size=3).path == "shifted"
    assert ops.Conv2dPlan(csr, kernel_size=3, stride=2).path == "im2col"
    assert ops.Conv2dPlan(nm, kernel_size=3).path == "im2col"
    assert ops.Conv2dPlan(ps.BSRMatrix.from_dense(w2d, block=(4, 2)), kernel_size=3).path == "im2col"
    assert ops.Conv2dPlan(ps.CSRMatrix.from_dense(w2d[:, :4]), kernel_size=1).path == "1x1"
    assert ops.Conv2dPlan(w2d, kernel_size=3, padding=1).path == "direct"  # dense, 4 input channels: the stem kernel
    assert ops.Conv2dPlan(random_sparse(rng, (8, 5 * 9), 0.3), kernel_size=3, padding=1).path == "im2col"  # numpy


def test_plan_copies_and_bias_override(rng):
    import copy
    import pickle

    w2d = random_sparse(rng, (6, 3 * 9), 0.4)
    bias = rng.standard_normal(6).astype(np.float32)
    plan = ops.Conv2dPlan(ps.CSRMatrix.from_dense(w2d), bias, kernel_size=3, padding=1)
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    y = plan(x)
    twin = copy.deepcopy(plan)
    assert twin.weight is plan.weight and twin.offset_matrices == {}  # rebuilt on use
    assert np.array_equal(twin(x), y)
    ref = numpy_conv(x, w2d.reshape(6, 3, 3, 3), None, 1, 1, 1, 1)
    assert relerr(plan(x, np.zeros(6, np.float32)), ref) <= F32_SUM_RTOL
    assert relerr(y, ref + bias[:, None, None]) <= F32_SUM_RTOL
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(plan)  # the weight is not picklable by design


def test_conv2d_keeps_the_last_plan_of_a_weight(rng):
    # Repeated one-shot calls on one weight do not rebuild the direct path's offsets.
    w = ps.CSRMatrix.from_dense(random_sparse(rng, (4, 2 * 9), 0.5))
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    ps.conv2d(x, w, kernel_size=3, padding=1)
    plan = w._last_conv_plan
    (first,) = plan.offset_matrices.values()
    ps.conv2d(x, w, np.ones(4, np.float32), kernel_size=3, padding=1)
    assert w._last_conv_plan is plan and next(iter(plan.offset_matrices.values())) is first
    ps.conv2d(x, w, kernel_size=3, padding=2)
    assert w._last_conv_plan is not plan  # other attributes: a new plan
    import gc
    import weakref

    alive = weakref.ref(w)
    del w, plan
    gc.collect()
    assert alive() is None  # the weight and its plan go together
