"""Fold batch norms into the layer before them and merge back-to-back Linear layers.

Both are exact rewrites of a model in eval mode, done before packing so the
sparse model has fewer layers to run:

- ``fold_batchnorm``: ``bn(conv(x))`` with frozen running statistics is one
  affine map per output channel, so it becomes ``conv'(x)`` with
  ``W' = W * s`` and ``b' = (b - mean) * s + beta``, ``s = gamma / sqrt(var + eps)``
  (a per-row scale: zero weights stay zero, so a pruned pattern survives).
  Pairs are found by tracing the model with ``torch.fx`` (any graph where a
  Conv/Linear output feeds only a BatchNorm); models that do not trace fall
  back to adjacent pairs inside ``nn.Sequential`` containers, nested or not.
- ``merge_linear``: ``L2(L1(x)) = (W2 W1) x + (W2 b1 + b2)`` when nothing but
  Identity or (eval-mode) Dropout sits between them in an ``nn.Sequential``.
  A merge is done only where the product has no more nonzero weights than the
  two factors (a 784-32-784 bottleneck or two sparse layers stay as they are)
  unless ``only_if_smaller=False``.
- ``fold``: both, batch norms first (Linear-BN-Linear then merges too).
- depth: ``layer_similarity`` measures how much each block of a stack (a BERT
  encoder's layers, an ``nn.Sequential`` of blocks) changes its input, and
  ``drop_layers`` removes the most redundant ones, returning the layer map to
  distil the shorter model from the full one (``_depth.py``).

Removed layers are replaced by ``nn.Identity`` so module names (and the rest
of the state_dict) keep their meaning. The input model is copied unless
``inplace=True``. Fold after ``Pruner.squash()``: a model with a Linear/Conv
layer still under pruning masks (a parametrization or torch.nn.utils.prune's
weight_orig) is refused.
"""

from __future__ import annotations

import copy
from collections import Counter

import torch
from torch import nn

# Depth folding (measure the blocks of a stack, drop the most redundant) lives in _depth.py.
from ._depth import LayerSimilarity, drop_layers, layer_similarity

__all__ = ["LayerSimilarity", "drop_layers", "fold", "fold_batchnorm", "layer_similarity", "merge_linear"]

_FOLDABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_PASSTHROUGH = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


def _check_model(model: object, inplace: object) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(inplace, bool):
        raise TypeError(f"inplace must be a bool, got {type(inplace).__name__}")
    for name, m in model.named_modules():
        if isinstance(m, _FOLDABLE):
            _check_plain(m, name)


def _check_plain(module: nn.Module, name: str) -> None:
    """Refuse layers whose weight is recomputed from masks (pruning in progress)."""
    from torch.nn.utils import parametrize

    if parametrize.is_parametrized(module) or hasattr(module, "weight_orig"):
        raise ValueError(
            f"layer {name!r} still carries pruning masks (a parametrization or weight_orig); "
            "call pruner.squash() (or torch.nn.utils.prune.remove) before folding"
        )


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, leaf, new)


def _used_once(model: nn.Module) -> set[int]:
    counts = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
    return {i for i, c in counts.items() if c == 1}


def _bn_pairs_fx(model: nn.Module) -> list[tuple[str, str]] | None:
    """(layer, batchnorm) names where the layer's output feeds only the batch norm, or None
    if the model does not trace."""
    import torch.fx

    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # control flow on values, unsupported ops, ...: fall back
        return None
    modules = dict(model.named_modules())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.modules.batchnorm._BatchNorm):
            continue
        if len(node.args) != 1 or node.kwargs:
            continue
        src = node.args[0]
        if not isinstance(src, torch.fx.Node) or src.op != "call_module":
            continue
        if not isinstance(modules.get(src.target), _FOLDABLE) or len(src.users) != 1:
            continue
        if calls[src.target] == 1 and calls[node.target] == 1:
            pairs.append((src.target, node.target))
    return pairs


def _bn_pairs_sequential(model: nn.Module) -> list[tuple[str, str]]:
    pairs = []
    for prefix, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            if isinstance(seq._modules[a], _FOLDABLE) and isinstance(seq._modules[b], nn.modules.batchnorm._BatchNorm):
                pairs.append((f"{prefix}.{a}" if prefix else a, f"{prefix}.{b}" if prefix else b))
    return pairs


def _fold_pair(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm, layer_name: str, bn_name: str) -> None:
    if bn.training:
        raise ValueError(
            f"batch norm {bn_name!r} is in training mode, where it normalises with batch statistics that "
            "cannot be folded; call model.eval() first"
        )
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(
            f"batch norm {bn_name!r} has no running statistics (track_running_stats=False), so it always "
            "normalises with batch statistics and cannot be folded"
        )
    out = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    if bn.num_features != out:
        raise ValueError(
            f"batch norm {bn_name!r} has {bn.num_features} features but {layer_name!r} outputs {out}; "
            "the model cannot run as built"
        )
    w = layer.weight.detach().double()
    zeros = torch.zeros(out, dtype=torch.float64, device=w.device)
    b = layer.bias.detach().double() if layer.bias is not None else zeros
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(b)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(b)
    scale = gamma / torch.sqrt(bn.running_var.double() + bn.eps)
    new_w = w * scale.reshape(-1, *([1] * (w.dim() - 1)))
    new_b = (b - bn.running_mean.double()) * scale + beta
    with torch.no_grad():
        layer.weight.copy_(new_w)
        if layer.bias is None:
            layer.bias = nn.Parameter(new_b.to(layer.weight.dtype), requires_grad=layer.weight.requires_grad)
        else:
            layer.bias.copy_(new_b)


def fold_batchnorm(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Fold every BatchNorm that directly follows a Linear / Conv1d / Conv2d / Conv3d into it.

    The model's batch norms that are folded must be in eval mode (running
    statistics). Returns the folded model (a deep copy unless ``inplace``); the
    batch norms are replaced by ``nn.Identity``. Its eval-mode outputs equal the
    input model's within float rounding (the arithmetic is done in float64).
    Linear + BatchNorm1d is folded as for (N, features) activations.
    """
    _check_model(model, inplace)
    out = model if inplace else copy.deepcopy(model)
    pairs = _bn_pairs_fx(out)
    if pairs is None:
        pairs = _bn_pairs_sequential(out)
    once = _used_once(out)
    for layer_name, bn_name in pairs:
        layer, bn = out.get_submodule(layer_name), out.get_submodule(bn_name)
        if id(layer) not in once or id(bn) not in once:
            continue  # shared modules: folding one use would change the other
        _fold_pair(layer, bn, layer_name, bn_name)  # type: ignore[arg-type]
        _set_submodule(out, bn_name, nn.Identity())
    return out


def _merge_chain(chain: list[nn.Linear]) -> nn.Linear:
    w = chain[0].weight.detach().double()
    b = chain[0].bias.detach().double() if chain[0].bias is not None else None
    for lin in chain[1:]:
        w2 = lin.weight.detach().double()
        w = w2 @ w
        b = w2 @ b if b is not None else None
        if lin.bias is not None:
            b = lin.bias.detach().double() if b is None else b + lin.bias.detach().double()
    first = chain[0]
    merged = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device=first.weight.device, dtype=first.weight.dtype)
    with torch.no_grad():
        merged.weight.copy_(w)
        if b is not None:
            merged.bias.copy_(b)
    merged.train(first.training)
    return merged


def _nnz(w: torch.Tensor) -> int:
    return int(torch.count_nonzero(w))


def merge_linear(model: nn.Module, inplace: bool = False, only_if_smaller: bool = True) -> nn.Module:
    """Merge consecutive Linear layers of every ``nn.Sequential`` (nested ones too) into one.

    Layers merge when only ``nn.Identity`` or Dropout in eval mode sits between
    them and the widths chain. With ``only_if_smaller`` (default) a layer
    joins the merge only if the product has no more nonzero weights than the
    factors, so merging never makes the model larger or denser. Returns the
    merged model (a deep copy unless ``inplace``); the merged layer takes the
    first layer's place and the others (and what sat between) become
    ``nn.Identity``. Dropout in training mode between mergeable layers is a
    ValueError: call ``model.eval()`` first.
    """
    _check_model(model, inplace)
    if not isinstance(only_if_smaller, bool):
        raise TypeError(f"only_if_smaller must be a bool, got {type(only_if_smaller).__name__}")
    out = model if inplace else copy.deepcopy(model)
    once = _used_once(out)
    for prefix, seq in list(out.named_modules()):
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        i = 0
        while i < len(names):
            first = seq._modules[names[i]]
            if not isinstance(first, nn.Linear) or id(first) not in once:
                i += 1
                continue
            chain, spans, weight = [first], [], first.weight.detach().double()
            j = i + 1
            while True:
                k = j
                while k < len(names) and isinstance(seq._modules[names[k]], _PASSTHROUGH):
                    k += 1
                if k >= len(names):
                    break
                nxt = seq._modules[names[k]]
                if not isinstance(nxt, nn.Linear) or id(nxt) not in once or nxt.in_features != chain[-1].out_features:
                    break
                product = nxt.weight.detach().double() @ weight
                if only_if_smaller and _nnz(product) > _nnz(weight) + _nnz(nxt.weight):
                    break
                for between in names[j:k]:
                    if seq._modules[between].training and not isinstance(seq._modules[between], nn.Identity):
                        raise ValueError(
                            f"dropout {between!r} between Linear layers is in training mode; call model.eval() "
                            "before merging (dropout is only the identity in eval mode)"
                        )
                chain.append(nxt)
                spans.extend(names[j : k + 1])
                weight = product
                j = k + 1
            if len(chain) > 1:
                seq._modules[names[i]] = _merge_chain(chain)
                for name in spans:
                    seq._modules[name] = nn.Identity()
            i = j
    return out


def fold(model: nn.Module, inplace: bool = False) -> nn.Module:
    """``fold_batchnorm`` then ``merge_linear``: the model to pack, equal in eval mode to the input."""
    out = fold_batchnorm(model, inplace=inplace)
    return merge_linear(out, inplace=True)
