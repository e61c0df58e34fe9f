"""SELLMatrix (SELL-8-sigma): results against numpy float64 and against CSR over shapes
that cover partial slices and several sort windows, every ISA and thread count,
non-finite inputs, the conversions, bad input, save/load and convert."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import pysparse as ps
from pysparse import _core
from pysparse import io as psio
from pysparse.runtime import ModelFileError, csr_pack

from pstest import F32_SUM_RTOL, random_nm, random_sparse, relerr

# Rows: partial and whole slices of 8, and 1, 2 and 3 sort windows of 128 rows.
ROWS = [1, 2, 7, 8, 9, 63, 64, 65, 127, 128, 129, 300]
DENSITIES = [0.0, 0.01, 0.1, 0.5, 1.0]


def reference(a: np.ndarray, x: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    y = a.astype(np.float64) @ x.astype(np.float64)
    return y if bias is None else y + (bias[:, None] if y.ndim == 2 else bias)


@pytest.mark.parametrize("density", DENSITIES)
@pytest.mark.parametrize("rows", ROWS)
def test_matches_numpy_float64(rng, isa, rows, density):
    k = 37 if rows % 2 else 131  # odd K, below and above one 128-wide vector sweep
    a = random_sparse(rng, (rows, k), density, empty_rows=rows // 5)
    w = ps.SELLMatrix.from_dense(a)
    csr = ps.CSRMatrix.from_dense(a)
    bias = rng.standard_normal(rows).astype(np.float32)
    for n in (1, 5):
        x = rng.standard_normal((k, n) if n > 1 else k).astype(np.float32)
        for b in (None, bias):
            y = ps.spmm(w, x, bias=b)
            ref = reference(a, x, b)
            assert y.shape == ref.shape and y.dtype == np.float32
            assert relerr(y, ref) <= F32_SUM_RTOL
            assert relerr(y, ps.spmm(csr, x, bias=b)) <= F32_SUM_RTOL
        xb = rng.standard_normal((n, k)).astype(np.float32)
        y = ps.linear(xb, w, bias)
        assert y.shape == (n, rows) and relerr(y, reference(a, xb.T, bias).T) <= F32_SUM_RTOL
        assert relerr(w @ xb.T, a.astype(np.float64) @ xb.T) <= F32_SUM_RTOL


@pytest.mark.parametrize("n", [1, 3, 8])
def test_bitwise_identical_across_thread_counts(rng, isa, n):
    a = random_sparse(rng, (700, 301), 0.3, empty_rows=20)  # 6 windows: several threads get work
    w = ps.SELLMatrix.from_dense(a)
    if _core.default_num_threads() >= 2:
        assert _core.testing.threads_for(w._m, n, 4) >= 2  # the split is really exercised
    x = rng.standard_normal((301, n) if n > 1 else 301).astype(np.float32)
    bias = rng.standard_normal(700).astype(np.float32)
    one = ps.spmm(w, x, bias=bias, threads=1)
    assert relerr(one, reference(a, x, bias)) <= F32_SUM_RTOL
    for t in (2, 3, 4):
        np.testing.assert_array_equal(ps.spmm(w, x, bias=bias, threads=t), one)


def test_torch_inputs_give_torch_outputs(rng):
    torch = pytest.importorskip("torch")
    a = random_sparse(rng, (65, 33), 0.2)
    w = ps.SELLMatrix.from_dense(a)
    x = torch.from_numpy(rng.standard_normal((4, 33)).astype(np.float32))
    bias = torch.from_numpy(rng.standard_normal(65).astype(np.float32))
    y = ps.linear(x, w, bias)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32 and tuple(y.shape) == (4, 65)
    assert relerr(y.numpy(), reference(a, x.numpy().T, bias.numpy()).T) <= F32_SUM_RTOL
    y1 = ps.spmm(w, x[0])
    assert isinstance(y1, torch.Tensor) and relerr(y1.numpy(), a.astype(np.float64) @ x[0].numpy()) <= F32_SUM_RTOL
    # from_torch: a dense tensor and a sparse one
    assert np.array_equal(ps.SELLMatrix.from_torch(torch.from_numpy(a)).to_dense(), a)
    assert np.array_equal(ps.SELLMatrix.from_torch(torch.from_numpy(a).to_sparse_coo()).to_dense(), a)


def _mixed_slice() -> np.ndarray:
    """9 rows (a full slice and one more) of different lengths; only row 0 and row 8 use column 0."""
    a = np.zeros((9, 6), np.float32)
    a[0, [0, 2, 5]] = [1.0, 2.0, 3.0]  # uses column 0, longest of its slice
    a[1, 1] = 4.0  # short rows: padded with zeros at column 0 in SELL
    a[2, [3, 4]] = [5.0, -1.0]
    a[4, 5] = 2.5
    a[5, [1, 2, 3, 4]] = [1.0, 1.0, 1.0, 1.0]
    a[7, 2] = -3.0  # rows 3 and 6 stay empty
    a[8, [0, 1]] = [1.0, 1.0]
    return a


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_nonfinite_x_propagates_like_csr(isa, bad):
    a = _mixed_slice()
    w, csr = ps.SELLMatrix.from_dense(a), ps.CSRMatrix.from_dense(a)
    assert w.padding > 0  # the case really pads short rows
    x = np.arange(1, 7, dtype=np.float32)
    x[0] = bad  # padding slots point at column 0
    for xx in (x, np.stack([x, x * 2, x[::-1]], axis=1)):
        y = ps.spmm(w, xx)
        np.testing.assert_array_equal(y, ps.spmm(csr, xx))  # NaN where CSR has NaN, nowhere else
    y = ps.spmm(w, x)
    assert np.all(np.isfinite(np.delete(y, [0, 8])))  # rows that do not read column 0
    assert not np.isfinite(y[0]) and not np.isfinite(y[8])
    assert y[3] == 0.0 and y[6] == 0.0


def test_nonfinite_random_matches_csr(rng, isa):
    a = random_sparse(rng, (300, 77), 0.1, empty_rows=30)
    w, csr = ps.SELLMatrix.from_dense(a), ps.CSRMatrix.from_dense(a)
    x = rng.standard_normal((77, 4)).astype(np.float32)
    x[0, :] = [np.inf, -np.inf, np.nan, 1.0]
    x[rng.choice(77, 5, replace=False), 3] = np.nan
    y, yc = ps.spmm(w, x), ps.spmm(csr, x)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(yc))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(yc))
    fin = np.isfinite(yc)
    assert fin.any() and relerr(y[fin], yc[fin]) <= F32_SUM_RTOL
    for j in range(4):
        np.testing.assert_array_equal(np.isnan(ps.spmm(w, np.ascontiguousarray(x[:, j]))), np.isnan(yc[:, j]))


@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (5, 0), (1, 1), (9, 7), (129, 65), (300, 131)])
@pytest.mark.parametrize("density", [0.0, 0.1, 1.0])
def test_round_trips_are_exact(rng, shape, density):
    a = random_sparse(rng, shape, density, empty_rows=shape[0] // 4)
    w = ps.SELLMatrix.from_dense(a)
    csr = w.to_csr()
    assert isinstance(csr, ps.CSRMatrix) and csr.shape == shape
    np.testing.assert_array_equal(w.to_dense(), a)
    np.testing.assert_array_equal(csr.to_dense(), a)
    ref = ps.CSRMatrix.from_dense(a)
    for got, want in ((w.indptr, ref.indptr), (w.indices, ref.indices), (w.data, ref.data)):
        np.testing.assert_array_equal(got, want)
    again = ps.SELLMatrix(np.array(w.indptr), np.array(w.indices), np.array(w.data), shape)
    np.testing.assert_array_equal(again.to_dense(), a)
    np.testing.assert_array_equal(ps.SELLMatrix.from_csr(ref).to_dense(), a)


def test_from_scipy_goes_through_csr(rng):
    """COO with a duplicated entry (summed, as CSRMatrix.from_scipy does), then back to scipy."""
    sp = pytest.importorskip("scipy.sparse")
    a = random_sparse(rng, (130, 70), 0.2)
    r, c = np.nonzero(a)
    rows, cols = np.append(r, r[0]), np.append(c, c[0])
    vals = np.append(a[r, c], np.float32(1.5))
    a[r[0], c[0]] += np.float32(1.5)
    w = ps.SELLMatrix.from_scipy(sp.coo_matrix((vals, (rows, cols)), shape=a.shape))
    assert w.nnz == len(r)
    np.testing.assert_array_equal(w.to_dense(), a)
    assert (w.to_scipy() != sp.csr_matrix(a)).nnz == 0


def test_properties(rng):
    a = random_sparse(rng, (1024, 768), 0.1, empty_rows=10)
    w, csr = ps.SELLMatrix.from_dense(a), ps.CSRMatrix.from_dense(a)
    nnz = int(np.count_nonzero(a))
    assert w.format == "sell" and w.block == (1, 1) and w.shape == (1024, 768)
    assert w.nnz == nnz == csr.nnz  # true nonzeros, padding excluded
    assert w.density == pytest.approx(nnz / a.size)
    assert w.padding == w._m.stored_values - nnz and 0 <= w.padding <= 0.1 * nnz  # sorted windows pad little
    assert w.dtype == np.float32 and w.index_dtype == np.uint16
    assert 0.8 <= w.nbytes / csr.nbytes <= 1.25
    assert w._m.layout == "sell" and w._m.block == (8, 1)
    text = repr(w)
    assert text.startswith("SELLMatrix(shape=(1024, 768)") and f"nnz={nnz}" in text and "padding=" in text
    assert copy.deepcopy(w) is w and copy.copy(w) is w
    with pytest.raises(TypeError, match="pysparse.save"):
        pickle.dumps(w)
    assert w.to_csr() is w.to_csr()  # built once, then shared
    for arr in (w.indptr, w.indices, w.data, w._m.row_of, w._m.row_len, w._m.values):
        assert not arr.flags.writeable
    assert isinstance(w, ps.SparseMatrixBase) and "SELLMatrix" in ps.__all__


def test_kernels_listed():
    names = {k["name"] for k in _core.kernels() if k["format"] == "sell"}
    for isa in _core.runnable_isas():
        batches = ("nx",) if isa == "avx512" else ("n1", "nx")  # avx512's batch 1 runs avx2's kernel
        assert {f"f32_spmm_sell_{b}__{isa}" for b in batches} <= names
    kernels = ps.cpu_info()["kernels"]
    assert kernels["sell_n1"].startswith("f32_spmm_sell_n1__") and kernels["sell_nx"].startswith("f32_spmm_sell_nx__")


def test_bad_input():
    with pytest.raises(ValueError, match="CSR"):
        ps.BSRMatrix.from_dense(np.ones((8, 8), np.float32), block=(8, 1))._m.to_sell()
    with pytest.raises(ValueError, match="CSR"):
        ps.NMMatrix.from_dense(random_nm(np.random.default_rng(0), (8, 8), 2, 4), "2:4")._m.to_sell()
    with pytest.raises(ValueError, match="SELL"):
        ps.CSRMatrix.from_dense(np.eye(3, dtype=np.float32))._m.to_csr()
    with pytest.raises(TypeError, match="CSRMatrix"):
        ps.SELLMatrix.from_csr(ps.BSRMatrix.from_dense(np.ones((8, 8), np.float32), block=(8, 1)))
    with pytest.raises(ValueError, match="2-D"):
        ps.SELLMatrix.from_dense(np.ones(4, np.float32))
    with pytest.raises(ValueError, match="1-D"):
        ps.SELLMatrix([0, 1], [0], np.ones((1, 1), np.float32), (1, 1))
    w = ps.SELLMatrix.from_dense(np.eye(4, 6, dtype=np.float32))
    with pytest.raises(ValueError, match="shape mismatch"):
        ps.spmm(w, np.ones(5, np.float32))
    with pytest.raises(ValueError, match="bias must have shape"):
        ps.linear(np.ones((2, 6), np.float32), w, np.ones(5, np.float32))
    with pytest.raises(TypeError, match="float32"):
        ps.spmm(w, np.ones(6))
    with pytest.raises(ValueError, match="SELL"):
        _core.testing.spmm_shifted(w._m, np.ones(20, np.float32), 4)
    with pytest.raises(ValueError, match="SELL"):
        _core.conv2d_shifted(w._m, np.ones((1, 1, 3, 3), np.float32), (1, 1), (0, 0), (1, 1), 1)


@pytest.mark.parametrize("stride", [1, 2])
def test_conv2d_with_a_sell_weight(rng, isa, stride):
    """conv2d takes SELL: im2col / 1x1 paths run it, the direct path runs its CSR view."""
    cout, cin = 16, 3
    w2d = random_sparse(rng, (cout, cin * 9), 0.3, empty_rows=2)
    w, csr = ps.SELLMatrix.from_dense(w2d), ps.CSRMatrix.from_dense(w2d)
    x = rng.standard_normal((2, cin, 7, 6)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    kw = dict(kernel_size=3, stride=stride, padding=1)
    y = ps.conv2d(x, w, bias, **kw)
    assert w._csr is None  # the direct path keeps no CSR copy on the weight
    assert relerr(y, ps.conv2d(x, csr, bias, **kw)) <= F32_SUM_RTOL
    assert relerr(y, ps.conv2d(x, w2d, bias, **kw)) <= F32_SUM_RTOL
    one = ps.SELLMatrix.from_dense(w2d[:, :cin])  # 1x1
    assert relerr(ps.conv2d(x, one, kernel_size=1), ps.conv2d(x, np.ascontiguousarray(w2d[:, :cin]), kernel_size=1)) \
        <= F32_SUM_RTOL
    with pytest.raises(ValueError, match="dense weight"):
        ps.conv2d(x, ps.SELLMatrix.from_dense(w2d[:, :9]), kernel_size=3, groups=3)


def _sell_file_graph(w: np.ndarray, fmt: str = "sell") -> tuple[dict, dict]:
    csr = ps.CSRMatrix.from_dense(w)
    arrays = {f"fc.{k}": v for k, v in csr_pack(csr.indptr, csr.indices, csr.data, *w.shape).items()}
    graph = {
        "inputs": [{"name": "x", "shape": [None, w.shape[1]]}],
        "outputs": ["fc"],
        "nodes": [{"name": "fc", "op": "linear", "inputs": ["x"],
                   "attrs": {"in_features": w.shape[1], "out_features": w.shape[0], "format": fmt},
                   "params": {"bucket_nnz": "fc.bucket_nnz", "col_lo": "fc.col_lo", "data": "fc.data"}}],
    }
    return graph, arrays


def test_torch_free_file_with_a_sell_layer(rng, tmp_path):
    w = random_sparse(rng, (130, 300), 0.1, empty_rows=5)  # 300 > 256: two CSR buckets
    graph, arrays = _sell_file_graph(w)
    psio.write_file(tmp_path / "sell.pspz", graph, arrays)
    m = ps.load(tmp_path / "sell.pspz")
    mat = m.matrix("fc")
    assert isinstance(mat, ps.SELLMatrix) and [li.format for li in m.layers] == ["sell"]
    np.testing.assert_array_equal(mat.to_dense(), w)
    for n in (1, 3):
        x = rng.standard_normal((n, 300)).astype(np.float32)
        assert relerr(m(x), x.astype(np.float64) @ w.T) <= F32_SUM_RTOL
    dense = m.densified()
    assert [li.format for li in dense.layers] == ["dense"]
    # a CSR layer of the same arrays stays CSR (files written before SELL load as before)
    graph, arrays = _sell_file_graph(w, "csr")
    psio.write_file(tmp_path / "csr.pspz", graph, arrays)
    assert type(ps.load(tmp_path / "csr.pspz").matrix("fc")) is ps.CSRMatrix


def test_cli_inspect_and_info_show_sell(rng, tmp_path, capsys):
    from pysparse.cli import main

    graph, arrays = _sell_file_graph(random_sparse(rng, (20, 30), 0.2))
    psio.write_file(tmp_path / "sell.pspz", graph, arrays)
    assert main(["inspect", str(tmp_path / "sell.pspz")]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("fc")]
    assert rows and rows[0][2] == "sell"
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "sell_n1" in out and ps.cpu_info()["kernels"]["sell_n1"] in out


@pytest.mark.parametrize("fmt", ["SELL", "sell8", "", 3, None])
def test_file_with_an_unknown_format_tag(rng, tmp_path, fmt):
    graph, arrays = _sell_file_graph(random_sparse(rng, (9, 20), 0.3))
    graph["nodes"][0]["attrs"]["format"] = fmt
    psio.write_file(tmp_path / "bad.pspz", graph, arrays)
    with pytest.raises(ModelFileError):
        ps.load(tmp_path / "bad.pspz")


def test_file_with_hostile_sell_arrays(rng, tmp_path):
    graph, arrays = _sell_file_graph(random_sparse(rng, (9, 20), 0.3))
    arrays["fc.col_lo"] = np.full_like(arrays["fc.col_lo"], 200)  # columns past K = 20
    psio.write_file(tmp_path / "bad.pspz", graph, arrays)
    with pytest.raises(ModelFileError):
        ps.load(tmp_path / "bad.pspz")


def test_save_load_round_trip(rng, tmp_path):
    torch = pytest.importorskip("torch")
    from pysparse import nn as psnn

    torch.manual_seed(0)
    fc1, fc2 = torch.nn.Linear(300, 130), torch.nn.Linear(130, 10)
    with torch.no_grad():
        fc1.weight.copy_(torch.from_numpy(random_sparse(rng, (130, 300), 0.1, empty_rows=4)))
        fc2.weight.copy_(torch.from_numpy(random_sparse(rng, (10, 130), 0.3)))
    model = torch.nn.Sequential(
        psnn.SparseLinear.from_module(fc1, "sell"), torch.nn.ReLU(), psnn.SparseLinear.from_module(fc2, "csr")
    ).eval()
    assert isinstance(model[0].weight, ps.SELLMatrix) and model[0].format == "sell"
    ps.save(model, tmp_path / "m.pspz", torch.randn(2, 300))
    assert model[0].weight._csr is None  # saving leaves no CSR copy behind on the weight
    m = ps.load(tmp_path / "m.pspz")
    assert [li.format for li in m.layers] == ["sell", "csr"]
    assert isinstance(m.matrix(m.layers[0].name), ps.SELLMatrix)
    np.testing.assert_array_equal(m.matrix(m.layers[0].name).to_dense(), fc1.weight.detach().numpy())
    for n in (1, 4):
        x = torch.randn(n, 300)
        with torch.no_grad():
            ref = model(x).numpy()
        np.testing.assert_array_equal(m(x.numpy()), ref)  # same kernels, same order: bitwise


def test_sparse_linear_under_torch_export(rng):
    torch = pytest.importorskip("torch")
    from pysparse import nn as psnn

    a = random_sparse(rng, (65, 40), 0.2, empty_rows=3)
    net = torch.nn.Sequential(psnn.SparseLinear(ps.SELLMatrix.from_dense(a), np.ones(65, np.float32))).eval()
    x = torch.randn(3, 40)
    ep = torch.export.export(net, (x,))
    assert "pysparse.linear.default" in {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    with torch.no_grad():
        y = ep.module()(x).numpy()
        np.testing.assert_array_equal(y, net(x).numpy())
    assert relerr(y, x.numpy().astype(np.float64) @ a.T + 1.0) <= F32_SUM_RTOL


def test_convert_times_sell_and_keeps_outputs(rng):
    torch = pytest.importorskip("torch")

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 64))
    with torch.no_grad():
        for i in (0, 2):
            w = model[i].weight
            w.copy_(torch.from_numpy(random_sparse(rng, tuple(w.shape), 0.1)))
    model.eval()
    x = torch.randn(3, 256)
    with torch.no_grad():
        ref = model.double()(x.double()).numpy()
        model.float()
    for batch in (1, 8):
        # min_speedup ~ 0: the best sparse candidate is kept even on a loaded machine
        sm = ps.convert(model, batch=batch, min_speedup=1e-9, progress=False)
        big = sm.pysparse_report_.layers[0]
        assert {"dense", "csr", "sell"} <= set(big.times_us)  # SELL is timed like the others by default
        assert big.format in ("csr", "sell") and sm[0].format == big.format
        with torch.no_grad():
            assert relerr(sm(x).numpy(), ref) <= F32_SUM_RTOL
    sm = ps.convert(model, formats=("sell",), progress=False)
    assert isinstance(sm[0].weight, ps.SELLMatrix) and isinstance(sm[2].weight, ps.SELLMatrix)
    with torch.no_grad():
        assert relerr(sm(x).numpy(), ref) <= F32_SUM_RTOL
    assert isinstance(ps.formats.pack_weight(model[0].weight, "sell"), ps.SELLMatrix)


def test_convert_does_not_time_sell_for_convs(rng):
    torch = pytest.importorskip("torch")

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 16, 3, padding=1)
    with torch.no_grad():
        conv.weight.mul_(torch.from_numpy(random_sparse(rng, (16, 72), 0.1) != 0).reshape(conv.weight.shape))
    sm = ps.convert(torch.nn.Sequential(conv), example_inputs=torch.randn(1, 8, 6, 6), progress=False)
    layer = sm.pysparse_report_.layers[0]
    assert "csr" in layer.times_us and "sell" not in layer.times_us
