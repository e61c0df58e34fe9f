"""Load-time fusion (runtime/fuse.py): the fused run plan computes what the file's graph does.

Each model is loaded twice, with the fusion table and with it emptied, and both run the same
inputs: tiny random BERT encoders (converted sparse: their FFN Linear + GELU fuse) and MLPs
(Linear + GELU / ReLU / ReLU6, Linear + residual add; float32 and int8 weights). Fusion must not apply where the
intermediate has another reader or is a graph output, nor to dense weights.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pysparse as ps  # noqa: E402
from pysparse.runtime import fuse as fuse_mod  # noqa: E402

from _bert import batch, tiny_bert  # noqa: E402


def prune_(model, frac=0.7):
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.Linear):
                w = mod.weight
                w[w.abs() < w.abs().flatten().kthvalue(int(frac * w.numel())).values] = 0


def load_both(path, monkeypatch):
    fused = ps.load(path)
    with monkeypatch.context() as mp:
        mp.setattr(fuse_mod, "FUSIONS", {})
        mp.setattr(fuse_mod, "FUSE_QKV", False)
        plain = ps.load(path)
    assert [n.op for n in plain._plan_nodes] == [n.op for n in plain._nodes]  # nothing fused
    return fused, plain


def assert_same_bits(fused, plain, rng, threads):
    """Both runtimes give the same bits on padded batches of several shapes, on ``threads`` threads."""
    previous = ps.get_num_threads()
    ps.set_num_threads(threads)
    try:
        for b, s in [(1, 1), (1, 16), (2, 9), (3, 40)]:
            xs = batch(rng, b, s)
            np.testing.assert_array_equal(fused(*xs), plain(*xs))
    finally:
        ps.set_num_threads(previous)


def plan_ops(m):
    return [n.op for n in m._plan_nodes]


@pytest.mark.parametrize("formats", [("csr",), ("sell",)])
def test_tiny_bert_fused_equals_unfused(tmp_path, rng, monkeypatch, formats):
    model = tiny_bert(seed=3)
    prune_(model)
    ids, mask, tt = batch(rng, 2, 9)
    ex = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
          "token_type_ids": torch.from_numpy(tt)}
    sm = ps.convert(model, example_inputs=ex, formats=formats, threads=1, progress=False)
    ps.save(sm, tmp_path / "m.pspz", ex, outputs=("last_hidden_state", "sentence_embedding"))
    fused, plain = load_both(tmp_path / "m.pspz", monkeypatch)
    ops = plan_ops(fused)
    assert ops.count("linear+gelu") == 2 and "gelu" not in ops  # each layer's FFN intermediate
    names = [n.name for n in fused._plan_nodes]
    gelu_names = [n.name for n in plain._nodes if n.op == "gelu"]
    assert all(g in names for g in gelu_names)  # the fused node keeps the consumer's name
    for b, s in [(1, 1), (1, 16), (2, 9), (3, 40)]:
        xs = batch(rng, b, s)
        for a, c in zip(fused(*xs), plain(*xs)):
            np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("formats", [("csr",), ("bsr",), ("sell",)])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_tiny_bert_qkv_stacked_equals_unfused(tmp_path, rng, monkeypatch, formats, threads):
    """Each attention's Q/K/V Linears run as one stacked product (CSR, BSR with one block shape):
    the same bits as the three Linears and the attention node, with padding, on 1..3 threads.
    SELL is left alone (its sort windows would change across the stacked rows)."""
    model = tiny_bert(seed=5)
    prune_(model)
    ids, mask, tt = batch(rng, 2, 9)
    ex = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
          "token_type_ids": torch.from_numpy(tt)}
    block = (2, 1) if formats == ("bsr",) else None  # one block shape for every layer: they stack
    sm = ps.convert(model, example_inputs=ex, formats=formats, block=block, threads=1, progress=False)
    ps.save(sm, tmp_path / "m.pspz", ex)
    fused, plain = load_both(tmp_path / "m.pspz", monkeypatch)
    stacked = [n for n in fused._plan_nodes if n.op == "linear+attention"]
    formats_of = {}
    for n in fused._nodes:
        if n.op == "linear" and n.name.endswith(("query", "key", "value")):
            formats_of.setdefault(n.name.rsplit(".", 1)[0], set()).add((n.attrs["format"], str(n.attrs.get("block"))))
    want = sorted(a for a, f in formats_of.items() if len(f) == 1 and next(iter(f))[0] in ("csr", "bsr"))
    assert sorted(n.name for n in stacked) == want
    if formats != ("sell",):
        assert len(stacked) == 2  # both layers
    assert_same_bits(fused, plain, rng, threads)


def prune_blocks_(model, r=4, frac=0.8):
    """Zero the weakest (r, 4) blocks of every Linear: a weight bsr_int8 stores (few blocks kept)."""
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.Linear) and mod.weight.shape[0] % r == 0 and mod.weight.shape[1] % 4 == 0:
                w = mod.weight
                norms = w.reshape(w.shape[0] // r, r, -1, 4).abs().sum(dim=(1, 3))
                keep = (norms > norms.flatten().kthvalue(int(frac * norms.numel())).values).float()
                w.mul_(keep.repeat_interleave(r, 0).repeat_interleave(4, 1))


@pytest.mark.parametrize("fmt", ["dense_int8", "bsr_int8"])
@pytest.mark.parametrize("threads", [1, 2])
def test_tiny_bert_int8_qkv_stacked_equals_unfused(tmp_path, rng, monkeypatch, fmt, threads):
    """int8 Q/K/V stack as stored (int8 rows, per-row scales): x is quantized once for the three,
    to the same bits as three int8 Linears and the attention node."""
    from pysparse import conversion
    from pysparse.formats import INT8_FORMATS

    model = tiny_bert(seed=7)
    prune_blocks_(model)
    ids, mask, tt = batch(rng, 2, 9)
    ex = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
          "token_type_ids": torch.from_numpy(tt)}
    with monkeypatch.context() as mp:  # one int8 format for every Linear, so each Q/K/V triple stacks
        mp.setattr(conversion, "INT8_FORMATS", {fmt: INT8_FORMATS[fmt]})
        sm = ps.convert(model, example_inputs=ex, dtype="int8", formats=("dense",), block=(4, 4),
                        min_speedup=1e-9, threads=1, progress=False)
    qkv = [la for la in sm.pysparse_report_.layers if la.name.endswith(("query", "key", "value"))]
    assert len(qkv) == 6 and {la.format.split("(")[0] for la in qkv} == {fmt}
    ps.save(sm, tmp_path / "m.pspz", ex)
    fused, plain = load_both(tmp_path / "m.pspz", monkeypatch)
    stacked = [n for n in fused._plan_nodes if n.op == "linear+attention"]
    assert len(stacked) == 2  # both layers
    assert_same_bits(fused, plain, rng, threads)


class MLP(torch.nn.Module):
    def __init__(self, act, residual, share=False):
        super().__init__()
        self.l1, self.l2, self.l3 = torch.nn.Linear(24, 40), torch.nn.Linear(40, 40), torch.nn.Linear(40, 40)
        self.act, self.residual, self.share = act, residual, share

    def forward(self, x):
        h = self.l1(x)
        a = self.act(h)
        if self.share:  # h has a second reader: no fusion of l1 + act
            a = a + h
        y = self.l2(a)
        if self.residual:
            y = y + a  # l2 + residual add
        return self.act(self.l3(y))


ACTS = {"gelu": torch.nn.GELU(), "gelu_tanh": torch.nn.GELU(approximate="tanh"), "relu": torch.nn.ReLU(),
        "relu6": torch.nn.ReLU6()}


# int8 (issue 14): every Linear in an int8 format, its activation / residual in qlinear's epilogue.
DTYPES = {"float32": {"formats": ("csr",)}, "int8": {"dtype": "int8", "formats": ("dense",), "min_speedup": 1e-9}}


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("share", [False, True])
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_mlp_fused_equals_unfused(tmp_path, rng, monkeypatch, act, residual, share, dtype):
    torch.manual_seed(0)
    model = MLP(ACTS[act], residual, share).eval()
    prune_(model)
    ex = torch.randn(3, 24)
    sm = ps.convert(model, example_inputs=ex, threads=1, progress=False, **DTYPES[dtype])
    if dtype == "int8":
        assert all("int8" in layer.format for layer in sm.pysparse_report_.layers)
    ps.save(sm, tmp_path / "m.pspz", ex)
    fused, plain = load_both(tmp_path / "m.pspz", monkeypatch)
    ops = plan_ops(fused)
    op = "gelu" if act.startswith("gelu") else act
    assert ops.count(f"linear+{op}") == (1 if share else 2)
    assert ops.count("linear+add") == (1 if residual else 0)
    assert ops.count("linear") == (1 if share else 0) + (0 if residual else 1)
    for shape in [(1, 24), (5, 24), (130, 24)]:
        x = rng.standard_normal(shape).astype(np.float32) * 2
        x.flat[0] = np.nan
        np.testing.assert_array_equal(fused(x), plain(x))
        with torch.no_grad():
            want = sm(torch.from_numpy(x)).numpy()
        tol = 1e-5 if dtype == "float32" else 2e-2  # int8: torch's GELU may move a quantization step
        np.testing.assert_allclose(fused(x), want, rtol=tol, atol=tol)


def test_no_fusion_into_a_graph_output_or_a_dense_weight(tmp_path, rng, monkeypatch):
    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l1 = torch.nn.Linear(8, 8)

        def forward(self, x):
            h = self.l1(x)
            return h, torch.relu(h)  # h is an output

    torch.manual_seed(1)
    model = Two().eval()
    prune_(model)
    ex = torch.randn(2, 8)
    sm = ps.convert(model, example_inputs=ex, formats=("csr",), threads=1, progress=False)
    ps.save(sm, tmp_path / "m.pspz", ex)
    m = ps.load(tmp_path / "m.pspz")
    assert "linear+relu" not in plan_ops(m)
    x = rng.standard_normal((2, 8)).astype(np.float32)
    h, r = m(x)
    np.testing.assert_array_equal(r, np.maximum(h, 0))
    # A dense model: the linear stays a linear (no sparse epilogue to fuse into).
    dense = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.GELU()).eval()
    ps.save(dense, tmp_path / "d.pspz", ex)
    assert plan_ops(ps.load(tmp_path / "d.pspz")) == ["linear", "gelu"]


def test_add_with_broadcast_residual_falls_back(tmp_path, rng, monkeypatch):
    class Bcast(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l1 = torch.nn.Linear(8, 6)

        def forward(self, x, r):
            return self.l1(x) + r  # r (6,): broadcast, not the output's shape

    torch.manual_seed(2)
    model = Bcast().eval()
    prune_(model)
    ex = (torch.randn(3, 8), torch.randn(6))
    sm = ps.convert(model, example_inputs=ex, formats=("csr",), threads=1, progress=False)
    ps.save(sm, tmp_path / "m.pspz", ex)
    fused, plain = load_both(tmp_path / "m.pspz", monkeypatch)
    x, r = rng.standard_normal((3, 8)).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    assert "linear+add" in plan_ops(fused)
    np.testing.assert_array_equal(fused(x, r), plain(x, r))
    # The fused node's own errors name it (the add node's name) like the linear's did.
    node, fn = next((n, f) for n, f in zip(fused._plan_nodes, fused._plan_fns) if n.op == "linear+add")
    with pytest.raises(ValueError, match=f"node '{node.name}': input last dimension must be 8"):
        fn(rng.standard_normal((3, 7)).astype(np.float32), rng.standard_normal((3, 6)).astype(np.float32))


def test_conv_relu_family_fuses_and_matches(tmp_path, rng, monkeypatch):
    """conv2d + relu6 / relu / hardtanh(0, 6) fuse (the depthwise kernel's epilogue, in place on
    the other conv paths); hardtanh(-1, 1) does not; fused == unfused, NaN included."""
    torch.manual_seed(5)
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU6(),               # stem: strided k x k
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),                # depthwise
        nn.Conv2d(8, 16, 1), nn.Hardtanh(0.0, 6.0),                        # pointwise
        nn.Conv2d(16, 16, 5, stride=2, padding=2, groups=16), nn.Hardtanh(-1.0, 1.0),
    ).eval()
    x = torch.from_numpy(rng.standard_normal((2, 3, 17, 15)).astype(np.float32))
    ps.save(model, tmp_path / "c.pspz", (x,))
    fused, plain = load_both(tmp_path / "c.pspz", monkeypatch)
    ops = plan_ops(fused)
    assert ops.count("conv2d+relu6") == 1 and ops.count("conv2d+relu") == 1 and ops.count("conv2d+hardtanh") == 1
    assert "hardtanh" in ops  # the (-1, 1) clamp stays its own node
    xa = x.numpy().copy()
    xa[0, 1, 3, 4] = np.nan
    for xs in (x.numpy(), xa, xa[:1]):
        np.testing.assert_array_equal(fused(xs), plain(xs))
