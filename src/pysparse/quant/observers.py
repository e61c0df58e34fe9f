"""Activation observers: what static per-tensor int8 scale the values seen so far call for."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np


class Observer:
    """Sees activation tensors (``observe``) and proposes a symmetric int8 scale (``scale``)."""

    def observe(self, x: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def amax(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def scale(self) -> float:
        """amax / 127 (0.0 before anything was seen)."""
        return float(np.float32(self.amax()) / np.float32(127.0))

    def fresh(self) -> Observer:
        """A new observer with the same settings and nothing seen."""
        return copy.deepcopy(self)._reset()

    def _reset(self) -> Observer:  # pragma: no cover - abstract
        raise NotImplementedError


def _finite_abs(x: Any) -> np.ndarray:
    a = np.abs(np.asarray(x, dtype=np.float32).reshape(-1))
    if not np.isfinite(a).all():
        raise ValueError("an observed activation holds NaN or infinity; calibrate on finite data")
    return a


class MinMaxObserver(Observer):
    """The largest |x| seen: no activation of the calibration data is clipped."""

    def __init__(self) -> None:
        self.amax_ = 0.0

    def observe(self, x: Any) -> None:
        a = _finite_abs(x)
        if a.size:
            self.amax_ = max(self.amax_, float(a.max()))

    def amax(self) -> float:
        return self.amax_

    def _reset(self) -> MinMaxObserver:
        self.amax_ = 0.0
        return self


class PercentileObserver(Observer):
    """The ``percentile`` of |x| over the values seen (a uniform sample of at most
    ``max_samples``): clips the rare outliers that would waste the int8 range."""

    def __init__(self, percentile: float = 99.99, max_samples: int = 1 << 20, seed: int = 0) -> None:
        if not 0.0 < float(percentile) <= 100.0:
            raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
        if int(max_samples) < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples!r}")
        self.percentile = float(percentile)
        self.max_samples = int(max_samples)
        self.seed = seed
        self._reset()

    def observe(self, x: Any) -> None:
        a = _finite_abs(x)
        self.seen_ += a.size
        self.samples_ = np.concatenate([self.samples_, a])
        if self.samples_.size > self.max_samples:
            self.samples_ = self._rng.choice(self.samples_, self.max_samples, replace=False)

    def amax(self) -> float:
        return float(np.percentile(self.samples_, self.percentile)) if self.samples_.size else 0.0

    def _reset(self) -> PercentileObserver:
        self.samples_ = np.zeros(0, np.float32)
        self.seen_ = 0
        self._rng = np.random.default_rng(self.seed)
        return self
