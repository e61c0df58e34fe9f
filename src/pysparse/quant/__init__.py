"""Post-training quantization (needs torch): observers, calibration and the per-layer report.

The kernels quantize activations dynamically (per row, inside the kernel: see
``pysparse.formats.int8``); weights go int8 per output channel with zeros kept
(``pysparse.formats.quantize_rows``), so a pruned layer stays as sparse. This
module measures what that costs before a model is converted::

    from pysparse import quant
    obs = quant.calibrate(model, batches, observer=quant.PercentileObserver(99.99))
    rep = quant.report(model, batches, observers=obs)   # print(rep)

Per Linear the report gives the measured sparsity, the range of its per-channel
weight scales, the static activation scale the observer proposes, and the
relative L2 error of the layer output on the calibration data for dynamic
activations (the kernels themselves) and for that static scale (simulated in
float64: the kernels do not take static scales yet).

Quantization-aware training (``prepare_qat``, module ``qat``): fake-quant int8 with a
straight-through gradient, stepped by ``distill.fit`` beside the pruner.
"""

from __future__ import annotations

from .observers import MinMaxObserver, Observer, PercentileObserver
from .ptq import LayerQuantReport, QuantReport, calibrate, fake_quant_weight, report
from .qat import QAT, fake_quant_activations, fake_quant_rows, prepare_qat

__all__ = [
    "LayerQuantReport",
    "MinMaxObserver",
    "QAT",
    "Observer",
    "PercentileObserver",
    "QuantReport",
    "calibrate",
    "fake_quant_activations",
    "fake_quant_rows",
    "fake_quant_weight",
    "prepare_qat",
    "report",
]
