"""The real MobileNetV2's code paths on a tiny one (width 0.25, 32x32, random weights): inverted
residuals, depthwise stride 1 and 2, the strided stem; 90% of the pointwise weights pruned;
convert and the torch-free runtime (save / load) both reproduce torch, and the depthwise convs
run pysparse's C++ kernel in both."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pysparse as ps  # noqa: E402
from models.mobilenet_v2 import MobileNetV2  # noqa: E402


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    m = MobileNetV2(num_classes=10, width=0.25).eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):  # non-trivial statistics, as a trained net has
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
            elif isinstance(mod, torch.nn.Conv2d) and mod.kernel_size == (1, 1):
                w = mod.weight
                w[w.abs() < w.abs().flatten().quantile(0.9)] = 0.0  # 90% of the pointwise weights
    return m


def test_tiny_mobilenet_convert_and_runtime_match_torch(tiny, tmp_path):
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = tiny(x)
        sm = ps.convert(tiny, example_inputs=(x[:1],), progress=False)
        torch.testing.assert_close(sm(x), want, rtol=1e-4, atol=1e-4)
    dw = [m for m in sm.modules() if isinstance(m, ps.nn.SparseConv2d) and m.groups > 1]
    assert dw and all(m._plan is not None and m._plan.path == "depthwise" for m in dw)
    path = tmp_path / "tiny_mnv2.pspz"
    ps.save(sm, path, example_inputs=(x[:1],))
    rt = ps.load(path)
    np.testing.assert_allclose(rt(x.numpy()), want.numpy(), rtol=1e-4, atol=1e-4)
    paths = [f.conv_plan.path for n, f in zip(rt._nodes, rt._fns) if n.op == "conv2d"]
    assert paths.count("depthwise") == len(dw) == 17
