"""Physical channel removal: a channel-pruned stack becomes a smaller dense model.

    pruner = prune.Pruner(model, sparsity=0.5, pattern="channel", exclude_last=True)
    ...                                   # train
    model = prune.remove_channels(pruner.squash())

Any model torch.fx can trace goes through the channel graph (``groups.py``):
residual adds, concats, depthwise convs and flatten-into-Linear keep their coupled
channels together, and a channel goes when every layer producing it is zeroed (a
``Pruner(..., pattern="channel", graph=True)`` leaves exactly that).

An ``nn.Sequential`` keeps the original stack walk (``graph=False``, its default): it works on ``nn.Sequential`` stacks (nested ones are flattened) of Linear /
Conv2d layers, with BatchNorm, element-wise activations that map 0 to 0
(ReLU, GELU, Tanh, ...), pooling, dropout and Flatten between them. An output
channel goes when its weights, its bias and the affine parameters of the
BatchNorm after it are all zero -- exactly what a channel Pruner leaves -- so
its output is zero and dropping it, with the matching inputs of the next layer,
leaves the model's output unchanged. The last layer keeps all its outputs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from .groups import ChannelGraph, remove_dead

__all__ = ["remove_channels"]

_BN = nn.modules.batchnorm._BatchNorm
# Modules that act per channel and map a zero channel to a zero channel.
_PASS_THROUGH = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.Tanh, nn.SiLU, nn.ELU, nn.Hardtanh, nn.Hardswish, nn.Mish,
    nn.Identity, nn.Dropout, nn.Dropout2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d, nn.Flatten, _BN,
)


def _flatten(model: nn.Module) -> list[nn.Module]:
    if isinstance(model, nn.Sequential):
        return [leaf for child in model for leaf in _flatten(child)]
    if isinstance(model, (nn.Linear, nn.Conv2d, _BN)):  # leaves, even with a pruner's masks on them
        return [model]
    if any(True for _ in model.children()):
        raise ValueError(
            f"remove_channels works on nn.Sequential stacks, but found a {type(model).__name__} with "
            "submodules; rebuild the model as an nn.Sequential, or keep the (zeroed) channels"
        )
    return [model]


def _keep_rows(layer: nn.Module, between: list[nn.Module]) -> torch.Tensor:
    w = layer.weight.detach()
    dead = (w.reshape(w.shape[0], -1) == 0).all(dim=1)
    if layer.bias is not None:
        dead &= layer.bias.detach() == 0
    for m in between:
        if isinstance(m, _BN):
            if not m.affine:
                return torch.ones_like(dead)
            dead &= (m.weight.detach() == 0) & (m.bias.detach() == 0)
    if dead.all():
        dead[0] = False  # a layer keeps at least one channel
    return ~dead


def _param(t: torch.Tensor, like: nn.Parameter) -> nn.Parameter:
    return nn.Parameter(t.detach().clone(), requires_grad=like.requires_grad)


def _shrink_outputs(layer: nn.Module, keep: torch.Tensor) -> None:
    layer.weight = _param(layer.weight[keep], layer.weight)
    if layer.bias is not None:
        layer.bias = _param(layer.bias[keep], layer.bias)
    n = int(keep.sum())
    if isinstance(layer, nn.Linear):
        layer.out_features = n
    else:
        layer.out_channels = n


def _shrink_bn(bn: nn.Module, keep: torch.Tensor) -> None:
    bn.num_features = int(keep.sum())
    if bn.affine:
        bn.weight = _param(bn.weight[keep], bn.weight)
        bn.bias = _param(bn.bias[keep], bn.bias)
    if bn.running_mean is not None:
        bn.running_mean = bn.running_mean[keep].clone()
        bn.running_var = bn.running_var[keep].clone()


def _input_columns(layer: nn.Module, prev: nn.Module, keep: torch.Tensor) -> torch.Tensor:
    """Which columns of ``layer``'s W[out, in] view survive when ``prev`` keeps the
    output channels ``keep``."""
    if isinstance(layer, nn.Conv2d):
        return keep.repeat_interleave(layer.weight[0, 0].numel())  # W[out, in * kh * kw]
    channels = keep.numel()
    if layer.in_features % channels:
        raise ValueError(
            f"cannot match {type(prev).__name__}'s {channels} outputs to the next Linear's "
            f"{layer.in_features} inputs; remove_channels needs in_features to be a multiple of them"
        )
    return keep.repeat_interleave(layer.in_features // channels)  # Flatten is channel-major


def _shrink_inputs(layer: nn.Module, prev: nn.Module, keep: torch.Tensor) -> None:
    if isinstance(layer, nn.Conv2d):
        layer.weight = _param(layer.weight[:, keep], layer.weight)
        layer.in_channels = int(keep.sum())
        return
    cols = _input_columns(layer, prev, keep)
    layer.weight = _param(layer.weight[:, cols], layer.weight)
    layer.in_features = int(cols.sum())


def _links(model: nn.Module) -> list[tuple[nn.Module, nn.Module, list[nn.Module]]]:
    """(layer, next layer, modules between) along a Sequential stack, every link checked
    (ValueError for what remove_channels cannot handle) before anything changes."""
    leaves = _flatten(model)
    layers = [i for i, m in enumerate(leaves) if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not layers:
        raise ValueError("the model has no Linear or Conv2d layer whose channels could be removed")
    links = []
    for a, b in zip(layers, layers[1:]):
        prev, nxt, between = leaves[a], leaves[b], leaves[a + 1 : b]
        for m in (prev, nxt):
            if isinstance(m, nn.Conv2d) and m.groups != 1:
                raise ValueError("remove_channels does not handle grouped convolutions (groups != 1)")
        for m in between:
            if not isinstance(m, _PASS_THROUGH):
                raise ValueError(
                    f"remove_channels cannot see through a {type(m).__name__} between two layers; "
                    f"it supports {', '.join(t.__name__ for t in _PASS_THROUGH)}"
                )
        if isinstance(prev, nn.Linear) and isinstance(nxt, nn.Conv2d):
            raise ValueError("remove_channels cannot follow a Linear into a Conv2d")
        _input_columns(nxt, prev, torch.ones(prev.weight.shape[0], dtype=torch.bool))  # shapes match
        links.append((prev, nxt, between))
    return links


def kept_inputs(model: nn.Module) -> dict[int, torch.Tensor]:
    """{id(layer): bool per column of its W[out, in] view, False for the inputs that
    ``remove_channels`` would cut} for each layer fed by one with zeroed channels; {} when
    the model is not a stack remove_channels handles. Works on masked (unsquashed) models."""
    out = {}
    try:
        with torch.no_grad():
            for prev, nxt, between in _links(model):
                keep = _keep_rows(prev, between)
                if not keep.all():
                    out[id(nxt)] = _input_columns(nxt, prev, keep)
    except ValueError:
        return {}
    return out


def remove_channels(model: nn.Module, graph: bool | None = None, protect: Any = ()) -> nn.Module:
    """Cut zeroed output channels (and every input they fed) out of the model, in place;
    returns the model. ``graph``: None (default) walks an nn.Sequential as a stack and
    traces any other model; True always traces. ``protect``: layers whose outputs stay.
    See the module docstring."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if any(parametrize.is_parametrized(m) for m in model.modules()):
        raise ValueError(
            "the model still has pruning masks; call pruner.squash() first, then remove_channels"
        )
    if graph or (graph is None and not isinstance(model, nn.Sequential)):
        return remove_dead(ChannelGraph(model, protect=protect))
    for prev, nxt, between in _links(model):
        keep = _keep_rows(prev, between)
        if keep.all():
            continue
        _shrink_outputs(prev, keep)
        for m in between:
            if isinstance(m, _BN):
                _shrink_bn(m, keep)
        _shrink_inputs(nxt, prev, keep)
    return model
