"""pysparse.quant: observers, calibration and the per-layer int8 report."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pysparse import quant  # noqa: E402
from pysparse.formats import quantize_rows  # noqa: E402
from _int8_models import pruned_mlp  # noqa: E402


def test_minmax_and_percentile_observers(rng):
    x = rng.standard_normal(10_000).astype(np.float32)
    x[17] = 500.0  # one outlier
    mm = quant.MinMaxObserver()
    pc = quant.PercentileObserver(99.9, max_samples=4096)
    for part in np.split(x, 4):
        mm.observe(part)
        pc.observe(torch.from_numpy(part))
    assert mm.amax() == 500.0 and mm.scale() == np.float32(500.0) / np.float32(127.0)
    assert 2.0 < pc.amax() < 5.0  # the outlier is clipped
    assert pc.seen_ == 10_000 and pc.samples_.size == 4096
    assert quant.MinMaxObserver().scale() == 0.0
    with pytest.raises(ValueError, match="NaN or infinity"):
        mm.observe(np.array([1.0, np.nan], np.float32))
    with pytest.raises(ValueError, match="percentile"):
        quant.PercentileObserver(0.0)
    fresh = pc.fresh()
    assert fresh.seen_ == 0 and fresh.percentile == 99.9 and pc.seen_ == 10_000


def test_calibrate_observes_every_linear_input():
    model = pruned_mlp(5)
    batches = [torch.randn(3, 64) for _ in range(4)]
    obs = quant.calibrate(model, batches)
    assert list(obs) == ["0", "2", "4"]
    assert obs["0"].amax() == pytest.approx(max(float(b.abs().max()) for b in batches))
    with torch.no_grad():
        h = [torch.relu(model[0](b)) for b in batches]
    assert obs["2"].amax() == pytest.approx(max(float(t.abs().max()) for t in h))
    with pytest.raises(TypeError, match="Observer"):
        quant.calibrate(model, batches, observer="minmax")


def test_report_measures_errors_scales_and_sparsity():
    model = pruned_mlp(6)
    batches = [torch.randn(4, 64) for _ in range(3)]
    rep = quant.report(model, batches)
    assert [r.name for r in rep.layers] == ["0", "2", "4"]
    first = rep.layers[0]
    w = model[0].weight.detach().numpy()
    assert first.sparsity == pytest.approx(1 - np.count_nonzero(w) / w.size)
    _, scales = quantize_rows(w)
    assert first.w_scale_max == pytest.approx(float(scales.max()))
    assert first.format.startswith("bsr_int8") and rep.layers[2].format == "dense_int8"
    for r in rep.layers:
        assert 0 < r.error_dynamic < 0.03 and 0 < r.error_static < 0.05
    # a percentile observer clips the largest inputs: its static error differs from min-max's
    pc = quant.report(model, batches, observers=quant.calibrate(model, batches, quant.PercentileObserver(90.0)))
    assert pc.layers[0].act_scale < first.act_scale
    assert pc.layers[0].error_static != first.error_static
    assert "err dynamic" in str(rep) and "bsr_int8" in str(rep)


def test_fake_quant_weight_keeps_zeros():
    w = torch.randn(6, 3, 2, 2)
    w[0] = 0
    w[1, 0] = 0
    fq = quant.fake_quant_weight(w)
    assert fq.shape == w.shape
    assert (fq[w == 0] == 0).all() and (fq[0] == 0).all()
    step = w.reshape(6, -1).abs().max(dim=1).values / 127
    assert ((fq - w).reshape(6, -1).abs().max(dim=1).values <= step / 2 + 1e-7).all()
