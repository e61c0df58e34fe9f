"""The mask parametrization ``W = W_orig * mask`` and the gradient statistics it records.

Each pruned weight gets a ``_Mask`` through ``torch.nn.utils.parametrize``: the
mask is a bool buffer, so every forward uses the masked weight and every
gradient reaching ``W_orig`` is already masked. A mask built with a statistic
(``track``, the name a criterion checks, and ``accumulate``, how one backward
pass folds in) sums ``accumulate(w, dL/dw)`` over the backward passes since its
last ``reset()``; Taylor and Fisher read it through ``mask_of``.

This module imports nothing from the rest of ``pysparse.prune``: the criteria
hand the mask their accumulate function, so ``importance -> masks`` and
``pruner -> masks, importance`` is the whole graph.
"""

from __future__ import annotations

import functools
from typing import Callable, Iterable

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = ["mask_of", "original"]

Accumulate = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class _Mask(nn.Module):
    """Parametrization W -> W * mask; with ``accumulate``, records a gradient statistic."""

    def __init__(self, mask: torch.Tensor, track: str | None = None, accumulate: Accumulate | None = None) -> None:
        super().__init__()
        if (track is None) != (accumulate is None):
            raise ValueError("a mask records a statistic with both its name (track) and accumulate, or neither")
        self.register_buffer("mask", mask)
        self.register_buffer("accumulated", None, persistent=False)
        self.track = track
        self.accumulate = accumulate
        self.backward_passes = 0

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        out = w * self.mask
        if self.accumulate is not None and out.requires_grad:
            out.register_hook(functools.partial(_record_grad, self, out.detach()))
        return out

    def reset(self) -> None:
        self.accumulated = None
        self.backward_passes = 0


def _record_grad(mask: _Mask, w: torch.Tensor, grad: torch.Tensor) -> None:
    stat = mask.accumulate(w, grad.detach())  # type: ignore[misc]
    if mask.accumulated is None or mask.accumulated.shape != stat.shape:
        mask.accumulated = stat.clone()
    else:
        mask.accumulated += stat
    mask.backward_passes += 1


def mask_of(module: nn.Module, name: str = "weight") -> _Mask | None:
    """The pysparse mask parametrization on ``module.name``, or None."""
    if not parametrize.is_parametrized(module, name):
        return None
    for p in module.parametrizations[name]:
        if isinstance(p, _Mask):
            return p
    return None


def original(module: nn.Module, name: str) -> torch.Tensor:
    """The unmasked parameter under ``module.name``'s parametrization."""
    return module.parametrizations[name].original


def zero_masked(params: Iterable[tuple[nn.Module, str]]) -> None:
    """Zero the masked-out entries of each (module, name)'s underlying parameter and its grad
    (parameters without a pysparse mask are skipped)."""
    with torch.no_grad():
        for m, pname in params:
            mask = mask_of(m, pname)
            if mask is None:
                continue
            orig = original(m, pname)
            orig.mul_(mask.mask)
            if orig.grad is not None:
                orig.grad.mul_(mask.mask)
