"""Every runtime op against torch: save a one-op model, load it, compare at another batch size."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

import pysparse as ps  # noqa: E402
from pysparse.runtime import OPS  # noqa: E402

from pstest import relerr  # noqa: E402

# float32 ops against torch's float32 (different summation order / erf approximation).
OP_RTOL = 2e-5


class Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class Fn2(Fn):
    def forward(self, x, y):
        return self.fn(x, y)


def conv(*args, **kw):
    c = nn.Conv2d(*args, **kw)
    with torch.no_grad():
        c.bias.uniform_(-1, 1) if c.bias is not None else None
    return c


def bn(n, d2=True):
    b = nn.BatchNorm2d(n) if d2 else nn.BatchNorm1d(n)
    with torch.no_grad():
        b.running_mean.uniform_(-1, 1)
        b.running_var.uniform_(0.5, 2)
        b.weight.uniform_(0.5, 1.5)
        b.bias.uniform_(-1, 1)
    return b


IMG = (3, 9, 11)
VEC = (12,)
SEQ = (5, 12)
CASES = {
    # name: (module factory, per-sample input shapes, runtime ops it must produce)
    "relu": (lambda: nn.ReLU(), [VEC], {"relu"}),
    "relu-fn-method": (lambda: Fn(lambda x: F.relu(x) + torch.relu(x) + x.relu()), [VEC], {"relu", "add"}),
    "relu6": (lambda: nn.ReLU6(), [VEC], {"relu6"}),
    "gelu": (lambda: nn.GELU(), [VEC], {"gelu"}),
    "gelu-tanh": (lambda: Fn(lambda x: F.gelu(x, approximate="tanh")), [VEC], {"gelu"}),
    "silu": (lambda: nn.SiLU(), [VEC], {"silu"}),
    "sigmoid": (lambda: Fn(lambda x: torch.sigmoid(x * 30)), [VEC], {"sigmoid", "mul"}),
    "tanh": (lambda: nn.Tanh(), [VEC], {"tanh"}),
    "hardtanh": (lambda: nn.Hardtanh(-0.5, 0.7), [VEC], {"hardtanh"}),
    "leaky_relu": (lambda: nn.LeakyReLU(0.2), [VEC], {"leaky_relu"}),
    "hardswish": (lambda: nn.Hardswish(), [VEC], {"hardswish"}),
    "hardsigmoid": (lambda: nn.Hardsigmoid(), [VEC], {"hardsigmoid"}),
    "clamp-neg": (lambda: Fn(lambda x: -torch.clamp(x, min=-0.3, max=0.4)), [VEC], {"clamp", "neg"}),
    "softmax": (lambda: nn.Softmax(dim=1), [SEQ], {"softmax"}),
    "log_softmax": (lambda: Fn(lambda x: F.log_softmax(x * 10, dim=-1)), [SEQ], {"log_softmax"}),
    "batch_norm2d": (lambda: bn(3), [IMG], {"batch_norm"}),
    "batch_norm1d": (lambda: bn(5, False), [SEQ], {"batch_norm"}),
    "layer_norm": (lambda: nn.LayerNorm(12), [SEQ], {"layer_norm"}),
    "layer_norm-2d": (lambda: nn.LayerNorm([5, 12], elementwise_affine=False), [SEQ], {"layer_norm"}),
    "binary-broadcast": (lambda: Fn2(lambda x, y: (x + y) * y - x / (y * y + 1)), [SEQ, (1, 12)],
                         {"add", "mul", "sub", "div"}),
    "binary-scalars": (lambda: Fn(lambda x: 1 - 2 * x / 3 + 0.5), [VEC], {"sub", "mul", "div", "add"}),
    "inplace-add": (lambda: Fn(lambda x: x.add(1.5).sub(x).mul(x).div(2.0)), [VEC], {"add", "sub", "mul", "div"}),
    "flatten": (lambda: nn.Flatten(), [IMG], {"flatten"}),
    "flatten-fn": (lambda: Fn(lambda x: torch.flatten(x, 2)), [IMG], {"flatten"}),
    "view-size": (lambda: Fn(lambda x: x.view(x.size(0), -1)), [IMG], {"reshape", "size"}),
    "reshape-shape": (lambda: Fn(lambda x: x.reshape(x.shape[0], 3, -1).reshape(-1, 99)), [IMG], {"reshape", "size"}),
    "size-arithmetic": (lambda: Fn(lambda x: x.view(x.size(0), x.size(1) * x.size(2), -1) + 0.5), [IMG],
                        {"reshape", "size", "mul"}),
    "permute": (lambda: Fn(lambda x: x.permute(0, 2, 3, 1).contiguous()), [IMG], {"permute"}),
    "transpose": (lambda: Fn(lambda x: torch.transpose(x, 1, 2)), [SEQ], {"transpose"}),
    "squeeze-unsqueeze": (lambda: Fn(lambda x: x.unsqueeze(1).unsqueeze(-1).squeeze(-1)), [SEQ],
                          {"squeeze", "unsqueeze"}),
    "cat": (lambda: Fn2(lambda x, y: torch.cat([x, y, x], dim=1)), [SEQ, SEQ], {"cat"}),
    "max_pool": (lambda: nn.MaxPool2d(3, stride=2, padding=1), [IMG], {"max_pool2d"}),
    "max_pool-ceil-dilation": (lambda: Fn(lambda x: F.max_pool2d(x, 2, 2, 0, 2, ceil_mode=True)), [IMG],
                               {"max_pool2d"}),
    "avg_pool": (lambda: nn.AvgPool2d(3, stride=2, padding=1), [IMG], {"avg_pool2d"}),
    "avg_pool-ceil-exclude-pad": (lambda: nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), [IMG],
                                  {"avg_pool2d"}),
    "adaptive_avg": (lambda: nn.AdaptiveAvgPool2d((4, 3)), [IMG], {"adaptive_avg_pool2d"}),
    "global_avg": (lambda: nn.AdaptiveAvgPool2d(1), [IMG], {"adaptive_avg_pool2d"}),
    "mean": (lambda: Fn(lambda x: x.mean((2, 3)) + torch.mean(x, dim=-1, keepdim=True).mean((2, 3))), [IMG],
             {"mean"}),
    "dropout-identity": (lambda: nn.Sequential(nn.Dropout(0.5), nn.Identity(), nn.Dropout2d(0.1)), [IMG],
                         {"dropout", "identity"}),
    "linear-3d": (lambda: nn.Linear(12, 7), [SEQ], {"linear"}),
    "linear-nobias": (lambda: nn.Linear(12, 7, bias=False), [VEC], {"linear"}),
    "conv": (lambda: conv(3, 4, 3), [IMG], {"conv2d"}),
    "conv-stride-pad-dil": (lambda: conv(3, 5, (3, 2), stride=(2, 1), padding=(2, 1), dilation=(2, 1)), [IMG],
                            {"conv2d"}),
    "conv-same": (lambda: conv(3, 4, 3, padding="same"), [IMG], {"conv2d"}),
    "conv-grouped": (lambda: conv(4, 6, 3, groups=2, padding=1), [(4, 7, 6)], {"conv2d"}),
    "conv-depthwise": (lambda: conv(5, 5, 3, groups=5, stride=2, bias=False), [(5, 8, 8)], {"conv2d"}),
    "conv-1x1": (lambda: conv(3, 8, 1), [IMG], {"conv2d"}),
    "functional-params": (lambda: _Functional(), [IMG], {"conv2d", "linear", "layer_norm", "constant", "add"}),
}


class _Functional(nn.Module):
    """F.conv2d / F.linear / F.layer_norm on the module's own parameters, plus a buffer."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 3, 3, 3))
        self.fc = nn.Parameter(torch.randn(6, 4))
        self.register_buffer("shift", torch.randn(6))

    def forward(self, x):
        h = F.conv2d(x, self.w, None, 1, 1).mean((2, 3))
        return F.layer_norm(F.linear(h, self.fc), (6,)) + self.shift


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_torch(case, tmp_path):
    torch.manual_seed(0)
    factory, shapes, ops = CASES[case]
    model = factory().eval()
    ps.save(model, tmp_path / "m.pspz", tuple(torch.randn(2, *s) for s in shapes))
    m = ps.load(tmp_path / "m.pspz")
    assert ops <= {n["op"] for n in m.graph["nodes"]}
    for batch in (1, 3):
        xs = [torch.randn(batch, *s) for s in shapes]
        with torch.no_grad():
            ref = model(*xs).numpy()
        got = m(*[x.numpy() for x in xs])
        assert got.shape == ref.shape and got.dtype == np.float32
        assert relerr(got, ref) <= OP_RTOL, case


def test_every_op_is_covered():
    """Each op of the runtime's set appears in some case above (or, for the ops that read token ids,
    in the BERT files of test_bert.py, which asserts that they hold every one of TRANSFORMER_OPS)."""
    from _bert import TRANSFORMER_OPS

    seen = set().union(*(ops for _, _, ops in CASES.values())) | TRANSFORMER_OPS
    assert set(OPS) == seen


def test_gelu_erf_accuracy():
    """Against the float64 GELU: torch's float32 GELU is itself up to ~9e-7 off (its AVX-512
    kernel, on Zen 4), so a bound against it would add the two errors (1.2e-6 at x = 3.496)."""
    x = torch.linspace(-8, 8, 2001)
    from pysparse.runtime.ops.elementwise import _gelu

    exact = F.gelu(x.double()).numpy()
    assert np.max(np.abs(_gelu(x.numpy(), "none") - exact)) <= 1e-6
    assert np.max(np.abs(_gelu(x.numpy(), "none") - F.gelu(x).numpy())) <= 2e-6


def test_sparse_conv_formats_match_dense(tmp_path, rng):
    """SparseConv2d stand-ins in CSR and BSR (1x1 and 3x3, stride 2) through the runtime."""
    from _fake_nn import SparseConv2d

    torch.manual_seed(0)
    for fmt in ("csr", "bsr"):
        for k, s in ((1, 1), (3, 2)):
            model = SparseConv2d(conv(8, 16, k, stride=s, padding=k // 2), fmt, 0.8).eval()
            ps.save(model, tmp_path / "c.pspz", torch.randn(2, 8, 10, 10))
            m = ps.load(tmp_path / "c.pspz")
            x = torch.randn(3, 8, 10, 10)
            with torch.no_grad():
                ref = model(x).numpy()
            assert relerr(m(x.numpy()), ref) <= OP_RTOL
            assert m.layers[0].format == fmt


def test_densified_model_matches(tmp_path):
    from _fake_nn import sparsify

    torch.manual_seed(0)
    model = sparsify(nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8)), "csr").eval()
    ps.save(model, tmp_path / "m.pspz", torch.randn(2, 32))
    m = ps.load(tmp_path / "m.pspz")
    d = m.densified()
    x = np.random.default_rng(0).standard_normal((4, 32)).astype(np.float32)
    assert [li.format for li in d.layers] == ["dense", "dense"]
    assert relerr(d(x), m(x)) <= OP_RTOL
    assert [li.sparsity for li in d.layers] == pytest.approx([li.sparsity for li in m.layers])


def test_inf_and_nan_propagate_without_warnings(tmp_path):
    """IEEE semantics like torch: x / 0 gives inf or nan, never a numpy warning (an error under pytest)."""
    model = Fn2(lambda x, y: torch.softmax(x / y - x * 0, dim=0)).eval()
    x = torch.tensor([[1.0, 0.0, -3.0, 2.0]])
    y = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    ps.save(model, tmp_path / "m.pspz", (x, y))
    got = ps.load(tmp_path / "m.pspz")(x.numpy(), y.numpy())
    with torch.no_grad():
        ref = model(x, y).numpy()
    assert np.array_equal(np.isnan(got), np.isnan(ref)) and np.isnan(got).sum() >= 2
