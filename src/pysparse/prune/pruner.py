"""The Pruner: masks on a torch model's Linear / Conv2d weights, stepped like an optimiser.

    from pysparse import prune
    pruner = prune.Pruner(model, sparsity=0.9, pattern=(8, 1),
                          schedule=prune.gradual(begin=0, end=2000, every=100))
    for x, y in loader:
        opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
        pruner.step()                 # masks change when the schedule says
    print(pruner.report())            # target vs measured sparsity, params, FLOPs
    model = pruner.squash()           # plain model, pruned weights exactly zero

How masks are held: each pruned weight gets a ``torch.nn.utils.parametrize``
parametrization ``W = W_orig * mask`` (mask a bool buffer; ``masks.py``). Every forward uses
the masked weight and every gradient reaching ``W_orig`` is already masked, so
no optimizer (momentum, Adam moments, weight decay) can bring a pruned weight
back; ``step()`` also zeroes the pruned entries of ``W_orig`` and its grad.
Masks are buffers, so ``copy.deepcopy``, ``state_dict()`` / ``load_state_dict()``
(into a model pruned the same way), ``.to(...)``, ``eval()``/``train()`` all
carry them. (Pickling the whole module with ``torch.save(model)`` is refused
by torch for parametrized modules: save the ``state_dict``, or squash first.)

Scope "global" ranks the groups of all layers together (one threshold), with
``max_layer_sparsity`` capping any one layer; "layer" prunes each layer to the
target. With ``pattern="channel"`` the layer's bias and a BatchNorm right
after it (in module order) are masked too, so a pruned channel outputs exactly
zero and ``prune.remove_channels`` can cut it out without changing the output.

``graph=True`` (with ``pattern="channel"``) traces the model with torch.fx and prunes
groups of coupled channels instead of layers (``groups.py``, ``group_pruner.py``): a
conv's outputs with its BatchNorm, the depthwise conv after it and every input they
feed, both operands of a residual add, each slice of a concat. ``sparsity`` is then the
fraction of each group's channels removed; ``protect`` (default: the first layer and the
last) keeps layers' output channels; ``report()`` gives per group the channels kept and
params / FLOPs before and after; ``prune.remove_channels`` cuts the pruned channels out
of any traceable model (residual, depthwise, concat) with the output unchanged.
(Taylor / Fisher statistics are not yet averaged over torch.distributed ranks in this mode.)

Under ``torch.distributed`` (e.g. ``distill.fit`` run by ``torchrun``), Taylor /
Fisher statistics are averaged over all ranks before each mask update, so the
masks reflect every process's data and come out the same on every rank.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from .._checks import fraction, is_number
from .channels import kept_inputs
from .group_pruner import GroupMasks, GroupReport
from .groups import ChannelGraph
from .importance import ACCUMULATORS, Criterion, get_criterion, needs_grad
from .layers import named_prunable, next_batchnorms
from .masks import _Mask, mask_of, original, zero_masked
from .patterns import Pattern, parse_pattern
from .ranking import _Ranking, allocate_global, rank_groups
from .report import PruneReport, layer_row, record_positions
from .schedules import one_shot

__all__ = ["Pruner"]

SCOPES = ("global", "layer")


def _check_sparsity(value: Any, what: str) -> float:
    return fraction(value, what, hint="; it is the fraction of weights to remove: 0.9 keeps one weight in ten")


@dataclass
class _Layer:
    name: str
    module: nn.Module
    final: float  # the sparsity this layer ends at (override or the pruner's)
    pooled: bool  # ranked in the global pool
    followers: list[tuple[nn.Module, str]] = field(default_factory=list)
    groups: tuple[torch.Tensor | None, int] | None = None
    target: float = 0.0  # the target currently applied

    @property
    def shape2d(self) -> tuple[int, int]:
        w = original(self.module, "weight")
        return w.shape[0], w[0].numel()

    @property
    def numel(self) -> int:
        r, c = self.shape2d
        return r * c


class Pruner:
    """Masks a model's Linear / Conv2d weights to a target sparsity, on a schedule.

    Parameters (stored as given; what is learned ends in ``_``):
      model: the torch module, pruned in place.
      sparsity: final fraction of weights removed, in [0, 1).
      pattern: "unstructured" | (R, C) block of W[out, in] | "N:M" | "channel".
      criterion: "magnitude" | "l2" | "taylor" | "fisher" | callable (module, name) -> scores.
      scope: "global" (one ranking over all layers, capped per layer) | "layer".
      schedule: None (all at once: at construction, or at the first step() for
        Taylor / Fisher, which need a backward pass) or a callable
        (step, final) -> target, e.g. prune.gradual(begin=, end=, every=).
      modules: layers to prune (modules or names); default every Linear and Conv2d,
        and for a Hugging Face transformers model the Linears of its encoder / decoder
        blocks (BERT: Q, K, V, attention output, both FFN) -- never the embeddings,
        the pooler or a head unless named here.
      overrides: {module or name: sparsity} for layers pruned to their own target.
      exclude_first / exclude_last: leave the first / last selected layer dense.
      max_layer_sparsity: with scope="global", no layer goes beyond this.

    For a pretrained transformer the strong default is oBERT's lesson: second-order
    (``criterion="fisher"``), gradual (``schedule=prune.gradual(...)`` over most of the
    distillation run, so the model recovers between steps), global over the encoder's
    Linears with a per-layer cap (``max_layer_sparsity``) so no layer is emptied, in a
    block pattern the kernels run ((8, 1) or (4, 1)); step it inside ``distill.fit``.
    One-shot magnitude pruning of all-MiniLM-L6-v2 loses the model (bench/bench_minilm.py).

    Learned: ``step_`` (step() calls so far), ``target_`` (current scheduled
    sparsity), ``layers_`` ({name: module}), ``masks_`` ({name: bool mask}).
    """

    def __init__(
        self,
        model: nn.Module,
        sparsity: float = 0.9,
        pattern: Any = "unstructured",
        criterion: str | Criterion = "magnitude",
        scope: str = "global",
        schedule: Callable[[int, float], float] | None = None,
        modules: Iterable[Any] | None = None,
        *,
        overrides: dict[Any, float] | None = None,
        exclude_first: bool = False,
        exclude_last: bool = False,
        max_layer_sparsity: float = 0.99,
        graph: bool = False,
        protect: Iterable[Any] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.sparsity = _check_sparsity(sparsity, "sparsity")
        self.pattern = pattern
        self.criterion = criterion
        self.scope = scope
        self.schedule = schedule
        self.modules = modules
        self.overrides = overrides
        self.exclude_first = exclude_first
        self.exclude_last = exclude_last
        self.max_layer_sparsity = max_layer_sparsity
        self.graph = graph
        self.protect = protect

        self.pattern_: Pattern = parse_pattern(pattern)
        self.criterion_: Criterion = get_criterion(criterion)
        if scope not in SCOPES:
            raise ValueError(
                f"unknown scope {scope!r}; use 'global' (one ranking over all layers) or 'layer'"
            )
        if schedule is not None and not callable(schedule):
            raise TypeError(
                "schedule must be None (prune at once) or a callable (step, final) -> sparsity "
                f"such as prune.gradual(begin=, end=, every=), got {type(schedule).__name__}"
            )
        self.schedule_ = schedule if schedule is not None else one_shot()
        if not is_number(max_layer_sparsity) or not 0.0 < max_layer_sparsity <= 1.0:
            raise ValueError(f"max_layer_sparsity must be in (0, 1], got {max_layer_sparsity!r}")

        self._graph_masks: GroupMasks | None = None
        if graph:
            self._init_graph(model, named_prunable(model, modules))
            return
        if protect is not None:
            raise ValueError("protect= applies to graph channel pruning; pass pattern='channel', graph=True")
        if getattr(self.criterion_, "members", None) == "bn":
            raise ValueError("criterion 'bn_scale' scores channel groups by their BatchNorm scales; "
                             "use it with pattern='channel', graph=True")
        named = named_prunable(model, modules)
        if exclude_first:
            named = named[1:]
        if exclude_last:
            named = named[:-1]
        if not named:
            raise ValueError(
                "the model has no layer to prune: pass a model with nn.Linear or nn.Conv2d layers "
                "(or name them in modules=...), and check exclude_first / exclude_last (a transformers "
                "model is pruned in the nn.Linear layers of its layer stack by default)"
            )
        finals = self._overrides(model, named, overrides)
        self._track = needs_grad(self.criterion_)
        self._layers: list[_Layer] = []
        self._hooks: list[Any] = []
        for name, module in named:  # check everything before touching the model
            if mask_of(module, "weight") is not None:
                raise ValueError(
                    f"layer {name!r} already has a pysparse mask; squash() the other Pruner first"
                )
            self.pattern_.check(module.weight.shape[0], module.weight[0].numel(), name)
        batchnorms = next_batchnorms(model) if self.pattern_.name == "channel" else {}
        for name, module in named:
            layer = _Layer(name, module, finals.get(id(module), self.sparsity), id(module) not in finals)
            if self.pattern_.name == "channel":
                if module.bias is not None:
                    layer.followers.append((module, "bias"))
                bn = batchnorms.get(id(module))
                if bn is not None:
                    layer.followers += [(bn, "weight"), (bn, "bias")]
            for m, pname in [(module, "weight"), *layer.followers]:
                ones = torch.ones_like(getattr(m, pname), dtype=torch.bool)
                if m is module and pname == "weight" and self._track is not None:
                    mask = _Mask(ones, self._track, ACCUMULATORS[self._track])
                else:
                    mask = _Mask(ones)
                parametrize.register_parametrization(m, pname, mask, unsafe=True)
            self._hooks.append(module.register_forward_hook(record_positions))
            self._layers.append(layer)
        self._start()

    def _start(self) -> None:
        """Step 0: prune now unless the criterion needs gradients first."""
        self._squashed = False
        self.step_ = 0
        self.target_ = 0.0
        if self._track is None:
            try:
                self._maybe_update()
            except Exception:
                self._unwrap(keep_masks=False)  # leave the model as it came
                raise

    # ------------------------------------------------------------------ public

    @property
    def layers_(self) -> dict[str, nn.Module]:
        if self._graph_masks is not None:
            mods = self._graph_masks.graph.modules
            return {n: mods[n] for g in self._graph_masks.graph.groups for n in g.modules}
        return {layer.name: layer.module for layer in self._layers}

    @property
    def masks_(self) -> dict[str, torch.Tensor]:
        """{layer name: bool mask shaped like its weight} (True = kept)."""
        self._check_live()
        if self._graph_masks is not None:
            return {n: mask_of(m).mask for n, m in self.layers_.items()}  # type: ignore[union-attr]
        return {layer.name: mask_of(layer.module).mask for layer in self._layers}  # type: ignore[union-attr]

    def step(self) -> bool:
        """Advance the schedule by one step (call after each optimizer step).

        Returns True when the masks changed. Pruned weights (and their grads)
        are zeroed in the underlying parameters on every call."""
        self._check_live()
        self.step_ += 1
        changed = self._maybe_update()
        if not changed:
            self._zero_pruned()
        return changed

    def report(self) -> PruneReport | GroupReport:
        """Per layer: target and measured sparsity, params, nonzero params, FLOPs; with
        graph=True per channel group: channels kept, params and FLOPs before / after."""
        if self._graph_masks is not None:
            return self._graph_masks.report()
        # Channel pruning: the inputs a pruned channel fed go too (in a Sequential stack).
        cut = kept_inputs(self.model) if self.pattern_.name == "channel" else {}
        return PruneReport([layer_row(layer.name, layer.module, layer.target, cut.get(id(layer.module)))
                            for layer in self._layers])

    def squash(self) -> nn.Module:
        """Bake the masks into the weights, remove parametrizations and hooks; returns the model.

        The pruner is finished afterwards (``step()`` raises)."""
        self._check_live()
        self._zero_pruned()
        self._unwrap(keep_masks=True)
        return self.model

    def __repr__(self) -> str:
        return (
            f"Pruner(sparsity={self.sparsity}, pattern={self.pattern_!r}, criterion={self.criterion_!r}, "
            f"scope={self.scope!r}, schedule={self.schedule_!r}, layers={len(self._layers)}, "
            f"step_={self.step_})"
        )

    # ------------------------------------------------------------------ internals

    def _init_graph(self, model: nn.Module, named: list[tuple[str, nn.Module]]) -> None:
        """graph=True: masks over the coupled channel groups of the traced model."""
        if self.pattern_.name != "channel":
            raise ValueError(f"graph=True prunes coupled channel groups; use pattern='channel', not {self.pattern!r}")
        names = [n for n, _ in named]
        if not names:
            raise ValueError("the model has no Linear or Conv2d layer whose channels could be pruned")
        protect = list(self.protect) if self.protect is not None else [names[0], names[-1]]
        if self.exclude_first:
            protect.append(names[0])
        if self.exclude_last:
            protect.append(names[-1])
        for name, m in named:
            if mask_of(m, "weight") is not None:
                raise ValueError(f"layer {name!r} already has a pysparse mask; squash() the other Pruner first")
        graph = ChannelGraph(model, protect=protect, prunable=names)
        if not graph.groups:
            raise ValueError(
                "no channel group of the model can be pruned: every layer's outputs are protected, or feed "
                f"something the graph cannot see through (protected: {protect})"
            )
        self._group_targets = self._group_overrides(graph, protect)
        self._track = needs_grad(self.criterion_)
        self._graph_masks = GroupMasks(graph, self.criterion_, self._track)
        self._layers, self._hooks = [], []
        self._start()

    def _group_overrides(self, graph: ChannelGraph, protect: list[Any]) -> dict[int, float]:
        """{group index: its own ratio} from overrides={layer: ratio}; ValueError for a protected
        layer or one whose output channels are fixed."""
        if self.overrides is None:
            return {}
        if not isinstance(self.overrides, dict):
            raise TypeError(f"overrides must be a dict {{module or name: ratio}}, got {type(self.overrides).__name__}")
        names = {id(m): n for n, m in graph.modules.items()}
        protected = {p if isinstance(p, str) else names.get(id(p)) for p in protect}
        out: dict[int, float] = {}
        for key, value in self.overrides.items():
            name = key if isinstance(key, str) else names.get(id(key), repr(key))
            if name in protected:
                raise ValueError(
                    f"overrides gives a ratio to layer {name!r}, but {name!r} is protected (its output channels "
                    "all stay); leave it out of protect= (the default protects the first and last layer)"
                )
            group = graph.group_of(name)
            if group is None:
                raise ValueError(
                    f"overrides names layer {name!r}, whose output channels cannot be pruned (not a pruned "
                    f"Conv2d / Linear, or its outputs reach the model output or an op the graph cannot see "
                    f"through); prunable groups are led by {[g.name for g in graph.groups][:8]}"
                )
            out[graph.groups.index(group)] = _check_sparsity(value, f"overrides[{name!r}]")
        return out

    def _unwrap(self, keep_masks: bool) -> None:
        """Remove parametrizations (baking the masks in, or not) and hooks."""
        if self._graph_masks is not None:
            self._graph_masks.unwrap(keep_masks)
            self._squashed = True
            return
        for layer in self._layers:
            for m, pname in [(layer.module, "weight"), *layer.followers]:
                if parametrize.is_parametrized(m, pname):
                    parametrize.remove_parametrizations(m, pname, leave_parametrized=keep_masks)
            if hasattr(layer.module, "_pysparse_positions"):
                del layer.module._pysparse_positions
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self._squashed = True

    def _check_live(self) -> None:
        if self._squashed:
            raise RuntimeError("this Pruner was squashed; build a new Pruner to prune the model again")

    @staticmethod
    def _overrides(model: nn.Module, named: list[tuple[str, nn.Module]], overrides: Any) -> dict[int, float]:
        if overrides is None:
            return {}
        if not isinstance(overrides, dict):
            raise TypeError(
                f"overrides must be a dict {{module or name: sparsity}}, got {type(overrides).__name__}"
            )
        by_name = {n: m for n, m in named}
        ids = {id(m) for _, m in named}
        out: dict[int, float] = {}
        for key, value in overrides.items():
            m = by_name.get(key) if isinstance(key, str) else key
            if m is None or id(m) not in ids:
                raise ValueError(
                    f"overrides key {key!r} is not a pruned layer; pruned layers are {sorted(by_name)}"
                )
            out[id(m)] = _check_sparsity(value, f"overrides[{key!r}]")
        return out

    def _maybe_update(self) -> bool:
        if self._graph_masks is not None:
            t = float(self.schedule_(self.step_, self.sparsity))
            if not 0.0 <= t < 1.0:
                raise ValueError(f"the schedule returned sparsity {t} at step {self.step_}; it must be in [0, 1)")
            if abs(t - self.target_) < 1e-12 and self.step_ > 0:
                return False
            n = len(self._graph_masks.graph.groups)
            own = self._group_targets
            pooled = [self.scope == "global" and i not in own for i in range(n)]
            targets = [float(self.schedule_(self.step_, own[i])) if i in own else t for i in range(n)]
            self._graph_masks.apply(self._graph_masks.choose(targets, pooled, self.max_layer_sparsity))
            self.target_ = t
            return True
        targets = [float(self.schedule_(self.step_, layer.final)) for layer in self._layers]
        for t in targets:
            if not 0.0 <= t < 1.0:
                raise ValueError(
                    f"the schedule returned sparsity {t} at step {self.step_}; it must be in [0, 1)"
                )
        if all(abs(t - layer.target) < 1e-12 for t, layer in zip(targets, self._layers)):
            return False
        self._update(targets)
        self.target_ = float(self.schedule_(self.step_, self.sparsity))
        return True

    def _groups(self, layer: _Layer) -> tuple[torch.Tensor | None, int]:
        if layer.groups is None:
            r, c = layer.shape2d
            layer.groups = self.pattern_.groups(r, c, torch.device("cpu"))
        return layer.groups

    def _scores(self, layer: _Layer) -> torch.Tensor:
        module = layer.module
        scores = self.criterion_(module, "weight")
        if not isinstance(scores, torch.Tensor):
            raise TypeError(f"criterion must return a torch.Tensor of scores, got {type(scores).__name__}")
        shape = original(module, "weight").shape
        if scores.shape != shape:
            raise ValueError(
                f"criterion returned scores shaped {tuple(scores.shape)} for layer {layer.name!r}, "
                f"whose weight is {tuple(shape)}; return one score per weight"
            )
        # float32 stays float32 (exact, and half the memory traffic of the ranking);
        # narrower floats widen to it exactly, anything else goes to float64.
        dtype = torch.float32 if scores.dtype in (torch.float32, torch.float16, torch.bfloat16) else torch.float64
        scores = scores.detach().to("cpu", dtype).reshape(layer.shape2d)
        if torch.isnan(scores).any():
            raise ValueError(f"criterion returned NaN scores for layer {layer.name!r}")
        return scores

    def _rank(self, layer: _Layer) -> _Ranking:
        scores = self._scores(layer)
        mask = mask_of(layer.module)
        assert mask is not None  # installed by __init__
        alive = mask.mask.detach().to("cpu").reshape(layer.shape2d)
        return rank_groups(scores, alive, self._groups(layer), self.pattern_)

    def _average_over_ranks(self) -> None:
        """Under torch.distributed, replace every rank's recorded gradient statistics by
        their mean over all ranks, so Taylor / Fisher decide on all the data, not one
        process's share (each rank's hook sees its local gradients, before DDP
        averages them). Every rank must update at the same step, as a schedule makes them."""
        dist = torch.distributed
        if self._track is None or not (dist.is_available() and dist.is_initialized()):
            return
        world = dist.get_world_size()
        if world == 1:
            return
        masks = [mask_of(layer.module) for layer in self._layers]
        # Only when every rank has statistics for every layer (a rank without any raises
        # in the criterion); agreeing on that first keeps the collectives matched.
        have = torch.tensor([sum(m is not None and m.accumulated is not None for m in masks)])
        dist.all_reduce(have, op=dist.ReduceOp.MIN)
        if int(have) != len(masks):
            return
        accs = [m.accumulated for m in masks]  # type: ignore[union-attr]
        flat = torch.cat([a.detach().to("cpu", torch.float64).reshape(-1) for a in accs])
        dist.all_reduce(flat)  # one collective for every layer
        flat /= world
        with torch.no_grad():
            for a, part in zip(accs, flat.split([a.numel() for a in accs])):
                a.copy_(part.reshape(a.shape))

    def _update(self, targets: list[float]) -> None:
        self._average_over_ranks()
        ranks = {i: self._rank(layer) for i, layer in enumerate(self._layers)}
        pruned: dict[int, np.ndarray] = {}
        pool = [i for i, layer in enumerate(self._layers) if layer.pooled and self.scope == "global"]
        for i, layer in enumerate(self._layers):
            if i not in pool:
                r = ranks[i]
                pruned[i] = r.first(r.choose_k(targets[i] * layer.numel, len(r) - 1))
        if pool:
            pooled = {i: ranks[i] for i in pool}
            numels = {i: self._layers[i].numel for i in pool}
            pruned.update(allocate_global(pooled, numels, targets[pool[0]], self.max_layer_sparsity))
        for i, layer in enumerate(self._layers):
            self._set_mask(layer, pruned[i])
            layer.target = targets[i]
        self._zero_pruned()

    def _set_mask(self, layer: _Layer, pruned_groups: np.ndarray) -> None:
        gid, ngroups = self._groups(layer)
        keep = torch.ones(ngroups, dtype=torch.bool)
        keep[torch.from_numpy(pruned_groups.astype(np.int64))] = False
        elem = (keep if gid is None else keep[gid]).reshape(layer.shape2d)
        mask = mask_of(layer.module)
        assert mask is not None
        with torch.no_grad():
            mask.mask.copy_(elem.reshape(mask.mask.shape))
        mask.reset()
        rows = elem.any(dim=1)
        for m, pname in layer.followers:
            fm = mask_of(m, pname)
            if fm is not None:
                with torch.no_grad():
                    fm.mask.copy_(rows)

    def _zero_pruned(self) -> None:
        """Zero pruned entries of the underlying parameters and their grads."""
        if self._graph_masks is not None:
            self._graph_masks.zero()
            return
        zero_masked((m, pname) for layer in self._layers for m, pname in [(layer.module, "weight"), *layer.followers])
