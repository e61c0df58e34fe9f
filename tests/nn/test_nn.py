"""SparseLinear / SparseConv2d: construction, every format, deepcopy, the weight
registry, the gradient refusal, and the pysparse:: ops under torch.compile,
torch.export and torch.fx."""

from __future__ import annotations

import copy
import gc

import numpy as np
import pytest

import pysparse as ps

from pstest import F32_SUM_RTOL, random_nm, random_sparse, relerr

torch = pytest.importorskip("torch")
from pysparse import nn as psnn  # noqa: E402  (needs torch)

FORMATS = ["csr", "sell", "bsr", "nm", "dense"]


def linear_with(rng, out: int, inp: int, fmt: str) -> torch.nn.Linear:
    """An nn.Linear whose weight fits ``fmt`` (2:4 for nm, (8, 1) blocks for bsr)."""
    m = torch.nn.Linear(inp, out)
    if fmt == "nm":
        w = random_nm(rng, (out, inp), 2, 4)
    else:
        w = random_sparse(rng, (out, inp), 0.2, block=(8, 1) if fmt == "bsr" else (1, 1))
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(w))
    return m


@pytest.mark.parametrize("fmt", FORMATS)
def test_sparse_linear_from_module_matches(rng, fmt):
    m = linear_with(rng, 37, 52, fmt)
    s = psnn.SparseLinear.from_module(m, format=fmt)
    assert s.format == fmt and (s.in_features, s.out_features) == (52, 37)
    assert isinstance(s.weight, np.ndarray) if fmt == "dense" else s.weight.format == fmt
    assert isinstance(s.bias, torch.Tensor) and "bias" in dict(s.named_buffers())
    if fmt == "bsr":
        assert s.weight.block == (8, 1)  # detected from the weight
    if fmt == "nm":
        assert s.weight.nm == (2, 4)
    for shape in [(5, 52), (52,), (2, 3, 52), (1, 52)]:
        x = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
        with torch.no_grad():
            ref = m.double()(x.double()).numpy()
            m.float()
            y = s(x)
        assert y.shape == ref.shape and y.dtype == torch.float32
        assert relerr(y.numpy(), ref) <= F32_SUM_RTOL


@pytest.mark.parametrize("fmt", FORMATS)
def test_sparse_conv2d_from_module_matches(rng, fmt):
    conv = torch.nn.Conv2d(4, 16, 3, stride=2, padding=1, dilation=1)
    w = linear_with(rng, 16, 36, fmt).weight.detach().reshape(16, 4, 3, 3)
    with torch.no_grad():
        conv.weight.copy_(w)
    s = psnn.SparseConv2d.from_module(conv, format=fmt)
    assert s.format == fmt
    assert (s.kernel_size, s.stride, s.padding, s.dilation, s.groups) == ((3, 3), (2, 2), (1, 1), (1, 1), 1)
    assert (s.in_channels, s.out_channels) == (4, 16)
    x = torch.from_numpy(rng.standard_normal((2, 4, 9, 7)).astype(np.float32))
    with torch.no_grad():
        ref = conv.double()(x.double()).numpy()
        y = s(x)
        assert relerr(y.numpy(), ref) <= F32_SUM_RTOL
        assert relerr(s(x[0]).numpy(), ref[0]) <= F32_SUM_RTOL  # unbatched (C, H, W)


def test_depthwise_conv_stays_dense(rng):
    conv = torch.nn.Conv2d(6, 12, 3, padding="same", groups=6, bias=False)
    s = psnn.SparseConv2d.from_module(conv, format="dense")
    assert s.format == "dense" and s.groups == 6 and s.padding == (1, 1) and s.bias is None
    x = torch.randn(2, 6, 5, 5)
    with torch.no_grad():
        assert relerr(s(x).numpy(), conv(x).numpy()) <= F32_SUM_RTOL
    with pytest.raises(ValueError, match="format='dense'"):
        psnn.SparseConv2d.from_module(conv, format="csr")


def test_constructor_takes_packed_weights_and_checks_them(rng):
    w = ps.BSRMatrix.from_dense(random_sparse(rng, (16, 8), 0.3, block=(4, 1)), block=(4, 1))
    s = psnn.SparseLinear(w, np.arange(16, dtype=np.float32))
    assert s.weight is w and s.format == "bsr" and s.nbytes == w.nbytes
    assert torch.equal(s.bias, torch.arange(16, dtype=torch.float32))
    assert "format=bsr(4,1)" in repr(s) and "in_features=8" in repr(s)
    with pytest.raises(ValueError, match="16 values"):
        psnn.SparseLinear(w, torch.zeros(15))
    with pytest.raises(TypeError, match="float32"):
        psnn.SparseLinear(np.zeros((3, 4)))
    with pytest.raises(TypeError, match="CSRMatrix"):
        psnn.SparseLinear(torch.zeros(3, 4))
    with pytest.raises(TypeError, match="bias"):
        psnn.SparseLinear(w, [0.0] * 16)
    with pytest.raises(ValueError, match="threads"):
        psnn.SparseLinear(w, threads=0)
    conv_kw = dict(in_channels=2, out_channels=16, kernel_size=2)
    assert psnn.SparseConv2d(w, **conv_kw).kernel_size == (2, 2)
    with pytest.raises(ValueError, match=r"\(16, 18\)"):
        psnn.SparseConv2d(w, **{**conv_kw, "kernel_size": 3})
    with pytest.raises(ValueError, match="dense numpy weight"):
        psnn.SparseConv2d(w, in_channels=4, out_channels=16, kernel_size=(2, 1), groups=2)
    with pytest.raises(ValueError, match="groups"):
        psnn.SparseConv2d(w, **conv_kw, groups=3)
    with pytest.raises(TypeError, match="nn.Linear"):
        psnn.SparseLinear.from_module(torch.nn.Conv2d(2, 2, 1))
    with pytest.raises(ValueError, match="format"):
        psnn.SparseLinear.from_module(torch.nn.Linear(4, 4), format="coo")
    with pytest.raises(ValueError, match="N:M"):
        psnn.SparseLinear.from_module(torch.nn.Linear(8, 4), format="nm")  # a dense weight is not N:M


def test_unsupported_conv_padding_is_refused():
    with pytest.raises(ValueError, match="padding_mode"):
        psnn.SparseConv2d.from_module(torch.nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(ValueError, match="asymmetrically"):
        psnn.SparseConv2d.from_module(torch.nn.Conv2d(2, 2, 2, padding="same"))


@pytest.mark.parametrize("fmt", ["csr", "sell", "dense"])
def test_deepcopy_and_state_dict(rng, fmt):
    m = linear_with(rng, 24, 16, fmt)
    s = psnn.SparseLinear.from_module(m, format=fmt)
    c = copy.deepcopy(s)
    x = torch.randn(3, 16)
    with torch.no_grad():
        expected = s(x)
    del s
    gc.collect()
    with torch.no_grad():
        assert torch.equal(c(x), expected)  # the copy owns (or shares) its weight
    assert psnn.weight_from_handle(c.handle) is c.weight
    assert set(c.state_dict()) == {"bias"}
    c2 = psnn.SparseLinear.from_module(m, format=fmt)
    c2.load_state_dict({"bias": torch.zeros(24)})
    assert torch.equal(c2.bias, torch.zeros(24))


def test_registry_holds_weights_weakly(rng):
    w = ps.CSRMatrix.from_dense(random_sparse(rng, (8, 8), 0.3))
    s = psnn.SparseLinear(w)
    assert psnn.register_weight(w) == s.handle  # one handle per weight object
    h = s.handle
    del s, w
    gc.collect()
    with pytest.raises(LookupError, match="not registered"):
        psnn.weight_from_handle(h)


def test_gradients_are_refused(rng):
    s = psnn.SparseLinear.from_module(linear_with(rng, 8, 16, "csr"))
    x = torch.randn(2, 16, requires_grad=True)
    with pytest.raises(RuntimeError, match="inference-only"):
        s(x)
    conv = psnn.SparseConv2d.from_module(torch.nn.Conv2d(2, 4, 3), format="dense")
    with pytest.raises(RuntimeError, match="inference-only"):
        conv(torch.randn(1, 2, 5, 5, requires_grad=True))
    # The op itself, called directly, refuses the backward pass.
    y = torch.ops.pysparse.linear(x, s.handle, 8, None, 0)
    with pytest.raises(RuntimeError, match="inference-only"):
        y.sum().backward()
    with torch.no_grad():
        assert s(x).shape == (2, 8)  # fine without grad mode


class SmallNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.max_pool2d(torch.relu(self.conv(x)), 2)
        return self.fc(x.flatten(1))


def sparse_small_net(rng) -> tuple[torch.nn.Module, torch.nn.Module]:
    dense = SmallNet().eval()
    net = copy.deepcopy(dense)
    net.conv = psnn.SparseConv2d.from_module(dense.conv, format="csr")
    net.fc = psnn.SparseLinear.from_module(dense.fc, format="dense")
    return dense, net


def test_torch_export_holds_the_ops(rng):
    dense, net = sparse_small_net(rng)
    x = torch.randn(2, 3, 8, 8)
    ep = torch.export.export(net, (x,))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert {"pysparse.conv2d.default", "pysparse.linear.default"} <= targets
    with torch.no_grad():
        assert relerr(ep.module()(x).numpy(), dense(x).numpy()) <= F32_SUM_RTOL
    # A dynamic batch: the fake implementations propagate symbolic shapes.
    ep = torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    x5 = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        assert relerr(ep.module()(x5).numpy(), dense(x5).numpy()) <= F32_SUM_RTOL


def test_fx_symbolic_trace_holds_the_ops(rng):
    dense, net = sparse_small_net(rng)
    gm = torch.fx.symbolic_trace(net)
    assert "torch.ops.pysparse.conv2d" in gm.code and "torch.ops.pysparse.linear" in gm.code
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert relerr(gm(x).numpy(), dense(x).numpy()) <= F32_SUM_RTOL


# inductor's own imports touch torch.jit.script_method, deprecated in this torch.
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_torch_compile_fullgraph(rng):
    dense, net = sparse_small_net(rng)
    compiled = torch.compile(net, fullgraph=True, backend="inductor")
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert relerr(compiled(x).numpy(), dense(x).numpy()) <= F32_SUM_RTOL


def test_fake_shapes_agree_with_the_kernels(rng):
    from torch._subclasses.fake_tensor import FakeTensorMode

    _, net = sparse_small_net(rng)
    conv, fc = net.conv, net.fc
    x = torch.randn(2, 3, 7, 9)
    real = torch.ops.pysparse.conv2d(x, conv.handle, 8, conv.bias, [3, 3], [2, 1], [1, 0], [1, 2], 1, 0)
    with FakeTensorMode() as mode:
        fake = torch.ops.pysparse.conv2d(
            mode.from_tensor(x), conv.handle, 8, None, [3, 3], [2, 1], [1, 0], [1, 2], 1, 0
        )
        fake_lin = torch.ops.pysparse.linear(mode.from_tensor(torch.randn(4, 5, 128)), fc.handle, 10, None, 0)
    assert fake.shape == real.shape
    assert tuple(fake_lin.shape) == (4, 5, 10)
