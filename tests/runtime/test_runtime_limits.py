"""The loader's bounds and error contract (issue 16, findings 5 and 6), torch-free.

Tiny hostile files must be refused fast, with ModelFileError naming the node and the bound, and
without the memory they ask for (checked in a subprocess under an address-space limit); real
models (MNIST MLP, a small CNN, MobileNetV2 at 224x224, a BERT-base-sized stack) must still load.
A loaded model takes non-contiguous inputs and gives what it gives for contiguous ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pysparse as ps
from pysparse.runtime import Model, ModelFileError

from _model_files import bert_sized, hostile, mobilenet_v2, node, write

DATA = Path(__file__).parents[1] / "data"

# Address space for a subprocess that loads a hostile file: the interpreter with numpy and
# pysparse takes about 150 MiB, the dry run may hold 512 MiB (MAX_DRY_RUN_BYTES).
HOSTILE_AS_LIMIT = 2 << 30
# Refusing a hostile file is a few checks (before any node runs); the
# bound is loose because the test machine is shared.
HOSTILE_SECONDS = 10.0

_LOAD_IN_LIMIT = r"""
import json, resource, sys, time
import numpy as np, pysparse as ps
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
t = time.perf_counter()
out = {}
try:
    m = ps.load(sys.argv[1])
    out["loaded"] = True
    out["summary"] = m.summary()
    try:
        m.densified()
    except MemoryError as e:
        out["densified"] = str(e)
except Exception as e:
    out["error"], out["message"] = type(e).__name__, str(e)
out["seconds"] = time.perf_counter() - t
print(json.dumps(out))
"""

_no_emulator = pytest.mark.skipif(
    bool(os.environ.get("PYSPARSE_TEST_PYTHON")), reason="an emulator reserves its own address space"
)


def _load_in_subprocess(path):
    r = subprocess.run([sys.executable, "-c", _LOAD_IN_LIMIT, str(path), str(HOSTILE_AS_LIMIT)],
                       capture_output=True, text=True, timeout=300, cwd=path.parent)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@_no_emulator
@pytest.mark.parametrize(
    "case, node, message",
    [
        ("max-pool-256", "p", "work of one batch-1 run"),
        ("max-pool-dilated", "p", "MiB at batch 1"),  # its work is over the bound too; memory is checked first
        ("relu-fanout", "r0", "MiB at batch 1"),
        ("strided-conv-im2col", "c", "MiB at batch 1"),
    ],
)
def test_tiny_hostile_file_is_refused_fast_without_the_memory(tmp_path, case, node, message):
    path = write(tmp_path / f"{case}.pspz", *hostile(case))
    assert path.stat().st_size < 1000
    out = _load_in_subprocess(path)
    assert out.get("error") == "ModelFileError", out
    assert f"node {node!r}" in out["message"] and message in out["message"], out["message"]
    assert out["seconds"] < HOSTILE_SECONDS, out


@_no_emulator
def test_huge_empty_matrix_inspects_without_densifying(tmp_path):
    """A 33 KB file declaring an empty 65536 x 65536 BSR weight: the summary counts the stored
    values (it used to densify 16 GiB); the dense twin (pysparse bench) refuses with MemoryError."""
    path = write(tmp_path / "huge.pspz", *hostile("huge-empty-linear"))
    out = _load_in_subprocess(path)
    assert out.get("loaded"), out
    assert "65536x65536" in out["summary"] and "100.0%" in out["summary"]
    assert "dense twin" in out["densified"] and "16.0 GiB" in out["densified"]


def test_summary_sparsity_counts_stored_values_like_the_dense_matrix(rng):
    """Counting nonzeros on the stored values gives the dense count, for every format (BSR with an
    overhanging last block row and N:M with rows not a multiple of 8 included)."""
    from pysparse.runtime import csr_pack

    from pstest import random_nm, random_sparse

    w = {"csr": random_sparse(rng, (13, 300), 0.2), "bsr": random_sparse(rng, (13, 24), 0.5, block=(8, 1)),
         "nm": random_nm(rng, (13, 16), 2, 4)}
    w["bsr"][12, :] = 1.0  # the overhanging row of the last block row holds values
    mats = {"csr": ps.CSRMatrix.from_dense(w["csr"]), "bsr": ps.BSRMatrix.from_dense(w["bsr"], block=(8, 1)),
            "nm": ps.NMMatrix.from_dense(w["nm"], "2:4")}
    arrays = {f"csr.{k}": v for k, v in csr_pack(mats["csr"].indptr, mats["csr"].indices, mats["csr"].data, 13, 300).items()}
    arrays.update({"bsr.indptr": mats["bsr"].indptr, "bsr.indices": mats["bsr"].indices,
                   "bsr.data": np.ascontiguousarray(mats["bsr"].data),
                   "nm.data": mats["nm"].data, "nm.offsets": mats["nm"].offsets})
    nodes, inputs = [], []
    for fmt, extra, roles in (("csr", {}, ("bucket_nnz", "col_lo", "data")), ("bsr", {"block": [8, 1]}, ("indptr", "indices", "data")),
                              ("nm", {"nm": [2, 4]}, ("data", "offsets"))):
        rows, cols = w[fmt].shape
        inputs.append({"name": f"x{fmt}", "shape": [None, cols]})
        nodes.append({"name": fmt, "op": "linear", "inputs": [f"x{fmt}"],
                      "attrs": {"in_features": cols, "out_features": rows, "format": fmt, **extra},
                      "params": {r: f"{fmt}.{r}" for r in roles}})
    m = Model({"inputs": inputs, "outputs": ["csr", "bsr", "nm"], "nodes": nodes}, arrays)
    got = {li.name: li.sparsity for li in m.layers}
    for fmt in w:
        dense = m.matrix(fmt).to_dense()
        assert got[fmt] == pytest.approx(1.0 - np.count_nonzero(dense) / dense.size, abs=0), fmt


# ---------------------------------------------------------------- real models still load


def test_mnist_sized_mlp_loads(rng):
    """(N, 1, 28, 28) -> flatten -> 784-512-512-10 dense, relu between, log_softmax."""
    nodes, arrays = [{"name": "h", "op": "flatten", "inputs": ["x"], "attrs": {"start_dim": 1}}], {}
    for i, (cin, cout) in enumerate([(784, 512), (512, 512), (512, 10)]):
        arrays[f"fc{i}.weight"] = (rng.standard_normal((cout, cin)) / np.sqrt(cin)).astype(np.float32)
        arrays[f"fc{i}.bias"] = np.zeros(cout, np.float32)
        nodes.append({"name": f"fc{i}", "op": "linear", "inputs": [nodes[-1]["name"]],
                      "attrs": {"in_features": cin, "out_features": cout, "format": "dense"},
                      "params": {"weight": f"fc{i}.weight", "bias": f"fc{i}.bias"}})
        nodes.append({"name": f"act{i}", "op": "relu" if i < 2 else "log_softmax", "inputs": [f"fc{i}"],
                      "attrs": {} if i < 2 else {"dim": 1}})
    m = Model({"inputs": [{"name": "x", "shape": [None, 1, 28, 28]}], "outputs": ["act2"], "nodes": nodes}, arrays)
    y = m(rng.standard_normal((64, 1, 28, 28)).astype(np.float32))
    assert y.shape == (64, 10) and np.allclose(np.exp(y).sum(axis=1), 1.0, atol=1e-5)


def test_small_cnn_file_loads():
    m = ps.load(DATA / "v1_cnn.pspz")
    assert m(np.zeros((1, 3, 16, 16), np.float32)).shape == (1, 10)


def test_mobilenet_v2_at_224_loads(rng):
    graph, arrays = mobilenet_v2(rng, 224)
    m = Model(graph, arrays)
    assert sum(1 for n in graph["nodes"] if n["op"] == "conv2d") == 52
    y = m(rng.standard_normal((1, 3, 224, 224)).astype(np.float32))
    assert y.shape == (1, 1000) and np.isfinite(y).all()


def test_bert_base_sized_stack_loads(rng):
    """12 layers of hidden 768, feed-forward 3072, 128 tokens, BSR weights keeping 1 column in 8."""
    graph, arrays = bert_sized(rng, tokens=128)
    m = Model(graph, arrays)
    assert sum(1 for n in graph["nodes"] if n["op"] == "linear") == 72
    y = m(rng.standard_normal((1, 128, 768)).astype(np.float32))
    assert y.shape == (1, 128, 768) and np.isfinite(y).all()


def test_dense_bert_base_at_512_tokens_fits_the_load_bounds():
    """The cost model's verdict on a dense BERT-base-sized layer at 512 tokens, times 12 layers:
    within MAX_DRY_RUN_WORK and MAX_DRY_RUN_BYTES (building it for real would take 700 MB)."""
    from pysparse.runtime import OPS
    from pysparse.runtime.schema import MAX_DRY_RUN_BYTES, MAX_DRY_RUN_WORK

    def linear(cin, cout):
        attrs = {"in_features": cin, "out_features": cout, "format": "dense"}
        return OPS["linear"].cost(attrs, {"weight": np.broadcast_to(np.float32(0), (cout, cin))},
                                  [np.broadcast_to(np.float32(0), (1, 512, cin))])

    def pointwise(op, width, attrs=None):
        return OPS[op].cost(attrs or {}, {}, [np.broadcast_to(np.float32(0), (1, 512, width))] * OPS[op].inputs[0])

    layer = [linear(768, 768)] * 4 + [linear(768, 3072), pointwise("gelu", 3072), linear(3072, 768)]
    layer += [pointwise("add", 768), pointwise("layer_norm", 768, {"normalized_shape": (768,)})] * 2
    work = 12 * sum(c.work + c.out for c in layer)
    assert 12 * (4 * 768 * 768 + 2 * 768 * 3072) * 512 / 16 < work <= MAX_DRY_RUN_WORK  # > the multiply-adds alone
    assert max(4 * (c.out + c.scratch) for c in layer) + 4 * 3 * 512 * 3072 <= MAX_DRY_RUN_BYTES


# ---------------------------------------------------------------- the error contract


@pytest.mark.parametrize(
    "case, message",
    [("div-by-zero", "node 'd' (div): size arithmetic divides 1 by zero"),
     ("size-squaring", "beyond any tensor dimension")],
)
def test_size_arithmetic_out_of_range_is_a_model_file_error(tmp_path, case, message):
    path = write(tmp_path / "m.pspz", *hostile(case))
    with pytest.raises(ModelFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ps.load(path)


def test_batch_of_zero_is_a_clear_error(rng):
    m = ps.load(DATA / "v1_mlp.pspz")
    with pytest.raises(ValueError, match="batch of 0: pass at least one sample"):
        m(np.zeros((0, 300), np.float32))
    assert m(np.zeros((1, 300), np.float32)).shape == (1, 8)


def test_model_with_an_int_output_returns_it(tmp_path):
    m = ps.load(write(tmp_path / "s.pspz", *hostile("size-output")))
    assert m(np.zeros((5, 4), np.float32)) == 5


# ---------------------------------------------------------------- non-contiguous inputs


def _views(x):
    """Views of x's values that are not C-contiguous: a transposed layout and a strided slice."""
    transposed = np.ascontiguousarray(x.T).T  # same values, reversed strides
    wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), np.float32)
    wide[..., ::2] = x
    sliced = wide[..., ::2]
    views = {k: v for k, v in (("transposed", transposed), ("sliced", sliced)) if not v.flags.c_contiguous}
    assert "sliced" in views and (x.shape[0] == 1 or "transposed" in views)
    return views


@pytest.mark.parametrize("name, shape", [("v1_mlp", (1, 300)), ("v1_mlp", (5, 300)), ("v1_cnn", (1, 3, 16, 16)),
                                          ("v1_cnn", (3, 3, 16, 16))])
def test_non_contiguous_input_gives_the_contiguous_result(rng, name, shape):
    m = ps.load(DATA / f"{name}.pspz")
    x = rng.standard_normal(shape).astype(np.float32)
    want = m(x)
    for kind, v in _views(x).items():
        assert np.array_equal(m(v), want), kind


def test_non_contiguous_batch_rows(rng):
    """Every other sample of a batch (a row stride of 2 samples), and one sample of it, at batch 1."""
    m = ps.load(DATA / "v1_cnn.pspz")
    x = rng.standard_normal((6, 3, 16, 16)).astype(np.float32)
    assert np.array_equal(m(x[::2]), m(np.ascontiguousarray(x[::2])))
    assert np.array_equal(m(x[1:2]), m(np.ascontiguousarray(x[1:2])))


def _every_family_graph(rng):
    """(N, 4, 6, 6) through norm, activation, pooling, shape, binary and dense/sparse matmul ops."""
    from pysparse.runtime import csr_pack

    from pstest import random_sparse

    w = random_sparse(rng, (5, 24), 0.3)
    c = ps.CSRMatrix.from_dense(w)
    arrays = {"ln.weight": rng.standard_normal(6).astype(np.float32), "bn.running_mean": np.zeros(4, np.float32),
              "bn.running_var": np.ones(4, np.float32), "dw.weight": rng.standard_normal((4, 9)).astype(np.float32),
              "fc.weight": rng.standard_normal((3, 6)).astype(np.float32),
              **{f"sp.{k}": v for k, v in csr_pack(c.indptr, c.indices, c.data, 5, 24).items()}}
    n = node
    nodes = [
        n("ln", "layer_norm", ["x"], {"normalized_shape": [6]}, {"weight": "ln.weight"}),
        n("bn", "batch_norm", ["x"], {"num_features": 4}, {"running_mean": "bn.running_mean", "running_var": "bn.running_var"}),
        n("g", "gelu", ["ln"]), n("s", "sigmoid", ["bn"]), n("sum", "add", ["g", "s"]),
        n("dw", "conv2d", ["x"], {"in_channels": 4, "out_channels": 4, "kernel_size": [3, 3], "padding": [1, 1],
                                  "groups": 4, "format": "dense"}, {"weight": "dw.weight"}),
        n("mp", "max_pool2d", ["sum"], {"kernel_size": [2, 2], "stride": [2, 2]}),
        n("ap", "avg_pool2d", ["dw"], {"kernel_size": [3, 3], "stride": [1, 1], "padding": [1, 1]}),
        n("ad", "adaptive_avg_pool2d", ["ap"], {"output_size": [3, 3]}),
        n("cat", "cat", ["mp", "ad"], {"dim": 1}),
        n("perm", "permute", ["x"], {"dims": [0, 2, 3, 1]}),
        n("flat", "flatten", ["perm"], {"start_dim": 2}),
        n("sp", "linear", ["flat"], {"in_features": 24, "out_features": 5, "format": "csr"},
          {k: f"sp.{k}" for k in ("bucket_nnz", "col_lo", "data")}),
        n("fc", "linear", ["x"], {"in_features": 6, "out_features": 3, "format": "dense"}, {"weight": "fc.weight"}),
        n("tr", "transpose", ["fc"], {"dim0": 2, "dim1": 3}),
        n("sm", "softmax", ["tr"], {"dim": -1}), n("mean", "mean", ["cat"], {"dims": [2, 3]}),
    ]
    return {"inputs": [{"name": "x", "shape": [None, 4, 6, 6]}], "outputs": ["sm", "mean", "sp"], "nodes": nodes}, arrays


def test_non_contiguous_input_through_every_op_family(rng):
    m = Model(*_every_family_graph(rng))
    for batch in (1, 3):
        x = rng.standard_normal((batch, 4, 6, 6)).astype(np.float32)
        want = m(x)
        for kind, v in _views(x).items():
            for got, ref in zip(m(v), want):
                assert np.array_equal(got, ref), kind
