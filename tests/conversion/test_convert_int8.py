"""ps.convert(model, dtype="int8"): int8 candidates beside the float32 ones, and the report's
dtype and quantization-error columns."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pysparse as ps  # noqa: E402
from _int8_models import pruned_mlp  # noqa: E402




def test_int8_layers_are_chosen_reported_and_close_to_float():
    model = pruned_mlp()
    x = torch.randn(5, 64)
    # formats=("dense",): the float32 side offers only dense, and min_speedup ~0 keeps the best
    # int8 candidate whatever the timings say, so the choice is deterministic.
    sm = ps.convert(model, example_inputs=(x,), dtype="int8", formats=("dense",), min_speedup=1e-9, progress=False)
    rep = sm.pysparse_report_
    assert [layer.dtype for layer in rep.layers] == ["int8"] * 3
    # the last layer is dense: dense_int8 is its only int8 candidate; the others time both kinds
    assert rep.layers[2].format == "dense_int8"
    assert all(layer.format.split("(")[0] in ("bsr_int8", "dense_int8") for layer in rep.layers)
    assert {"bsr_int8(8,4)", "bsr_int8(4,4)", "dense_int8"} <= set(rep.layers[0].times_us)
    assert "int8" in rep.isa
    with torch.no_grad():
        # each layer's error, recomputed on the input the layer saw
        h = x
        for i, idx in enumerate((0, 2, 4)):
            want, got = model[idx](h), sm[idx](h)
            err = float((got.double() - want.double()).norm() / want.double().norm())
            assert rep.layers[i].quant_error == pytest.approx(err, rel=1e-6)
            assert 0 < err < 0.03
            h = torch.relu(want)
        y, want = sm(x), model(x)
    assert float((y - want).norm() / want.norm()) < 0.05
    text = str(rep)
    assert "dtype" in text and "quant err" in text and "dense_int8" in text
    # int8 weights are about a quarter of the float32 sparse bytes
    assert rep.nbytes < 0.35 * rep.dense_nbytes
    assert sm[0].weight.quantized and sm[0].weight.dtype == np.int8


def test_float32_is_the_default_and_bad_dtype_is_refused():
    model = pruned_mlp(1)
    sm = ps.convert(model, progress=False)
    assert all(layer.dtype == "float32" and layer.quant_error is None for layer in sm.pysparse_report_.layers)
    assert all("int8" not in layer.format for layer in sm.pysparse_report_.layers)
    with pytest.raises(ValueError, match="dtype"):
        ps.convert(model, dtype="int4", progress=False)


def test_int8_convert_leaves_convolutions_float32():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 4)).eval()
    x = torch.randn(2, 3, 8, 8)
    sm = ps.convert(model, example_inputs=(x,), dtype="int8", formats=("dense",), min_speedup=1e-9, progress=False)
    kinds = {layer.kind: layer.dtype for layer in sm.pysparse_report_.layers}
    assert kinds == {"conv2d": "float32", "linear": "int8"}
    with torch.no_grad():
        np.testing.assert_allclose(sm(x).numpy(), model(x).numpy(), atol=0.05 * float(model(x).abs().max()))
