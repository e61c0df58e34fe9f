"""ps.convert: Linear / Conv2d swapped for pysparse modules, formats chosen by
measurement, outputs kept, the report, and the options."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest

import pysparse as ps

from pstest import random_nm, random_sparse, relerr

torch = pytest.importorskip("torch")
from pysparse import nn as psnn  # noqa: E402  (needs torch)
from pysparse.formats import bsr_blocks, nm_pattern  # noqa: E402

@pytest.fixture(autouse=True)
def one_thread():
    """Time candidates on one thread each for torch and pysparse: on a shared 2-core
    machine a second thread is often descheduled, which makes the measured choice noisy."""
    before = torch.get_num_threads(), ps.get_num_threads()
    torch.set_num_threads(1)
    ps.set_num_threads(1)
    yield
    torch.set_num_threads(before[0])
    ps.set_num_threads(before[1])


# Two float32 forward passes of a whole model (different summation orders).
MODEL_RTOL = 1e-4


def masked(rng, shape, pattern: str) -> torch.Tensor:
    """A 0/1 mask of W[out, in]: 90% unstructured, 90% in (8, 1) blocks, or 2:4."""
    if pattern == "2:4":
        keep = random_nm(rng, shape, 2, 4) != 0
    else:
        keep = random_sparse(rng, shape, 0.1, block=(8, 1) if pattern == "block" else (1, 1)) != 0
    return torch.from_numpy(keep.astype(np.float32))


def mlp(rng, pattern: str, hidden: int = 1024) -> torch.nn.Sequential:
    torch.manual_seed(int(rng.integers(1 << 31)))
    model = torch.nn.Sequential(
        torch.nn.Linear(256, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
        torch.nn.Linear(hidden, 10),
    )
    with torch.no_grad():
        for layer in (model[0], model[2]):  # the classifier stays dense
            layer.weight.mul_(masked(rng, tuple(layer.weight.shape), pattern))
    return model.eval()


def check_outputs(model, converted, x):
    with torch.no_grad():
        ref = model.double()(x.double()).numpy()
        model.float()
        y = converted(x)
    assert y.shape == ref.shape and y.dtype == torch.float32
    assert relerr(y.numpy(), ref) <= MODEL_RTOL


@pytest.mark.parametrize(
    "pattern,formats", [("unstructured", {"csr", "sell"}), ("block", {"bsr(8,1)"}), ("2:4", {"nm(2:4)", "csr", "sell"})]
)
def test_mlp_keeps_outputs_and_goes_sparse(rng, pattern, formats):
    model = mlp(rng, pattern)
    sm = ps.convert(model, example_inputs=torch.randn(4, 256), progress=False)
    assert sm is not model
    assert all(isinstance(m, psnn.SparseLinear) for m in (sm[0], sm[2], sm[4]))
    assert isinstance(sm[1], torch.nn.ReLU)
    check_outputs(model, sm, torch.randn(5, 256))
    report = sm.pysparse_report_
    assert [layer.name for layer in report.layers] == ["0", "2", "4"]
    big = report.layers[1]  # 1024 x 1024, 90% sparse (2:4 is 50%)
    assert big.sparsity == pytest.approx(0.5 if pattern == "2:4" else 0.9, abs=0.01)
    if pattern != "2:4":  # at 90% a sparse format wins by a wide margin at batch 1
        assert big.format in formats and sm[2].format != "dense"
        assert big.speedup >= 1.05 and big.nbytes < 0.2 * big.dense_nbytes
        assert set(big.times_us) >= {"dense", big.format}
    else:  # 2:4 is measured as N:M; whichever wins, the format is one of the candidates
        assert "nm(2:4)" in big.times_us
    assert report.layers[2].format == "dense" and "no sparse format" in report.layers[2].note
    assert sm[4].format == "dense"


def test_cnn_with_bn_and_pooling(rng):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 64, 1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(64, 64, 3, padding=1, bias=False), torch.nn.ReLU(),
        torch.nn.Conv2d(64, 64, 3, padding=1, groups=64),  # depthwise
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 10),
    )
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
        for i, pattern in ((0, "unstructured"), (3, "block"), (6, "unstructured")):
            w = model[i].weight
            w.mul_(masked(rng, (w.shape[0], w[0].numel()), pattern).reshape(w.shape))
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    sm = ps.convert(model, example_inputs=x, batch=2, progress=False)
    assert [type(sm[i]).__name__ for i in (0, 3, 6, 8, 11)] == ["SparseConv2d"] * 4 + ["SparseLinear"]
    assert isinstance(sm[1], torch.nn.BatchNorm2d) and isinstance(sm[5], torch.nn.MaxPool2d)
    check_outputs(model, sm, torch.randn(3, 3, 16, 16))
    layers = {layer.name: layer for layer in sm.pysparse_report_.layers}
    assert layers["3"].input_shape == (2, 32, 16, 16) and layers["6"].input_shape == (2, 64, 8, 8)
    assert layers["8"].format == "dense" and "grouped" in layers["8"].note
    assert sm[8].groups == 64
    for name in ("0", "3", "6"):
        assert layers[name].sparsity == pytest.approx(0.9, abs=0.03)
        assert layers[name].format.split("(")[0] == sm[int(name)].format


def test_report_table(rng):
    sm = ps.convert(mlp(rng, "block", hidden=256), progress=False)
    text = str(sm.pysparse_report_)
    for word in ("layer", "format", "sparsity", "bytes", "dense bytes", "speedup", "weights:"):
        assert word in text
    assert len(text.splitlines()) == 3 + 3 + 1  # title, header, rule, 3 layers, total
    rows = sm.pysparse_report_.rows()
    assert rows[1]["shape"] == (256, 256) and 0.85 < rows[1]["sparsity"] < 0.95
    assert sm.pysparse_report_.nbytes < sm.pysparse_report_.dense_nbytes


def test_dense_layer_and_break_even_stay_dense(rng):
    model = mlp(rng, "unstructured", hidden=256)
    with torch.no_grad():
        model[2].weight.normal_()  # a dense hidden layer
    sm = ps.convert(model, min_speedup=1e6, progress=False)  # nothing can be that much faster
    report = {layer.name: layer for layer in sm.pysparse_report_.layers}
    assert report["2"].format == "dense" and "no sparse format" in report["2"].note
    assert report["0"].format == "dense" and "stays dense" in report["0"].note and report["0"].speedup == 1.0
    assert all(m.format == "dense" for m in (sm[0], sm[2], sm[4]))
    check_outputs(model, sm, torch.randn(3, 256))


def test_formats_and_block_options(rng):
    model = mlp(rng, "block", hidden=256)
    sm = ps.convert(model, formats=("csr",), progress=False)
    assert sm[0].format == "csr" and sm[2].format == "csr"  # dense not allowed: sparse wins regardless
    assert sm[4].format == "dense"  # nothing sparse applies to a dense layer
    sm = ps.convert(model, formats=("bsr", "dense"), block=(4, 1), min_speedup=0.0 + 1e-9, progress=False)
    assert sm[2].format == "bsr" and sm[2].weight.block == (4, 1)
    check_outputs(model, sm, torch.randn(2, 256))


def test_inplace_and_original_untouched(rng):
    model = mlp(rng, "unstructured", hidden=64)
    before = copy.deepcopy(model.state_dict())
    sm = ps.convert(model, progress=False)
    assert isinstance(model[0], torch.nn.Linear) and model[0].weight.requires_grad
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    same = ps.convert(model, inplace=True, progress=False)
    assert same is model and isinstance(model[0], psnn.SparseLinear)
    assert not any(p.requires_grad for p in sm.parameters())


def test_converted_model_deepcopies_and_refuses_grad(rng):
    model = mlp(rng, "block", hidden=128)
    sm = ps.convert(model, progress=False)
    c = copy.deepcopy(sm)
    x = torch.randn(2, 256)
    with torch.no_grad():
        assert torch.equal(c(x), sm(x))
    assert c.pysparse_report_.layers[0].name == "0"
    with pytest.raises(RuntimeError, match="inference-only"):
        sm(x.requires_grad_())


def test_shared_parametrized_and_attention_modules(rng):
    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(16, 16)
            self.attn = torch.nn.MultiheadAttention(16, 2, batch_first=True)
            self.masked = torch.nn.Linear(16, 8)

        def forward(self, x):
            x = self.fc(torch.relu(self.fc(x)))  # used twice
            x = self.attn(x, x, x, need_weights=False)[0]
            return self.masked(x)

    class Mask(torch.nn.Module):
        def __init__(self, mask):
            super().__init__()
            self.register_buffer("mask", mask)

        def forward(self, w):
            return w * self.mask

    net = Net().eval()
    mask = Mask(masked(rng, (8, 16), "unstructured"))
    torch.nn.utils.parametrize.register_parametrization(net.masked, "weight", mask)
    sm = ps.convert(net, example_inputs=torch.randn(1, 5, 16), progress=False)
    assert isinstance(sm.fc, psnn.SparseLinear) and isinstance(sm.masked, psnn.SparseLinear)
    assert isinstance(sm.attn.out_proj, torch.nn.Linear)  # MultiheadAttention reads its weight directly
    assert [layer.name for layer in sm.pysparse_report_.layers] == ["fc", "masked"]
    assert sm.pysparse_report_.layers[0].input_shape == (5, 16)  # batch 1 x 5 tokens
    assert sm.pysparse_report_.layers[1].sparsity > 0.8
    check_outputs(net, sm, torch.randn(2, 5, 16))


def test_bare_layer_converts(rng):
    layer = torch.nn.Linear(64, 32)
    with torch.no_grad():
        layer.weight.mul_(masked(rng, (32, 64), "unstructured"))
    sm = ps.convert(layer, formats=("csr",), progress=False)
    assert isinstance(sm, psnn.SparseLinear) and sm.format == "csr"
    assert sm.pysparse_report_.layers[0].name == ""
    check_outputs(layer, sm, torch.randn(3, 64))


def test_unsupported_conv_is_kept(rng):
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1, padding_mode="circular"))
    sm = ps.convert(model, progress=False)
    assert isinstance(sm[0], torch.nn.Conv2d)
    assert sm.pysparse_report_.layers[0].format == "kept" and "padding_mode" in sm.pysparse_report_.layers[0].note


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"batch": 0}, ValueError, "batch"),
        ({"formats": ("csr", "coo")}, ValueError, "formats"),
        ({"formats": ()}, ValueError, "formats"),
        ({"block": (3, 1)}, ValueError, "block rows"),
        ({"min_speedup": 0}, ValueError, "min_speedup"),
        ({"threads": 0}, ValueError, "threads"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        ps.convert(torch.nn.Linear(4, 4), progress=False, **kwargs)
    with pytest.raises(TypeError, match="nn.Module"):
        ps.convert(np.zeros((4, 4)))


def test_block_and_nm_detection(rng):
    w = random_sparse(rng, (64, 40), 0.2, block=(8, 1))
    blocks = dict(bsr_blocks(w))
    assert blocks[(8, 1)] == blocks[(4, 1)] == blocks[(2, 1)] == 0.0  # no fill
    assert (16, 1) not in blocks  # 16-row blocks would store more zeros than values
    assert dict(bsr_blocks(w, max_fill=10.0))[(16, 1)] > 0.25
    assert bsr_blocks(random_sparse(rng, (64, 40), 0.1)) == []  # unstructured: every block fills
    assert bsr_blocks(np.zeros((8, 8), dtype=np.float32)) == []
    assert nm_pattern(random_nm(rng, (16, 32), 2, 4)) == "2:4"
    assert nm_pattern(random_nm(rng, (16, 30), 1, 8)) == "1:8"
    assert nm_pattern(rng.standard_normal((8, 8)).astype(np.float32)) is None


def test_convert_is_lazy_and_import_stays_torch_free(tmp_path):
    code = (
        "import sys, pysparse as ps\n"
        "assert 'torch' not in sys.modules\n"
        "assert callable(ps.conv2d)\n"
        "from pysparse.conversion import ConversionReport\n"
        "assert 'torch' in sys.modules\n"
        "import torch\n"
        "sm = ps.convert(torch.nn.Sequential(torch.nn.Linear(4, 4)), progress=False)\n"
        "assert isinstance(sm.pysparse_report_, ConversionReport)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    assert ps.convert.__module__ == "pysparse.conversion" and callable(ps.convert)
