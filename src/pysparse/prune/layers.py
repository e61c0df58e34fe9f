"""Which layers of a model are pruned, and what is masked with them.

``named_prunable`` resolves ``modules=`` (modules or names) to (name, module)
pairs in model order. The default is every Linear and Conv2d, except for a
Hugging Face transformers model (a ``PreTrainedModel``), where it is the Linears
inside the blocks of its layer stack (``pysparse._stack``): for BERT the query,
key, value, attention output and both FFN Linears of every encoder layer. Never
the embeddings (nor an output head tied to them), nor the pooler or a
classifier head: name those in ``modules=`` to prune them too.
 ``next_batchnorms``
finds the BatchNorm that normalises a layer's outputs, which channel pruning
masks along with the layer.
"""

from __future__ import annotations

from typing import Any, Iterable

from torch import nn

from .._stack import find_stack

__all__ = ["PRUNABLE", "is_transformer", "named_prunable", "next_batchnorms", "transformer_linears"]

PRUNABLE = (nn.Linear, nn.Conv2d)


def named_prunable(model: nn.Module, modules: Iterable[Any] | None) -> list[tuple[str, nn.Module]]:
    """(name, layer) for each layer to prune, in model order; TypeError / ValueError
    for a module that is not a Linear / Conv2d of ``model``."""
    names = {id(m): (n or type(m).__name__) for n, m in model.named_modules()}
    if modules is None:
        if is_transformer(model):
            return transformer_linears(model)
        return [(names[id(m)], m) for m in model.modules() if isinstance(m, PRUNABLE)]
    if isinstance(modules, (str, nn.Module)):
        modules = [modules]
    by_name = dict(model.named_modules())
    picked: list[nn.Module] = []
    for m in modules:
        if isinstance(m, str):
            if m not in by_name:
                raise ValueError(
                    f"the model has no module named {m!r}; names are those of model.named_modules()"
                )
            m = by_name[m]
        if not isinstance(m, PRUNABLE):
            raise TypeError(f"only Linear and Conv2d layers can be pruned, got {type(m).__name__}")
        if id(m) not in names:
            raise ValueError(f"module {m!r} is not part of the model")
        picked.append(m)
    ids = {id(m) for m in picked}
    return [(names[id(m)], m) for m in model.modules() if id(m) in ids]


def is_transformer(model: nn.Module) -> bool:
    """A Hugging Face transformers model (checked by class name: transformers need not be installed)."""
    return any(c.__name__ == "PreTrainedModel" for c in type(model).__mro__)


def transformer_linears(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, Linear) for every nn.Linear inside the blocks of the model's layer stack."""
    try:
        prefix, stack = find_stack(model)
    except ValueError:
        return []
    base = f"{prefix}." if prefix else ""
    return [(base + n, m) for n, m in stack.named_modules() if isinstance(m, nn.Linear)]


def next_batchnorms(model: nn.Module) -> dict[int, nn.Module]:
    """{id(layer): the affine BatchNorm directly after it in module order, normalising its outputs}
    (found before any parametrization adds submodules)."""
    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    out = {}
    for m, nxt in zip(leaves, leaves[1:]):
        if (
            isinstance(m, PRUNABLE)
            and isinstance(nxt, nn.modules.batchnorm._BatchNorm)
            and nxt.affine
            and nxt.num_features == m.weight.shape[0]
        ):
            out[id(m)] = nxt
    return out
