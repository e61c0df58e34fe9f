"""Depth folding: how much each block of a stack changes its input, and dropping the most redundant.

``fold.layer_similarity(model, batches)`` runs the model on the batches with hooks on
every block of its stack (``pysparse._stack``: a BERT encoder's layers, an
``nn.Sequential`` of blocks) and measures, over real tokens only (positions where the
batch's ``attention_mask`` is 0 are left out):

- ``cos``: the mean cosine between each token's state going into the block and coming
  out of it. A block with cosine near 1 barely moves its input (in a residual stack,
  its residual branch is small), so removing it costs least (Gromov et al. 2024,
  "The Unreasonable Ineffectiveness of the Deeper Layers"; Men et al.'s ShortGPT).
- ``cka``: linear CKA (Kornblith et al. 2019) between every pair of representations
  (the stack's input, then each block's output), accumulated exactly over all tokens
  from centred cross-covariances, so batches of any size add up to the full-data value.

``fold.drop_layers(model, n or names)`` removes the ``n`` blocks with the highest
cosine (or the named ones) from a copy of the model and returns it with the layer map
for distillation from the full teacher: each kept student block is matched to the
teacher block whose output its output replaces (the last teacher block before the
next kept one), so ``FeatureDistiller(student, teacher, layer_map)`` trains the
shortened stack to produce the states the full one does at the same points.

Why drop rather than merge by weight averaging (measured on all-MiniLM-L6-v2, 128
Lee-corpus sentences, mean cosine of the sentence embeddings to the full model before
any distillation): adjacent layers' weights are nearly orthogonal (cosine 0.05 between
the flattened parameters of layers i and i + 1), and averaging a pair was worse than
dropping the more redundant of the two for every pair (layers 2+3 averaged: 0.853;
layer 2 dropped: 0.929; layers 4+5 averaged: 0.477, layer 4 dropped: 0.838). Dropping
keeps the pretrained blocks intact and leaves the recovery to distillation.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from . import _batches, _stack
from ._table import render

__all__ = ["LayerSimilarity", "layer_similarity", "drop_layers"]


class LayerSimilarity:
    """What ``layer_similarity`` measured. ``names``: the blocks (module names), ``cos``: mean
    cosine between each block's input and output (NaN where their shapes differ), ``cka``:
    (n + 1) x (n + 1) linear CKA between the representations (0: the stack's input, i + 1: block
    i's output), ``tokens``: how many token rows were averaged. ``str()`` is the table."""

    def __init__(self, stack: str, names: list[str], cos: list[float], cka: list[list[float]], tokens: int) -> None:
        self.stack, self.names, self.cos, self.cka, self.tokens = stack, names, cos, cka, tokens

    def cka_in_out(self, i: int) -> float:
        """CKA between block i's input and its output."""
        return self.cka[i][i + 1]

    def ranking(self) -> list[str]:
        """Block names, most redundant first (highest cosine; blocks that change shape last)."""
        order = sorted(range(len(self.names)),
                       key=lambda i: (math.isnan(self.cos[i]), -(self.cos[i] if not math.isnan(self.cos[i]) else 0),
                                      -self.cka_in_out(i), i))
        return [self.names[i] for i in order]

    def rows(self) -> list[list[str]]:
        rank = {n: r + 1 for r, n in enumerate(self.ranking())}

        def f(v: float) -> str:
            return "-" if math.isnan(v) else f"{v:.4f}"

        return [[str(i), n, f(self.cos[i]), f(self.cka_in_out(i)),
                 f(self.cka[i + 1][i + 2]) if i + 2 < len(self.cka) else "-", str(rank[n])]
                for i, n in enumerate(self.names)]

    def __str__(self) -> str:
        head = ["block", "name", "cos(in, out)", "CKA(in, out)", "CKA(out, next out)", "redundancy rank"]
        return "\n".join([*render(head, self.rows()), f"({self.tokens} tokens)"])

    def __repr__(self) -> str:
        return f"LayerSimilarity({len(self.names)} blocks of {self.stack!r}, most redundant {self.ranking()[:1]})"


def _block_input(args: tuple, kwargs: dict) -> torch.Tensor | None:
    x = args[0] if args else kwargs.get("hidden_states", kwargs.get("input"))
    return x if isinstance(x, torch.Tensor) else None


def layer_similarity(model: nn.Module, batches: Iterable[Any], *, stack: str | None = None,
                     progress: bool = True) -> LayerSimilarity:
    """Measure each block of the model's stack on ``batches`` (dicts, (inputs, labels) or (inputs,),
    as ``distill.fit`` takes them); the model runs in eval mode without gradients."""
    from tqdm.auto import tqdm

    prefix, container = _stack.find_stack(model, stack)
    names = _stack.block_names(prefix, container)
    blocks = list(container.children())
    if isinstance(batches, (torch.Tensor, str)) or not isinstance(batches, Iterable):
        raise TypeError(f"batches must be a DataLoader or a list of batches, got {type(batches).__name__}")
    n = len(blocks)
    captured: dict[int, torch.Tensor] = {}
    handles = []

    def post(i: int) -> Any:
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            x = _block_input(args, kwargs)
            if x is not None:
                captured[-(i + 1)] = x  # the input as this block saw it
                if i == 0:
                    captured[0] = x
            y = _batches.first_tensor(output)
            if y is not None:
                captured[i + 1] = y

        return hook

    for i, b in enumerate(blocks):
        handles.append(b.register_forward_hook(post(i), with_kwargs=True))
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    cos_sum = [0.0] * n
    cos_cnt = [0] * n
    shape_ok = [True] * n
    cross: dict[tuple[int, int], torch.Tensor] = {}
    sums: dict[int, torch.Tensor] = {}
    count = 0
    seen = False
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in tqdm(batches, desc="layer similarity", disable=not progress, leave=False):
                b = _batches.moved(_batches.split_batch(batch, "layer_similarity"), device)
                captured.clear()
                _batches.run(model, b)
                mask = _batches.attention_mask(b)
                missing = [i for i in range(n + 1) if i not in captured]
                if missing:
                    raise ValueError(
                        f"block {names[missing[0] - 1] if missing[0] else names[0]!r} did not run (or returned no "
                        "tensor) on the batch; layer_similarity needs every block of the stack on the forward path"
                    )
                reps = [_batches.token_rows(captured[i], mask) for i in range(n + 1)]
                for i in range(n):
                    x_in = _batches.token_rows(captured.get(-(i + 1), captured[i]), mask)
                    x_out = reps[i + 1]
                    if x_in.shape != x_out.shape:
                        shape_ok[i] = False
                        continue
                    c = torch.nn.functional.cosine_similarity(x_in, x_out, dim=1, eps=1e-12)
                    cos_sum[i] += float(c.sum())
                    cos_cnt[i] += c.numel()
                rows = reps[0].shape[0]
                if any(r.shape[0] != rows for r in reps):
                    raise ValueError("the blocks' states have different numbers of rows; give batches of one shape")
                for a in range(n + 1):
                    sums[a] = sums.get(a, 0) + reps[a].sum(0)
                    for c_ in range(a, n + 1):
                        cross[(a, c_)] = cross.get((a, c_), 0) + reps[a].T @ reps[c_]
                count += rows
                seen = True
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not seen:
        raise ValueError("batches yielded nothing: give at least one batch")
    cos = [cos_sum[i] / cos_cnt[i] if shape_ok[i] and cos_cnt[i] else float("nan") for i in range(n)]
    mu = {a: sums[a] / count for a in sums}

    def centred(a: int, c_: int) -> torch.Tensor:
        return cross[(a, c_)] - count * torch.outer(mu[a], mu[c_])

    norms = {a: float(torch.linalg.matrix_norm(centred(a, a))) for a in range(n + 1)}
    cka = [[float("nan")] * (n + 1) for _ in range(n + 1)]
    for a in range(n + 1):
        for c_ in range(a, n + 1):
            den = norms[a] * norms[c_]
            v = float(torch.linalg.matrix_norm(centred(a, c_)) ** 2 / den) if den > 0 else float("nan")
            cka[a][c_] = cka[c_][a] = v
    return LayerSimilarity(prefix, names, cos, cka, count)


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, leaf, new)


def drop_layers(model: nn.Module, n: int | Sequence[Any], batches: Iterable[Any] | None = None, *,
                similarity: LayerSimilarity | None = None, stack: str | None = None,
                inplace: bool = False, progress: bool = True) -> tuple[nn.Module, dict[str, str]]:
    """Remove blocks from the model's stack: ``n`` (an int) the most redundant by
    ``layer_similarity`` (pass ``batches`` to measure on, or a ``similarity`` measured
    before), or the blocks named in ``n`` (module names or block indices).

    Returns ``(student, layer_map)``: the shortened model (a deep copy unless
    ``inplace``; the stack re-indexed 0..k-1, a transformers config's
    ``num_hidden_layers`` and each block's ``layer_idx`` updated) and
    ``{student block name: teacher block name}`` for ``FeatureDistiller``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(inplace, bool):
        raise TypeError(f"inplace must be a bool, got {type(inplace).__name__}")
    prefix, container = _stack.find_stack(model, stack)
    names = _stack.block_names(prefix, container)
    total = len(names)
    if isinstance(n, bool):
        raise TypeError("n must be the number of blocks to drop (int) or the blocks to drop (names / indices)")
    if isinstance(n, int):
        if n < 1:
            raise ValueError(f"n must be >= 1 (the number of blocks to drop), got {n}")
        if n >= total:
            raise ValueError(
                f"cannot drop {n} of the {total} blocks of {prefix or 'the model'!r}: at least one must stay; "
                f"drop at most {total - 1}"
            )
        if similarity is None:
            if batches is None:
                raise ValueError(
                    "drop_layers(model, n) picks the most redundant blocks by layer similarity: pass batches= "
                    "to measure it on, or similarity=fold.layer_similarity(model, batches), or name the blocks"
                )
            similarity = layer_similarity(model, batches, stack=stack, progress=progress)
        if not isinstance(similarity, LayerSimilarity) or similarity.names != names:
            raise ValueError("similarity= was measured on another stack; measure it on this model")
        droppable = [nm for nm in similarity.ranking() if not math.isnan(similarity.cos[names.index(nm)])]
        if len(droppable) < n:
            raise ValueError(
                f"only {len(droppable)} blocks keep their input's shape and can be dropped; asked for {n}"
            )
        dropped = set(droppable[:n])
    else:
        if isinstance(n, str) or not isinstance(n, Sequence):
            n = [n] if isinstance(n, str) else n
        picked = _stack.resolve_blocks(model, list(n), "drop_layers", stack)
        not_blocks = [p for p in picked if p not in names]
        if not_blocks:
            raise ValueError(
                f"drop_layers: {not_blocks[0]!r} is not a block of the stack {prefix or 'the model'!r}; "
                f"its blocks are {names}"
            )
        if not picked:
            raise ValueError("no block named to drop: give n (an int) or at least one block name / index")
        dropped = set(picked)
        if len(dropped) >= total:
            raise ValueError(
                f"cannot drop every block of {prefix or 'the model'!r} ({total}); keep at least one"
            )
    keep = [i for i, nm in enumerate(names) if nm not in dropped]
    out = model if inplace else copy.deepcopy(model)
    _, box = _stack.find_stack(out, prefix if (prefix or stack) else None)
    kids = list(box._modules.items())
    kept = [kids[i] for i in keep]
    numeric = all(k.isdigit() for k, _ in kids)
    if isinstance(box, nn.Sequential):
        from collections import OrderedDict

        new: nn.Module = nn.Sequential(OrderedDict(
            (str(j) if numeric else k, m) for j, (k, m) in enumerate(kept)))
    else:
        new = nn.ModuleList([m for _, m in kept])
    if prefix:
        _set_submodule(out, prefix, new)
    else:
        out = new
    config = getattr(out, "config", None)
    if config is not None and hasattr(config, "num_hidden_layers"):
        config.num_hidden_layers = len(keep)
    for j, (_, m) in enumerate(kept):
        for sub in m.modules():
            if isinstance(getattr(sub, "layer_idx", None), int):
                sub.layer_idx = j
    new_names = _stack.block_names(prefix, new)
    layer_map = {}
    for j, i in enumerate(keep):
        end = keep[j + 1] - 1 if j + 1 < len(keep) else total - 1
        layer_map[new_names[j]] = names[end]
    return out, layer_map
