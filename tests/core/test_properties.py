"""Property tests (hypothesis) for the formats and products.

For any shape (0 and 1 sizes and odd sizes included), density, block, N:M
pattern, layout of X (contiguous, Fortran, transposed, sliced columns, negative
strides, unaligned), dtype and thread count, ``W @ X`` and ``linear(x, W)`` equal
the float64 numpy product within ``F32_SUM_RTOL``, or raise the documented
error; and the result is bitwise the same for every thread count (README).

The cases through which they found issue 16's findings 1 and 2 stay as named
regressions at the end.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

# hypothesis keeps caches in ./.hypothesis by default: not in the work tree
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "pysparse-hypothesis"))
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import pysparse as ps  # noqa: E402
from pysparse import _core  # noqa: E402

from pstest import F32_SUM_RTOL, numpy_conv, random_nm  # noqa: E402

# Bounded: a few hundred examples per property, no per-example deadline (the
# machine is shared; timing noise is not a failure). CI runs this file in well
# under a minute.
# PYSPARSE_PROPERTY_EXAMPLES=N (and PYSPARSE_PROPERTY_RANDOM=1 for new examples each run)
# for a deeper local search.
PROPS = settings(max_examples=int(os.environ.get("PYSPARSE_PROPERTY_EXAMPLES", 250)), deadline=None,
                 suppress_health_check=[HealthCheck.too_slow],
                 derandomize=not os.environ.get("PYSPARSE_PROPERTY_RANDOM"),
                 database=None)

FORMATS = ("csr", "bsr", "nm", "sell")
LAYOUTS = ("c", "f", "transposed", "col_slice", "step_cols", "neg_rows", "unaligned", "first_col")
THREADS = (1, 2, 3, 4)

isas = st.sampled_from(_core.runnable_isas())


class on_isa:
    """Run a block on one ISA path (avx2, scalar ...), restoring the previous one."""

    def __init__(self, isa):
        self.isa = isa

    def __enter__(self):
        self.previous = _core.get_isa()
        _core.set_isa(self.isa)

    def __exit__(self, *exc):
        _core.set_isa(self.previous)


sizes = st.one_of(st.sampled_from([0, 1, 2, 3, 7, 8, 9, 17]), st.integers(0, 70))


@st.composite
def weights(draw):
    """(format, dense float32 W that the format can hold, builder kwargs)."""
    fmt = draw(st.sampled_from(FORMATS))
    m, k = draw(sizes), draw(sizes)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    density = draw(st.sampled_from([0.0, 0.05, 0.3, 0.7, 1.0]))
    if fmt == "nm":
        mm = draw(st.sampled_from([2, 4, 8]))
        n = draw(st.integers(1, mm))
        w = random_nm(rng, (m, k), n, mm, fill=max(density, 0.0)) if m and k else np.zeros((m, k), np.float32)
        return fmt, w, {"nm": (n, mm)}
    w = rng.standard_normal((m, k)).astype(np.float32)
    w[rng.random((m, k)) >= density] = 0.0
    if fmt == "bsr":
        c_max = max(x for x in (1, 2, 3, 4, 8) if x <= max(k, 1))  # C > K is a documented ValueError
        block = (draw(st.sampled_from([1, 2, 4, 8, 16])), draw(st.sampled_from([c for c in (1, 2, 3, 4, 8) if c <= c_max])))
        return fmt, w, {"block": block}
    return fmt, w, {}


def build(fmt, w, kw):
    if fmt == "csr":
        return ps.CSRMatrix.from_dense(w)
    if fmt == "bsr":
        return ps.BSRMatrix.from_dense(w, block=kw["block"])
    if fmt == "nm":
        return ps.NMMatrix.from_dense(w, kw["nm"])
    return ps.SELLMatrix.from_dense(w)


def layout(a, how):
    """A view of a float32 (rows, cols) array with the same values and another memory layout."""
    rows, cols = a.shape
    if how == "c":
        return np.ascontiguousarray(a)
    if how == "f":
        return np.asfortranarray(a)
    if how == "transposed":
        return np.ascontiguousarray(a.T).T
    if how == "col_slice":  # the columns of a wider C-ordered array: row stride > cols
        big = np.zeros((rows, cols + 3), np.float32)
        big[:, :cols] = a
        return big[:, :cols]
    if how == "step_cols":  # every other column of a wider array: column stride 8 bytes
        big = np.zeros((rows, 2 * cols), np.float32)
        big[:, ::2] = a
        return big[:, ::2]
    if how == "neg_rows":
        return np.ascontiguousarray(a[::-1])[::-1]
    if how == "unaligned":  # a float32 view 4 bytes past a 16-byte boundary
        buf = np.zeros(a.size * 4 + 64, np.uint8)
        start = (-buf.ctypes.data) % 16 + 4
        v = buf[start : start + a.size * 4].view(np.float32).reshape(rows, cols)
        v[...] = a
        return v
    if how == "first_col":  # X[:, :c] of a C-ordered wider array
        big = np.zeros((rows, cols + 2), np.float32)
        big[:, :cols] = a
        return big[:, :cols]
    raise AssertionError(how)


def close(y, ref):
    y = np.asarray(y, np.float64)
    if ref.size == 0:
        return True
    scale = max(float(np.max(np.abs(ref))), 1e-30)
    return float(np.max(np.abs(y - ref))) <= F32_SUM_RTOL * scale


def _check_threads(call, y1):
    for t in THREADS[1:]:
        yt = call(t)
        assert yt.dtype == np.float32 and yt.shape == y1.shape
        assert np.array_equal(yt.view(np.uint32), y1.view(np.uint32)), f"threads={t} differs from threads=1"


@PROPS
@given(weights(), st.one_of(st.just(1), sizes), st.sampled_from(LAYOUTS), st.integers(0, 2**32 - 1), isas)
def test_spmm_matches_float64(wspec, n, how, seed, isa):
    with on_isa(isa):
        _spmm_matches_float64(wspec, n, how, seed)


def _spmm_matches_float64(wspec, n, how, seed):
    fmt, w, kw = wspec
    W = build(fmt, w, kw)
    m, k = w.shape
    assert W.shape == (m, k)
    np.testing.assert_array_equal(W.to_dense(), w)
    x = layout(np.random.default_rng(seed).standard_normal((k, n)).astype(np.float32), how)
    ref = w.astype(np.float64) @ x.astype(np.float64)
    y = ps.spmm(W, x, threads=1)
    assert y.shape == (m, n) and y.dtype == np.float32
    assert close(y, ref)
    _check_threads(lambda t: ps.spmm(W, x, threads=t), y)


@PROPS
@given(weights(), st.one_of(st.just(1), sizes), st.sampled_from(LAYOUTS), st.booleans(), st.integers(0, 2**32 - 1), isas)
def test_linear_matches_float64(wspec, batch, how, with_bias, seed, isa):
    with on_isa(isa):
        _linear_matches_float64(wspec, batch, how, with_bias, seed)


def _linear_matches_float64(wspec, batch, how, with_bias, seed):
    fmt, w, kw = wspec
    W = build(fmt, w, kw)
    m, k = w.shape
    rng = np.random.default_rng(seed)
    x = layout(rng.standard_normal((batch, k)).astype(np.float32), how)
    b = rng.standard_normal(m).astype(np.float32) if with_bias else None
    ref = x.astype(np.float64) @ w.T.astype(np.float64) + (0.0 if b is None else b.astype(np.float64))
    y = ps.linear(x, W, b, threads=1)
    assert y.shape == (batch, m) and y.dtype == np.float32
    assert close(y, ref)
    _check_threads(lambda t: ps.linear(x, W, b, threads=t), y)


@PROPS
@given(weights(), st.integers(0, 2**32 - 1))
def test_1d_input_equals_one_column(wspec, seed):
    fmt, w, kw = wspec
    W = build(fmt, w, kw)
    x = np.random.default_rng(seed).standard_normal(w.shape[1]).astype(np.float32)
    y = ps.spmm(W, x)
    assert y.shape == (w.shape[0],)
    assert np.array_equal(y, ps.spmm(W, x[:, None])[:, 0])
    assert np.array_equal(ps.linear(x, W), ps.linear(x[None], W)[0])


@PROPS
@given(weights(), st.sampled_from([np.float64, np.float16, np.int32, np.int64, np.uint8, np.bool_, np.complex64]))
def test_other_dtypes_raise_type_error(wspec, dtype):
    fmt, w, kw = wspec
    W = build(fmt, w, kw)
    x = np.ones((w.shape[1], 2), dtype=dtype)
    with pytest.raises(TypeError, match="float32"):
        ps.spmm(W, x)
    with pytest.raises(TypeError, match="float32"):
        ps.linear(x.T, W)


@PROPS
@given(weights(), st.integers(0, 70), st.integers(0, 3))
def test_wrong_inner_size_raises_value_error(wspec, k2, ndim):
    fmt, w, kw = wspec
    W = build(fmt, w, kw)
    k = w.shape[1]
    shape = {0: (), 1: (k2,), 2: (k2, 3), 3: (k, 2, 2)}[ndim]
    if ndim in (1, 2) and k2 == k:
        return
    x = np.ones(shape, np.float32)
    with pytest.raises(ValueError):
        ps.spmm(W, x)
    xl = x.T if ndim == 2 else x
    with pytest.raises(ValueError):
        ps.linear(xl, W)


@PROPS
@given(st.integers(0, 40), st.integers(0, 7), st.sampled_from([1, 2, 4, 8, 16]), st.integers(2, 64))
def test_block_wider_than_matrix_raises_value_error(m, k, r, c):
    if c <= k or k == 0:  # an empty K takes any block
        return
    with pytest.raises(ValueError, match="exceed"):
        ps.BSRMatrix.from_dense(np.ones((m, k), np.float32), block=(r, c))


@PROPS
@given(weights())
def test_round_trip_through_arrays(wspec):
    """The raw-array constructors accept exactly what the matrices hand out."""
    fmt, w, kw = wspec
    W = build(fmt, w, kw)
    if fmt == "csr":
        W2 = ps.CSRMatrix(W.indptr, W.indices, W.data, W.shape)
    elif fmt == "sell":
        W2 = ps.SELLMatrix(W.indptr, W.indices, W.data, W.shape)
    elif fmt == "bsr":
        W2 = ps.BSRMatrix(W.indptr, W.indices, W.data, W.shape, block=kw["block"])
    else:
        W2 = ps.NMMatrix(W.data, W.offsets, W.shape, kw["nm"])
    np.testing.assert_array_equal(W2.to_dense(), w)
    assert W2.nnz == W.nnz and W2.shape == W.shape


@PROPS
@given(st.sampled_from(FORMATS), st.integers(1, 40), st.integers(1, 40), st.integers(1, 5),
       st.sampled_from([np.inf, -np.inf, np.nan]), st.integers(0, 2**32 - 1), isas)
def test_nonfinite_weight_stays_in_its_rows(fmt, m, k, n, bad, seed, isa):
    """Dense semantics: a non-finite weight reaches only the outputs of its own row."""
    with on_isa(isa):
        _nonfinite_weight_stays_in_its_rows(fmt, m, k, n, bad, seed)


def _nonfinite_weight_stays_in_its_rows(fmt, m, k, n, bad, seed):
    rng = np.random.default_rng(seed)
    if fmt == "nm":
        w = random_nm(rng, (m, k), 2, 4)
    else:
        w = rng.standard_normal((m, k)).astype(np.float32)
        w[rng.random((m, k)) < 0.5] = 0.0
    nz = np.argwhere(w != 0)
    if len(nz) == 0:
        return
    i, j = nz[rng.integers(len(nz))]
    w[i, j] = bad
    kw = {"nm": (2, 4), "block": ((1, 1), (2, 1), (8, 1), (1, 2))[int(rng.integers(4)) if k >= 2 else 0]}
    W = build(fmt, w, kw)
    x = np.abs(rng.standard_normal((k, n))).astype(np.float32) + 0.5
    with np.errstate(invalid="ignore", over="ignore"):
        ref = w.astype(np.float64) @ x.astype(np.float64)
    y = ps.spmm(W, x)
    others = np.arange(m) != i
    assert np.all(np.isfinite(y[others])), "a non-finite weight leaked into another row"
    assert close(y[others], ref[others])
    assert np.array_equal(np.isnan(y[i]), np.isnan(ref[i])) and np.array_equal(np.isinf(y[i]), np.isinf(ref[i]))


X4_LAYOUTS = ("c", "channels_last", "sliced_w", "sliced_c", "step_h")


def layout4(x, how):
    """A view of an (N, C, H, W) float32 array with the same values and another layout."""
    if how == "c":
        return np.ascontiguousarray(x)
    if how == "channels_last":
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    n, c, h, w = x.shape
    if how == "sliced_w":  # x[..., :w] of a wider image
        big = np.zeros((n, c, h, w + 3), np.float32)
        big[..., :w] = x
        return big[..., :w]
    if how == "sliced_c":  # the first channels of a deeper batch
        big = np.zeros((n, c + 2, h, w), np.float32)
        big[:, :c] = x
        return big[:, :c]
    big = np.zeros((n, c, 2 * h, w), np.float32)  # every other row
    big[:, :, ::2] = x
    return big[:, :, ::2]


@PROPS
@given(st.sampled_from(("csr", "bsr", "sell", "nm", "dense")), st.integers(1, 3), st.integers(1, 5), st.integers(1, 6),
       st.integers(1, 9), st.integers(1, 9), st.sampled_from([1, 2, 3]), st.sampled_from([1, 2]),
       st.sampled_from([0, 1, 2]), st.sampled_from([1, 2]), st.sampled_from(X4_LAYOUTS), st.booleans(),
       st.integers(0, 2**32 - 1), isas)
def test_conv2d_matches_float64(fmt, n, cin, cout, h, w, k, stride, pad, dil, how, with_bias, seed, isa):
    rng = np.random.default_rng(seed)
    if h + 2 * pad < dil * (k - 1) + 1 or w + 2 * pad < dil * (k - 1) + 1:
        return  # no output pixel: conv_output_size's ValueError, tested in test_conv2d
    w4 = rng.standard_normal((cout, cin, k, k)).astype(np.float32)
    flat = w4.reshape(cout, -1)
    if fmt == "nm":
        flat[...] = random_nm(rng, flat.shape, 2, 4)
    elif fmt != "dense":
        flat[rng.random(flat.shape) < 0.6] = 0.0
    w4 = flat.reshape(w4.shape)
    weight = flat if fmt == "dense" else build(fmt, flat, {"nm": (2, 4), "block": (2, 1)})
    x = rng.standard_normal((n, cin, h, w)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if with_bias else None
    ref = numpy_conv(x, w4, b, stride, pad, dil, 1)
    kw = dict(kernel_size=k, stride=stride, padding=pad, dilation=dil)
    with on_isa(isa):
        y = ps.conv2d(layout4(x, how), weight, b, threads=1, **kw)
        assert y.shape == ref.shape and y.dtype == np.float32
        assert close(y, ref)
        for t in (2, 4):
            assert np.array_equal(ps.conv2d(layout4(x, how), weight, b, threads=t, **kw), y), f"threads={t}"


CORPUS = sorted((Path(__file__).parents[1] / "fuzz" / "corpus").glob("*.pspz"))


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
@pytest.mark.parametrize("batch", [1, 3])
def test_loaded_models_take_any_input_layout(path, batch):
    """The runtime's ops see views of the caller's input: every layout gives the same bits."""
    m = ps.load(path)
    rng = np.random.default_rng(batch)
    xs = []
    for shape, dtype in zip(m.input_shapes, m.input_dtypes):  # a later free dim is a sequence length: 5
        full = [(batch if i == 0 else 5) if d is None else d for i, d in enumerate(shape)]
        xs.append(rng.integers(0, 2, full) if dtype == "int64" else rng.standard_normal(full).astype(np.float32))

    def views(x):
        wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
        wide[..., ::2] = x
        return np.asfortranarray(x), wide[..., ::2], np.ascontiguousarray(x[::-1])[::-1]

    want = m(*xs)
    want = want if isinstance(want, tuple) else (want,)
    for k in range(3):
        got = m(*[views(x)[k] for x in xs])
        got = got if isinstance(got, tuple) else (got,)
        assert all(np.array_equal(g, w) for g, w in zip(got, want)) and len(got) == len(want)


# ---------------------------------------------------------------- regressions (issue 16's findings, fixed)


@pytest.mark.parametrize("fmt", FORMATS)
def test_regression_strided_single_column(fmt):
    rng = np.random.default_rng(1)
    w = random_nm(rng, (16, 12), 2, 4)
    W = build(fmt, w, {"nm": (2, 4), "block": (8, 1)})
    x = rng.standard_normal((12, 3)).astype(np.float32)
    ref = w.astype(np.float64) @ x[:, :1].astype(np.float64)
    assert close(ps.spmm(W, x[:, :1]), ref)
    assert close(ps.linear(np.asfortranarray(x.T)[:1], W), ref.T)


@pytest.mark.parametrize("fmt", FORMATS)
def test_regression_conv2d_1x1_strided_one_pixel(fmt):
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 2, 2)
    w = np.array([[1, 0, 0, 0], [0, 1, 0, 0]], np.float32)
    y = ps.conv2d(x, build(fmt, w, {"nm": (2, 4), "block": (2, 1)}), kernel_size=1, stride=2)
    np.testing.assert_array_equal(y.ravel(), x[0, :2, 0, 0])


@pytest.mark.parametrize("isa", _core.runnable_isas())
def test_regression_nan_leak_csr_batch1(isa):
    a = np.array([[1, 0, 0, 0], [np.inf, 0, 0, 0]], np.float32)
    with on_isa(isa):
        ys = [ps.spmm(W, np.ones(4, np.float32)) for W in (ps.CSRMatrix.from_dense(a), ps.BSRMatrix.from_dense(a, block=(1, 1)))]
    assert all(y[0] == 1.0 and y[1] == np.inf for y in ys)
