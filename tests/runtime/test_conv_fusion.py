"""runtime.ops.matmul.conv_with_activation: a conv2d node and its activation as one function,
equal to running the two nodes (every conv path; NaN stays NaN), and None where it must not fuse."""

from __future__ import annotations

import numpy as np
import pytest

from pysparse.runtime.ops import OPS
from pysparse.runtime.ops.matmul import conv_with_activation


def conv_node(rng, cin, cout, k, stride, groups):
    w = rng.standard_normal((cout, cin // groups * k * k)).astype(np.float32)
    w[rng.random(w.shape) < 0.7] = 0.0
    attrs = dict(in_channels=cin, out_channels=cout, kernel_size=(k, k), stride=(stride, stride),
                 padding=(k // 2, k // 2), dilation=(1, 1), groups=groups, format="dense")
    return OPS["conv2d"].build("c", attrs, {"weight": w, "bias": rng.standard_normal(cout).astype(np.float32)})


@pytest.mark.parametrize("shape", [(8, 8, 3, 2, 8), (8, 8, 3, 1, 8), (4, 6, 1, 1, 1), (3, 5, 3, 2, 1)],
                         ids=["depthwise-s2", "depthwise", "1x1", "stem"])
@pytest.mark.parametrize("act_op, attrs", [
    ("relu", {}), ("relu6", {}), ("hardtanh", {"min_val": 0.0, "max_val": 6.0}), ("clamp", {"min": 0.0, "max": 6.0}),
    ("clamp", {"min": 0.0, "max": None}),
])
def test_fused_equals_the_two_nodes(rng, shape, act_op, attrs):
    cin, cout, k, s, g = shape
    fn = conv_node(rng, cin, cout, k, s, g)
    act = OPS[act_op].build("a", attrs, {})
    fused = conv_with_activation("a", fn, act_op, attrs)
    assert fused is not None
    x = (rng.standard_normal((2, cin, 9, 11)) * 4).astype(np.float32)
    x[0, 0, 3, 3] = np.nan
    np.testing.assert_allclose(fused(x), act(fn(x)), rtol=1e-6, atol=1e-6)  # equal_nan by default
    with pytest.raises(ValueError, match="node 'a'"):
        fused(x[:, :1])


def test_not_fused(rng):
    fn = conv_node(rng, 8, 8, 3, 1, 8)
    assert conv_with_activation("a", fn, "hardtanh", {"min_val": -1.0, "max_val": 1.0}) is None
    assert conv_with_activation("a", fn, "gelu", {}) is None
    assert conv_with_activation("a", lambda x: x, "relu", {}) is None  # not a conv2d node's function
    twice = conv_with_activation("a", fn, "relu", {})
    assert conv_with_activation("b", twice, "relu6", {}) is None  # already carries an activation
