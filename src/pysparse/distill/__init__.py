"""Knowledge distillation for pruned students (needs torch).

- :class:`KDLoss`: alpha * T^2 * KL(p_teacher || p_student) + (1 - alpha) * CE.
- :class:`FeatureDistiller`: hint losses on intermediate activations, with
  learned projections where widths differ.
- :func:`fit`: the training loop: frozen teacher, pruner stepped after every
  optimizer step, tqdm progress, per-epoch history; data parallel under
  ``torchrun`` (gloo).
"""

from __future__ import annotations

from .losses import FeatureDistiller, KDLoss
from .trainer import fit, measured_sparsity

__all__ = ["FeatureDistiller", "KDLoss", "fit", "measured_sparsity"]
