"""The MLPs and the CNN of bench_models.py, pruned one-shot by the library (layer scope, then
squashed; no training): the benchmark measures the packing and kernels on what pysparse makes."""

from __future__ import annotations

from typing import Any

import torch

from pysparse import prune


def pruned(model: torch.nn.Module, sparsity: float, modules: list[torch.nn.Module], pattern: Any = "unstructured",
           criterion: str = "magnitude") -> torch.nn.Module:
    """``modules`` pruned one-shot by the library, each to ``sparsity`` (layer scope), masks
    baked in: the benchmark measures what ``prune.Pruner`` produces."""
    prune.Pruner(model, sparsity=sparsity, pattern=pattern, criterion=criterion, scope="layer",
                 modules=modules).squash()
    return model


def mlp(hidden: int, sparsity: float, pattern: str) -> torch.nn.Module:
    model = torch.nn.Sequential(
        torch.nn.Linear(784, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
        torch.nn.Linear(hidden, 10),
    )
    hidden_layers = [model[0], model[2]]  # the 10-way classifier stays dense
    if pattern == "block8x1":  # (8, 1) blocks of W[out, in] with the largest L2 norm
        pruned(model, sparsity, hidden_layers, pattern=(8, 1), criterion="l2")
    else:
        pruned(model, sparsity, hidden_layers)
    return model.eval()


def cnn(width: int, sparsity: float) -> torch.nn.Module:
    def block(cin: int, cout: int, k: int) -> list[torch.nn.Module]:
        return [torch.nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), torch.nn.BatchNorm2d(cout), torch.nn.ReLU()]

    w = width
    model = torch.nn.Sequential(
        *block(3, w, 3),
        *block(w, 2 * w, 1), *block(2 * w, 2 * w, 3), torch.nn.MaxPool2d(2),
        *block(2 * w, 4 * w, 1), *block(4 * w, 4 * w, 3), torch.nn.MaxPool2d(2),
        *block(4 * w, 8 * w, 1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8 * w, 10),
    )
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial statistics, as after training
                m.running_mean.uniform_(-0.5, 0.5, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
    convs = [m for m in list(model.modules())[2:] if isinstance(m, torch.nn.Conv2d)]
    return pruned(model, sparsity, convs).eval()
