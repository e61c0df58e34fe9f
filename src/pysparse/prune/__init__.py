"""Pruning PyTorch models into the patterns pysparse's kernels run (needs torch).

    from pysparse import prune
    pruner = prune.Pruner(model, sparsity=0.9, pattern=(8, 1), criterion="magnitude",
                          scope="global", schedule=prune.gradual(begin=0, end=2000, every=100))
    for x, y in loader:                      # your training loop
        opt.zero_grad(); loss = loss_fn(model(x), y)
        (loss + prune.l1_regularization(model, 1e-6)).backward(); opt.step()
        pruner.step()
    print(pruner.report())
    model = pruner.squash()

- criteria (``importance``): "magnitude", "l2", "taylor", "fisher", ``Activation.calibrate(model,
  batches)`` (Wanda: |w| times its input's norm), or a callable
  ``(module, name) -> scores``;
- patterns (``patterns``): "unstructured", (R, C) blocks, "N:M", "channel";
- schedules (``schedules``): ``one_shot``, ``iterative``, ``gradual``;
- ``ChannelGraph``: coupled channel groups of a torch.fx-traceable model
  (``Pruner(..., pattern="channel", graph=True)`` prunes them);
- ``remove_channels``: a channel-pruned model (a Sequential stack, or any traceable
  model: residual, depthwise, concat) becomes a smaller dense model.
"""

from __future__ import annotations

from .channels import remove_channels
from .group_pruner import GroupReport, GroupRow
from .groups import ChannelGraph, ChannelGroup
from .importance import CRITERIA, L2, Activation, BNScale, Fisher, Magnitude, Taylor, get_criterion
from .patterns import NM, Block, Channel, Pattern, Unstructured, parse_pattern
from .pruner import Pruner
from .regularizers import l1_regularization
from .report import LayerReport, PruneLayer, PruneReport
from .schedules import gradual, iterative, one_shot

__all__ = [
    "CRITERIA",
    "NM",
    "Activation",
    "BNScale",
    "Block",
    "Channel",
    "ChannelGraph",
    "ChannelGroup",
    "Fisher",
    "GroupReport",
    "GroupRow",
    "L2",
    "LayerReport",
    "Magnitude",
    "Pattern",
    "PruneLayer",
    "PruneReport",
    "Pruner",
    "Taylor",
    "Unstructured",
    "get_criterion",
    "gradual",
    "iterative",
    "l1_regularization",
    "one_shot",
    "parse_pattern",
    "remove_channels",
]
