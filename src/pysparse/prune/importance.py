"""Importance criteria: which weights matter, as small callables.

A criterion is any callable ``(module, name) -> scores`` that returns a tensor
shaped like ``getattr(module, name)`` (the weight as the layer sees it, masks
applied); higher means more important. Patterns average the scores over each
group (a block, a channel), so a criterion never needs to know the pattern.

- ``"magnitude"``: |w| (L1 of a group).
- ``"l2"``: w^2, so a group's score is its mean square, i.e. its L2 norm
  normalised by the group size (edge blocks compare fairly with full ones).
- ``"taylor"``: first-order Taylor saliency |w * dL/dw|, summed over every
  backward pass since the masks last changed (Molchanov et al.).
- ``"fisher"``: w^2 * sum of (dL/dw)^2 over those backward passes: the
  diagonal empirical Fisher, i.e. an OBD/OBS-style second-order saliency.

- ``"bn_scale"``: |gamma| of the BatchNorms in a channel group (network slimming);
  only for graph channel pruning (``Pruner(..., pattern="channel", graph=True)``).

With graph channel pruning a group's score is the criterion summed over every
member of the group (output rows, input columns, depthwise rows), Torch-Pruning's
group importance.

Taylor and Fisher need gradients: the pruner hands their ``accumulate`` to each
weight's mask (``masks.py``), which records the statistic with a hook while the
model trains, so call ``loss.backward()`` at least once before the step that
prunes.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from .masks import mask_of

__all__ = ["Criterion", "Magnitude", "L2", "Taylor", "Fisher", "BNScale", "CRITERIA", "get_criterion"]

Criterion = Callable[[nn.Module, str], torch.Tensor]


class Magnitude:
    """|w|: the classic magnitude criterion."""

    needs_grad = False

    def __call__(self, module: nn.Module, name: str) -> torch.Tensor:
        return getattr(module, name).detach().abs()

    def __repr__(self) -> str:
        return "Magnitude()"


class L2:
    """w^2: a group's mean is its squared L2 norm over its size."""

    needs_grad = False

    def __call__(self, module: nn.Module, name: str) -> torch.Tensor:
        return getattr(module, name).detach().square()

    def __repr__(self) -> str:
        return "L2()"


def _accumulated(module: nn.Module, name: str, what: str) -> torch.Tensor:
    """The gradient statistic the pruner's mask recorded for ``module.name``."""
    mask = mask_of(module, name)
    if mask is None or mask.track != what:
        raise ValueError(
            f"the {what} criterion needs gradients recorded by a pysparse Pruner built with "
            f"criterion={what!r}; use it through prune.Pruner(..., criterion={what!r})"
        )
    if mask.backward_passes == 0 or getattr(mask, "accumulated", None) is None:
        raise ValueError(
            f"the {what} criterion needs gradients, but no backward pass ran since the masks last "
            "changed; call loss.backward() (and optimizer.step()) before pruner.step()"
        )
    return mask.accumulated


class Taylor:
    """|w * dL/dw| summed over the backward passes since the last mask update."""

    needs_grad = True
    track = "taylor"

    @staticmethod
    def accumulate(w: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return (w * grad).abs()

    def __call__(self, module: nn.Module, name: str) -> torch.Tensor:
        return _accumulated(module, name, "taylor")

    def __repr__(self) -> str:
        return "Taylor()"


class Fisher:
    """w^2 * sum (dL/dw)^2: diagonal empirical Fisher (OBD-style) saliency."""

    needs_grad = True
    track = "fisher"

    @staticmethod
    def accumulate(w: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return grad.square()

    def __call__(self, module: nn.Module, name: str) -> torch.Tensor:
        acc = _accumulated(module, name, "fisher")
        return getattr(module, name).detach().square() * acc

    def __repr__(self) -> str:
        return "Fisher()"


class BNScale:
    """|gamma| of a channel group's BatchNorms (Liu et al.'s network slimming); graph channel pruning only."""

    needs_grad = False
    members = "bn"  # the group scorer sums this criterion over BatchNorm members only

    def __call__(self, module: nn.Module, name: str) -> torch.Tensor:
        return getattr(module, name).detach().abs()

    def __repr__(self) -> str:
        return "BNScale()"


CRITERIA: dict[str, type] = {"magnitude": Magnitude, "l2": L2, "taylor": Taylor, "fisher": Fisher,
                             "bn_scale": BNScale}

# How each recorded statistic folds one backward pass in (used by the mask's hook).
ACCUMULATORS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "taylor": Taylor.accumulate,
    "fisher": Fisher.accumulate,
}


def get_criterion(spec: Any) -> Criterion:
    """A criterion from its name (see ``CRITERIA``) or any callable ``(module, name) -> scores``."""
    if isinstance(spec, str):
        try:
            return CRITERIA[spec.lower()]()
        except KeyError:
            raise ValueError(
                f"unknown criterion {spec!r}; use one of {sorted(CRITERIA)} "
                "or a callable (module, name) -> scores shaped like the weight"
            ) from None
    if callable(spec):
        return spec
    raise TypeError(
        f"criterion must be a name ({sorted(CRITERIA)}) or a callable (module, name) -> scores, "
        f"got {type(spec).__name__}"
    )


def needs_grad(criterion: Criterion) -> str | None:
    """'taylor' / 'fisher' when the criterion needs recorded gradients, else None."""
    track = getattr(criterion, "track", None)
    return track if getattr(criterion, "needs_grad", False) and track in ACCUMULATORS else None
