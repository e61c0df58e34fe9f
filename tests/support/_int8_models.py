"""A small MLP whose hidden Linears are pruned in (8, 4) blocks: the int8 tests' model."""

from __future__ import annotations

import torch


def pruned_mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 61), torch.nn.ReLU(), torch.nn.Linear(61, 10)
    )
    with torch.no_grad():
        for layer in (model[0], model[2]):
            w = layer.weight
            keep = torch.rand(-(-w.shape[0] // 8), -(-w.shape[1] // 4)) < 0.2
            mask = keep.repeat_interleave(8, 0).repeat_interleave(4, 1)[: w.shape[0], : w.shape[1]]
            w.mul_(mask)
    return model.eval()
