"""int8 weights (bsr_int8, dense_int8): the quantization contract, every ISA against an exact
integer reference, the linear API, and hostile inputs (pysparse.formats.int8 has the contract)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import numpy as np
import pytest

import pysparse as ps
from pysparse import _core
from pysparse.formats import BSRInt8Matrix, DenseInt8Matrix, quantize_rows
from pysparse.ops import LinearPlan

QISAS = _core.runnable_qisas()
# One float32 rounding of the same exact value (numpy has no fma: the reference
# rounds t * xs + b in float64 first, so it may land one ulp away).
ULPS = 1


@pytest.fixture(params=QISAS)
def qisa(request):
    previous = _core.get_qisa()
    _core.set_qisa(request.param)
    try:
        yield request.param
    finally:
        _core.set_qisa(previous)


def quantize_x(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The kernels' activation prologue in numpy (float32 arithmetic, round half to even)."""
    x = np.asarray(x, np.float32)
    amax = np.abs(x).max(axis=1) if x.shape[1] else np.zeros(x.shape[0], np.float32)
    bad = ~np.isfinite(x).all(axis=1)
    zero = bad | ~(amax >= np.float32(2.0**-100))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv = np.where(zero, np.float32(0), np.float32(127) / amax).astype(np.float32)
        q = np.clip(np.rint(np.where(zero[:, None], np.float32(0), x * inv[:, None])), -127, 127).astype(np.int8)
    scale = np.where(bad, np.float32(np.nan), np.where(zero, np.float32(0), amax / np.float32(127))).astype(np.float32)
    return q, scale


def reference(x, w, bias=None, relu=False):
    """Exact int64 sums of the int8 values, then the contract's epilogue (float64 then float32)."""
    qx, sx = quantize_x(x)
    acc = qx.astype(np.int64) @ w.to_int8().astype(np.int64).T
    assert np.abs(acc).max(initial=0) < 2**31
    t = acc.astype(np.float32) * w.scales[None, :]
    y = t.astype(np.float64) * sx[:, None].astype(np.float64)
    if bias is not None:
        y = y + np.asarray(bias, np.float64)[None, :]
    y = y.astype(np.float32)
    if relu:
        y = np.where(y < 0, np.float32(0), y)
    return y


def assert_ulps(y, ref):
    assert y.shape == ref.shape
    nan = np.isnan(ref)
    assert np.array_equal(np.isnan(y), nan)
    a, b = y[~nan].astype(np.float32), ref[~nan].astype(np.float32)
    gap = np.abs(a.view(np.int32).astype(np.int64) - b.view(np.int32).astype(np.int64))
    same_sign = np.signbit(a) == np.signbit(b)
    ok = (same_sign & (gap <= ULPS)) | (a == b)
    assert ok.all(), f"max gap {gap.max()} ulps at {np.argwhere(~ok)[:3].tolist()}"


def block_sparse(rng, m, k, r, density):
    a = rng.standard_normal((m, k)).astype(np.float32)
    keep = rng.random((-(-m // r), -(-k // 4))) < density
    mask = np.repeat(np.repeat(keep, r, axis=0), 4, axis=1)[:m, :k]
    return a * mask


SHAPES = [(1, 1), (3, 5), (8, 4), (9, 7), (17, 33), (33, 130), (64, 301)]


@pytest.mark.parametrize("fmt", ["bsr8", "bsr4", "dense"])
@pytest.mark.parametrize("batch", [1, 2, 8, 13, 16, 33])  # 16, 33: whole and partial token tiles (nt)
def test_linear_matches_the_exact_integer_reference_on_every_isa(qisa, fmt, batch, rng):
    for m, k in SHAPES:
        r = 4 if fmt == "bsr4" else 8
        a = block_sparse(rng, m, k, r, 0.3)
        if m > 3:
            a[2] = 0.0  # an empty row: scale 0
        w = DenseInt8Matrix.from_dense(a) if fmt == "dense" else BSRInt8Matrix.from_dense(a, block=(r, 4))
        x = rng.standard_normal((batch, k)).astype(np.float32)
        bias = rng.standard_normal(m).astype(np.float32)
        for relu in (False, True):
            y = ps.linear(x, w, bias, relu=relu)
            assert_ulps(y, reference(x, w, bias, relu))
        # and against float64 dequantized math: the int8 sum times the scales
        qx, sx = quantize_x(x)
        deq = (qx * sx[:, None].astype(np.float64)) @ w.to_dense().astype(np.float64).T
        np.testing.assert_allclose(ps.linear(x, w), deq, rtol=1e-5, atol=1e-5 * np.abs(deq).max(initial=1))


def test_every_isa_gives_the_same_bits(rng):
    a = block_sparse(rng, 45, 203, 8, 0.4)
    x = rng.standard_normal((19, 203)).astype(np.float32)
    x[3, 7] = 1e30  # a huge outlier
    x[5] = 0.0
    x[6, 1] = np.nan
    x[7, 2] = -np.inf
    x[8] *= 1e-35  # below 2**-100: counts as zero
    bias = rng.standard_normal(45).astype(np.float32)
    previous = _core.get_qisa()
    outs = {}
    try:
        for name in QISAS:
            _core.set_qisa(name)
            for fmt in ("bsr8", "bsr4", "dense"):
                w = DenseInt8Matrix.from_dense(a) if fmt == "dense" else BSRInt8Matrix.from_dense(
                    a, block=(4 if fmt == "bsr4" else 8, 4))
                for batch in (1, 19):
                    outs[name, fmt, batch] = ps.linear(x[:batch], w, bias).tobytes()
    finally:
        _core.set_qisa(previous)
    for (name, fmt, batch), got in outs.items():
        assert got == outs["scalar", fmt, batch], (name, fmt, batch)
    assert "scalar" in QISAS and len(QISAS) >= 1


@pytest.mark.parametrize("batch", [1, 5, 33, 64])
def test_qlinear_epilogue_is_the_fp32_epilogue_on_the_plain_output(qisa, batch, rng):
    """activation= / residual= (qlinear.h): what _core.gelu (to an ulp or two: another kernel; the
    ctest compares with the epilogue kernel bit for bit) and an add give on the plain output, for
    every int8 ISA, format and thread count."""
    a = block_sparse(rng, 45, 203, 8, 0.4)
    x = rng.standard_normal((batch, 203)).astype(np.float32)
    bias = rng.standard_normal(45).astype(np.float32)
    res = rng.standard_normal((batch, 45)).astype(np.float32)
    for w in (BSRInt8Matrix.from_dense(a, block=(8, 4)), BSRInt8Matrix.from_dense(a, block=(4, 4)),
              DenseInt8Matrix.from_dense(a)):
        plain = _core.qlinear(x, w._m, bias)
        acts = {"gelu_erf": _core.gelu(plain), "gelu_tanh": _core.gelu(plain, "tanh"),
                "relu6": np.minimum(np.maximum(plain, np.float32(0)), np.float32(6))}
        for act, y in acts.items():
            want = y + res
            for threads in (1, 2, 3):
                got = _core.qlinear(x, w._m, bias, False, threads, activation=act, residual=res)
                if act == "relu6":
                    np.testing.assert_array_equal(got, want)
                else:  # the epilogue's GELU and _core.gelu's are separate kernels: within an ulp or two
                    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(_core.qlinear(x, w._m, bias, residual=res), plain + res)
    with pytest.raises(ValueError, match="residual must have the output's shape"):
        _core.qlinear(x, w._m, bias, residual=res[:, :3])
    with pytest.raises(ValueError):
        _core.qlinear(x, w._m, bias, activation="swish")


def test_non_finite_rows_give_nan_rows_and_zero_rows_give_the_bias(qisa, rng):
    a = block_sparse(rng, 12, 20, 8, 0.7)
    w = BSRInt8Matrix.from_dense(a)
    bias = rng.standard_normal(12).astype(np.float32)
    x = rng.standard_normal((4, 20)).astype(np.float32)
    x[0, 3] = np.nan
    x[1, 0] = np.inf
    x[2] = 0.0
    x[3] = 1e-32
    y = ps.linear(x, w, bias)
    assert np.isnan(y[0]).all() and np.isnan(y[1]).all()
    np.testing.assert_array_equal(y[2], bias)
    np.testing.assert_array_equal(y[3], bias)
    # ReLU keeps NaN (a NaN row stays visible)
    assert np.isnan(ps.linear(x[:2], w, bias, relu=True)).all()


def test_extreme_weights_and_outliers_stay_exact(qisa, rng):
    k = 4099  # odd K, many groups
    q = np.full((9, k), -128, np.int8)
    q[1] = 127
    q[2, ::2] = -128
    q[2, 1::2] = 127
    scales = np.full(9, 1e-3, np.float32)
    w = BSRInt8Matrix.from_int8(q, scales)
    x = np.full((3, k), -1e20, np.float32)
    x[1] = 3e33  # the output (about 3e33 * 0.127 * 4099) stays finite
    x[2, 5] = 1e38  # one outlier: everything else quantizes to 0
    y = ps.linear(x, w)
    assert_ulps(y, reference(x, w))
    assert np.isfinite(y).all()


def test_quantize_rows_is_symmetric_per_row_and_keeps_zeros(rng):
    a = rng.standard_normal((6, 10)).astype(np.float32)
    a[1] = 0
    a[2, 3:] = 0
    q, s = quantize_rows(a)
    assert q.dtype == np.int8 and s.dtype == np.float32
    assert s[1] == 0 and (q[1] == 0).all()
    assert (q[a == 0] == 0).all()
    np.testing.assert_array_equal(np.abs(q).max(axis=1)[[0, 2, 3]], 127)
    np.testing.assert_allclose(q * s[:, None], a, atol=float(s.max()) / 2 + 1e-7)
    with pytest.raises(ValueError, match="NaN or infinity"):
        quantize_rows(np.array([[1.0, np.nan]], np.float32))


def test_from_dense_drops_zero_blocks_and_round_trips(rng):
    a = block_sparse(rng, 19, 23, 8, 0.35)
    w = BSRInt8Matrix.from_dense(a, block=(8, 4))
    q, s = quantize_rows(a)
    np.testing.assert_array_equal(w.to_int8(), q)
    np.testing.assert_array_equal(w.scales, s)
    assert w.nblocks == int((np.pad(a != 0, ((0, 5), (0, 1))).reshape(3, 8, 6, 4).any(axis=(1, 3))).sum())
    assert w.data.shape == (w.nblocks, 8, 4) and w.data.dtype == np.int8
    assert (w.indices % 4 == 0).all()
    again = BSRInt8Matrix(w.indptr, w.indices, w.data, w.scales, w.shape, w.block)
    np.testing.assert_array_equal(again.to_int8(), q)
    # bytes: int64 indptr + uint16 indices + int8 values + float32 scales
    assert w.nbytes == w.indptr.size * 8 + w.nblocks * 2 + w.nblocks * 32 + 19 * 4
    d = DenseInt8Matrix.from_dense(a)
    np.testing.assert_array_equal(d.to_int8(), q)
    np.testing.assert_allclose(d.to_dense(), q * s[:, None])
    assert d.nbytes == 3 * 6 * 32 + 19 * 4
    assert w.label == "bsr_int8(8,4)" and d.label == "dense_int8"


def test_from_float_matrix_and_matmul(rng):
    a = block_sparse(rng, 16, 24, 8, 0.5)
    f = ps.BSRMatrix.from_dense(a, block=(8, 1))
    w = BSRInt8Matrix.from_float(f)
    np.testing.assert_array_equal(w.to_int8(), quantize_rows(a)[0])
    X = rng.standard_normal((24, 5)).astype(np.float32)
    np.testing.assert_allclose(w @ X, ps.linear(X.T.copy(), w).T, rtol=0, atol=0)
    assert (w @ X[:, 0]).shape == (16,)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_every_thread_count_gives_the_same_bits(threads, rng):
    a = block_sparse(rng, 300, 520, 8, 0.3)
    w = BSRInt8Matrix.from_dense(a)
    x = rng.standard_normal((40, 520)).astype(np.float32)
    one = ps.linear(x, w, threads=1)
    ps.set_num_threads(max(threads, ps.get_num_threads()))
    assert ps.linear(x, w, threads=threads).tobytes() == one.tobytes()
    assert ps.linear(x[0], w, threads=threads).tobytes() == one[0].tobytes()


def test_torch_inputs_strides_and_plans(rng):
    torch = pytest.importorskip("torch")
    a = block_sparse(rng, 20, 36, 4, 0.5)
    w = BSRInt8Matrix.from_dense(a, block=(4, 4))
    bias = rng.standard_normal(20).astype(np.float32)
    x = rng.standard_normal((6, 72)).astype(np.float32)
    want = ps.linear(np.ascontiguousarray(x[:, ::2]), w, bias)
    np.testing.assert_array_equal(ps.linear(x[:, ::2], w, bias), want)  # strided columns: copied
    np.testing.assert_array_equal(ps.linear(x[:, :36], w, bias), ps.linear(x[:, :36].copy(), w, bias))  # row stride
    yt = ps.linear(torch.from_numpy(x[:, ::2].copy()), w, torch.from_numpy(bias))
    assert isinstance(yt, torch.Tensor)
    np.testing.assert_array_equal(yt.numpy(), want)
    plan = LinearPlan(w, bias)
    np.testing.assert_array_equal(plan(np.ascontiguousarray(x[:, ::2])), want)


def test_nn_sparse_linear_runs_int8(rng):
    torch = pytest.importorskip("torch")
    from pysparse.nn import SparseLinear

    a = block_sparse(rng, 24, 40, 8, 0.4)
    w = BSRInt8Matrix.from_dense(a)
    mod = SparseLinear(w, torch.zeros(24))
    x = torch.from_numpy(rng.standard_normal((2, 3, 40)).astype(np.float32))
    with torch.no_grad():
        y = mod(x)
    np.testing.assert_array_equal(y.reshape(6, 24).numpy(), ps.linear(x.reshape(6, 40).numpy(), w))
    assert mod.format == "bsr_int8"


def test_bad_inputs_raise_clear_errors(rng):
    a = block_sparse(rng, 8, 8, 8, 1.0)
    w = BSRInt8Matrix.from_dense(a)
    with pytest.raises(TypeError, match="float32"):
        ps.linear(np.ones((2, 8)), w)
    with pytest.raises(ValueError, match="shape mismatch"):
        ps.linear(np.ones((2, 9), np.float32), w)
    with pytest.raises(ValueError, match="bias"):
        ps.linear(np.ones((2, 8), np.float32), w, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="1-D"):
        ps.linear(np.ones((2, 2, 8), np.float32), w)
    with pytest.raises(TypeError, match="relu"):
        ps.linear(np.ones(8, np.float32), w, relu=1)
    with pytest.raises(ValueError, match="int8 weights only"):
        ps.linear(np.ones(8, np.float32), ps.CSRMatrix.from_dense(a), relu=True)
    with pytest.raises(TypeError, match="spmm takes float32"):
        ps.spmm(w, np.ones(8, np.float32))
    with pytest.raises(ValueError, match="at most 65536"):
        BSRInt8Matrix.from_int8(np.zeros((1, 65537), np.int8), np.zeros(1, np.float32))
    with pytest.raises(ValueError, match=r"\(R, 4\)"):
        BSRInt8Matrix.from_dense(a, block=(8, 1))
    with pytest.raises(TypeError, match="int8"):
        BSRInt8Matrix.from_int8(np.zeros((2, 4), np.int16), np.zeros(2, np.float32))
    with pytest.raises(TypeError, match="conv"):
        w.shifted_source()


def _good(rng):
    a = block_sparse(rng, 10, 14, 8, 0.6)
    a[:, 0] = 1.0
    a[:, 13] = 1.0  # every block row keeps its last block, inputs 12..15 of a 14-input matrix
    w = BSRInt8Matrix.from_dense(a)
    return w.indptr.copy(), w.indices.copy(), np.array(w.data), w.scales.copy()


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda p, i, d, s: (p[:-1], i, d, s), "indptr must have"),
        (lambda p, i, d, s: (p + 1, i, d, s), r"indptr\[0\]"),
        (lambda p, i, d, s: (p[::-1].copy(), i, d, s), "indptr"),
        (lambda p, i, d, s: (p, i[:-1], d, s), "indices must have"),
        (lambda p, i, d, s: (p, i + 1, d, s), "multiple of 4"),
        (lambda p, i, d, s: (p, i * 0 + 16, d, s), "multiple of 4 in"),
        (lambda p, i, d, s: (p, i * 0 - 4, d, s), "multiple of 4 in"),
        (lambda p, i, d, s: (p, i[::-1].copy(), d, s), "increasing"),
        (lambda p, i, d, s: (p, i, d[:-1], s), "data must have"),
        (lambda p, i, d, s: (p, i, d, s[:-1]), "one entry per row"),
        (lambda p, i, d, s: (p, i, d, s * np.float32(np.nan)), "finite"),
        (lambda p, i, d, s: (p, i, d, -s - 1), ">= 0"),
    ],
)
def test_hostile_arrays_give_value_errors(mutate, match, rng):
    p, i, d, s = mutate(*_good(rng))
    with pytest.raises(ValueError, match=match):
        BSRInt8Matrix(p, i, d, s, (10, 14), (8, 4))


def test_hostile_dtypes_and_padding_weights(rng):
    p, i, d, s = _good(rng)
    with pytest.raises(TypeError, match="int8"):
        BSRInt8Matrix(p, i, d.astype(np.float32), s, (10, 14))
    with pytest.raises(TypeError, match="float32"):
        BSRInt8Matrix(p, i, d, s.astype(np.float64), (10, 14))
    with pytest.raises(TypeError, match="integer"):
        BSRInt8Matrix(p.astype(np.float64), i, d, s, (10, 14))
    # a nonzero weight past K (14 is not a multiple of 4) or below the last row
    last = int(np.argmax(i))
    assert i[last] == 12
    bad = d.copy()
    bad[last, 0, 3] = 5  # input 15
    with pytest.raises(ValueError, match="outside the matrix"):
        BSRInt8Matrix(p, i, bad, s, (10, 14))
    bad = d.copy()
    bad[-1, 7, 0] = 3  # row 15 of a 10-row matrix
    with pytest.raises(ValueError, match="outside the matrix"):
        BSRInt8Matrix(p, i, bad, s, (10, 14))
    with pytest.raises(ValueError, match="one entry per row"):
        DenseInt8Matrix(np.zeros((3, 4), np.int8), np.zeros(2, np.float32))


def _run(code, env_isa):
    env = {**os.environ, "PYSPARSE_ISA": env_isa}
    python = shlex.split(os.environ.get("PYSPARSE_TEST_PYTHON", "")) or [sys.executable]
    return subprocess.run(python + ["-c", code], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("name", QISAS)
def test_pysparse_isa_env_forces_the_int8_path(name):
    r = _run("from pysparse import _core; print(_core.get_isa(), _core.get_qisa())", name)
    assert r.returncode == 0, r.stderr
    f32, q = r.stdout.split()
    assert q == name
    avx512 = "avx512" in _core.runnable_isas()
    assert f32 == {"avxvnni": "avx2", "avx512vnni": "avx512" if avx512 else "avx2", "neondot": "neon"}.get(name, name)


def test_pysparse_isa_avx512_is_an_f32_level_that_caps_int8_below_avx512vnni():
    if "avx512" not in _core.runnable_isas():
        r = _run("import pysparse", "avx512")
        assert r.returncode != 0 and "not runnable" in r.stderr
        return
    r = _run("from pysparse import _core; print(_core.get_isa(), _core.get_qisa())", "avx512")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["avx512", "avxvnni" if "avxvnni" in QISAS else "avx2"]


def test_set_isa_with_an_int8_level_and_errors():
    previous = (_core.get_isa(), _core.get_qisa())
    try:
        for name in QISAS:
            if name in ("avxvnni", "avx512vnni", "neondot"):
                _core.set_isa(name)
                assert _core.get_qisa() == name and _core.get_isa() in ("avx2", "avx512", "neon")
        if "avx512" in _core.runnable_isas():  # an f32 name: sets the f32 ISA alone
            q = _core.get_qisa()
            _core.set_isa("avx512")
            assert _core.get_isa() == "avx512" and _core.get_qisa() == q
        with pytest.raises(ValueError, match="unknown ISA"):
            _core.set_qisa("avx9000")
        for name in ("avx2", "avxvnni", "avx512vnni", "neon", "neondot"):
            if name not in QISAS:
                with pytest.raises(ValueError, match="not runnable"):
                    _core.set_qisa(name)
    finally:
        _core.set_isa(previous[0])
        _core.set_qisa(previous[1])


def test_registry_keeps_int8_apart_from_the_float32_formats(rng):
    from pysparse import formats

    assert list(formats.INT8_FORMATS) == ["bsr_int8", "dense_int8"]
    assert not set(formats.INT8_FORMATS) & set(formats.FORMATS)  # convert's float32 candidates stay lossless
    assert formats.format_class("bsr_int8") is BSRInt8Matrix
    assert formats.format_class("dense_int8") is DenseInt8Matrix
    a = block_sparse(rng, 16, 32, 4, 0.5)
    w = formats.pack_weight(a, "bsr_int8", block=(4, 4))
    assert w.label == "bsr_int8(4,4)" and formats.format_of(w) == "bsr_int8"
    assert formats.describe_format(formats.pack_weight(a, "dense_int8")) == "dense_int8"
    np.testing.assert_array_equal(formats.pack_weight(a, "bsr_int8").to_int8(), quantize_rows(a)[0])


def test_cpu_info_names_the_int8_isa():
    info = ps.cpu_info()
    assert info["int8_isa"] == _core.get_qisa() and info["int8_runnable"] == QISAS
    assert QISAS[-1] == "scalar"
    if _core.get_isa() in ("avx2", "avx512"):
        assert set(QISAS) <= {"avx512vnni", "avxvnni", "avx2", "scalar"} and "avx2" in QISAS


@pytest.mark.parametrize("batch", [15, 16, 17, 31, 32, 33, 47, 100, 257])
def test_qlinear_split_by_tokens_gives_the_bits_of_one_thread(qisa, batch, rng):
    """From two activation tiles of tokens on (8 for the nx kernels, kQTile = 16 for nt), a
    multi-thread qlinear splits x by tokens, each thread quantizing its own (qlinear.cc): every
    thread count must give the one-thread bits, with bias, activation and residual fused, a NaN
    token row and a strided x; batches around both tile sizes."""
    _check_qlinear_bits_on_every_thread_count(block_sparse(rng, 200, 203, 8, 0.4), batch, "gelu_tanh", rng,
                                              formats=((8, 4), (4, 4), "dense"))


def _check_qlinear_bits_on_every_thread_count(a, batch, act, rng, formats):
    """_core.qlinear of `a` in each of `formats` ((r, 4) blocks or "dense") with bias, `act` and a
    residual fused, and plain, on a strided x with one NaN token: 2-4 threads give the bits of 1."""
    m, k = a.shape
    wide = rng.standard_normal((batch, k + 8)).astype(np.float32)
    x = wide[:, :k]  # rows k + 8 floats apart
    x[rng.integers(batch), rng.integers(k)] = np.nan
    bias = rng.standard_normal(m).astype(np.float32)
    res = rng.standard_normal((batch, m)).astype(np.float32)
    previous = ps.get_num_threads()
    try:
        for f in formats:
            w = DenseInt8Matrix.from_dense(a) if f == "dense" else BSRInt8Matrix.from_dense(a, block=f)
            ps.set_num_threads(1)
            want = _core.qlinear(x, w._m, bias, False, 1, activation=act, residual=res)
            plain = _core.qlinear(x, w._m, bias, False, 1)
            assert np.isnan(plain).any(axis=1).sum() == 1
            ps.set_num_threads(4)
            for threads in (2, 3, 4):
                got = _core.qlinear(x, w._m, bias, False, threads, activation=act, residual=res)
                np.testing.assert_array_equal(got, want)
                np.testing.assert_array_equal(_core.qlinear(x, w._m, bias, False, threads), plain)
    finally:
        ps.set_num_threads(previous)


@pytest.mark.parametrize("batch", [2, 9, 20])
def test_qlinear_row_split_with_few_tokens_gives_the_bits_of_one_thread(qisa, batch, rng):
    """Under two activation tiles of tokens a multi-thread qlinear splits W by rows, and only with
    enough work per thread (qlinear.cc: kMinRowSplitQWork); the tokens are quantized by several
    threads only when there are enough of them. A layer big enough for 4 threads at a few tokens
    must give the one-thread bits on every thread count, bias, activation and residual fused."""
    _check_qlinear_bits_on_every_thread_count(block_sparse(rng, 1024, 1024, 8, 0.6), batch, "relu6", rng,
                                              formats=((8, 4), "dense"))
