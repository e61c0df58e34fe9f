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


# ---------------------------------------------------------------- batch norm folding, residual add

def bn_node(rng, c, eps=1e-5):
    p = {"running_mean": rng.standard_normal(c).astype(np.float32),
         "running_var": (rng.random(c) + 0.1).astype(np.float32),
         "weight": rng.standard_normal(c).astype(np.float32), "bias": rng.standard_normal(c).astype(np.float32)}
    return OPS["batch_norm"].build("bn", {"num_features": c, "eps": eps}, p)


def sparse_conv_node(rng, cin, cout, k, stride, fmt, bias=True):
    from pysparse.runtime.ops.matmul import _conv_run
    from pysparse.ops.conv import Conv2dPlan
    import pysparse as ps
    w = rng.standard_normal((cout, cin * k * k)).astype(np.float32)
    w[rng.random(w.shape) < 0.7] = 0.0
    m = ps.CSRMatrix.from_dense(w) if fmt == "csr" else ps.BSRMatrix.from_dense(w, block=(4, 1))
    b = rng.standard_normal(cout).astype(np.float32) if bias else None
    return _conv_run("c", Conv2dPlan(m, b, kernel_size=k, stride=stride, padding=k // 2))


CONV_CASES = {  # (cin, cout, k, stride, groups): the paths a MobileNet / ResNet takes
    "depthwise": (8, 8, 3, 1, 8), "depthwise-s2": (8, 8, 3, 2, 8), "stem": (3, 10, 3, 2, 1),
    "1x1-dense": (6, 9, 1, 1, 1), "im2col-dense": (6, 5, 3, 2, 1),
}


@pytest.mark.parametrize("case", list(CONV_CASES) + ["1x1-csr", "1x1-bsr", "shifted-bsr", "im2col-csr"])
def test_batch_norm_folds_into_the_conv(rng, case):
    from pysparse.runtime.ops.matmul import conv_with_batch_norm
    if case in CONV_CASES:
        cin, cout, k, s, g = CONV_CASES[case]
        fn = conv_node(rng, cin, cout, k, s, g)
    else:
        cin, cout = 6, 12
        k, s = {"1x1": (1, 1), "shifted": (3, 1), "im2col": (3, 2)}[case.split("-")[0]]
        fn = sparse_conv_node(rng, cin, cout, k, s, case.split("-")[1], bias=case != "1x1-bsr")
    bn = bn_node(rng, cout)
    folded = conv_with_batch_norm("bn", fn, *bn.affine)
    assert folded is not None and folded.conv_plan.path == fn.conv_plan.path
    assert type(folded.conv_plan.weight) is type(fn.conv_plan.weight)  # the format stays
    for n in (1, 2):
        x = (rng.standard_normal((n, cin, 9, 11)) * 2).astype(np.float32)
        want = bn(fn(x))
        np.testing.assert_allclose(folded(x), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    # then the activation, as the next fusion pass does
    act = conv_with_activation("r", folded, "relu6", {})
    x = (rng.standard_normal((1, cin, 9, 11)) * 2).astype(np.float32)
    np.testing.assert_allclose(act(x), np.clip(bn(fn(x)), 0, 6), rtol=1e-5, atol=1e-5 * np.abs(bn(fn(x))).max())


def test_batch_norm_does_not_fold(rng):
    from pysparse.runtime.ops.matmul import conv_with_batch_norm
    fn = conv_node(rng, 8, 8, 3, 1, 8)
    scale, shift = bn_node(rng, 8).affine
    assert conv_with_batch_norm("bn", lambda x: x, scale, shift) is None  # not a conv2d node
    assert conv_with_batch_norm("bn", conv_with_activation("a", fn, "relu", {}), scale, shift) is None
    assert conv_with_batch_norm("bn", fn, scale[:4], shift[:4]) is None  # channels differ
    bad = scale.copy()
    bad[0] = np.inf
    assert conv_with_batch_norm("bn", fn, bad, shift) is None


@pytest.mark.parametrize("case", ["1x1-dense", "depthwise", "stem", "1x1-csr", "shifted-bsr"])
def test_residual_add_in_the_epilogue(rng, case):
    from pysparse.runtime.ops.matmul import conv_with_residual
    if case in CONV_CASES:
        cin, cout, k, s, g = CONV_CASES[case]
        fn = conv_node(rng, cin, cout, k, s, g)
    else:
        cin, cout = 6, 12
        k = 1 if case.startswith("1x1") else 3
        fn = sparse_conv_node(rng, cin, cout, k, 1, case.split("-")[1])
    add = OPS["add"].build("add", {}, {})
    fused = conv_with_residual("add", fn, add)
    for n in (1, 3):
        x = rng.standard_normal((n, cin, 9, 11)).astype(np.float32)
        y = fn(x)
        r = rng.standard_normal(y.shape).astype(np.float32)
        r[0, 0, 0, :2] = (np.nan, np.inf)
        np.testing.assert_allclose(fused(x, r), add(y, r), rtol=1e-6, atol=1e-6)
        # what the epilogue does not take runs the two nodes: broadcasting, float64, views
        for other in (r[:1, :, :1, :1].copy(), r.astype(np.float64), r[..., ::-1], np.float32(2.0)):
            np.testing.assert_array_equal(fused(x, other), add(y, other))
    with pytest.raises(ValueError, match="node 'c'"):
        fused(x[:, :1], r)
