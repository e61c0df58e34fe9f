"""Find the stack of blocks in a model: a BERT encoder's layers, an nn.Sequential of blocks.

``fold.layer_similarity`` / ``fold.drop_layers`` measure and cut such a stack, the
distillation losses map student blocks to teacher blocks by index, and the pruner's
default set for a transformer is the Linears inside it. One finder, so they agree:

- ``model`` itself an ``nn.Sequential``: its children;
- otherwise the ``nn.ModuleList`` (or ``nn.Sequential``) of modules of one type holding
  the most parameters (one block is still a stack: ``drop_layers`` may leave one) (``encoder.layer`` of a BertModel, ``h`` of GPT-2,
  ``layers`` of most others);
- ``stack="encoder.layer"`` names it outright.

Needs torch.
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["find_stack", "block_names", "resolve_blocks"]


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def find_stack(model: nn.Module, stack: str | None = None) -> tuple[str, nn.Module]:
    """(name, container) of the model's stack of blocks; ValueError if there is none."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if stack is not None:
        if not isinstance(stack, str):
            raise TypeError(f"stack must be a module name (str), got {type(stack).__name__}")
        mods = dict(model.named_modules())
        if stack not in mods or not isinstance(mods[stack], (nn.ModuleList, nn.Sequential)):
            raise ValueError(
                f"stack={stack!r} is not an nn.ModuleList / nn.Sequential of the model; "
                "name the container of the blocks, e.g. 'encoder.layer' for a BertModel"
            )
        return stack, mods[stack]
    if isinstance(model, nn.Sequential):
        return "", model
    best: tuple[int, str, nn.Module] | None = None
    for name, m in model.named_modules():
        if not isinstance(m, (nn.ModuleList, nn.Sequential)) or len(m) < 1:
            continue
        kinds = {type(c) for c in m.children()}
        if len(kinds) != 1:
            continue
        n = _params(m)
        if n > 0 and (best is None or n > best[0]):
            best = (n, name, m)
    if best is None:
        raise ValueError(
            f"{type(model).__name__} has no stack of blocks (an nn.Sequential, or an nn.ModuleList of "
            "modules of one type, like a BertModel's encoder.layer); pass stack='name' to pick one"
        )
    return best[1], best[2]


def block_names(prefix: str, container: nn.Module) -> list[str]:
    """The full module names of the blocks of ``container`` (found at ``prefix``)."""
    return [f"{prefix}.{k}" if prefix else k for k in container._modules]


def resolve_blocks(model: nn.Module, keys: Any, what: str, stack: str | None = None) -> list[str]:
    """Module names for ``keys``: block indices (ints, negative allowed) of the model's stack or
    module names; ValueError naming what exists for a key that does not."""
    mods = dict(model.named_modules())
    names: list[str] | None = None
    out = []
    for k in keys:
        if isinstance(k, bool):
            raise TypeError(f"{what}: {k!r} is neither a block index nor a module name")
        if isinstance(k, int):
            if names is None:
                names = block_names(*find_stack(model, stack))
            if not -len(names) <= k < len(names):
                raise ValueError(
                    f"{what}: block {k} does not exist; the stack has {len(names)} blocks (0..{len(names) - 1})"
                )
            out.append(names[k])
        elif isinstance(k, str):
            if k not in mods:
                some = ", ".join(repr(n) for n in list(mods)[1:8])
                raise ValueError(f"{what}: the model has no module named {k!r}; names look like: {some}")
            out.append(k)
        else:
            raise TypeError(f"{what}: {k!r} is neither a block index (int) nor a module name (str)")
    return out
