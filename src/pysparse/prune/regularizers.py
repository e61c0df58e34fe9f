"""Penalties to add to the training loss so that weights are easier to prune."""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from .._checks import number
from .layers import named_prunable

__all__ = ["l1_regularization"]


def l1_regularization(model: nn.Module, lam: float, modules: Iterable[Any] | None = None) -> torch.Tensor:
    """lam * sum |w| over the weights of ``modules`` (default every Linear and Conv2d):
    add it to the loss to push weights towards zero before pruning."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    number(lam, "lam")
    named = named_prunable(model, modules)
    if not named:
        raise ValueError("the model has no Linear or Conv2d layer to regularise; pass modules=...")
    return lam * sum(m.weight.abs().sum() for _, m in named)
