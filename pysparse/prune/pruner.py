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
parametrization ``W = W_orig * mask`` (mask a bool buffer). Every forward uses
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

Under ``torch.distributed`` (e.g. ``distill.fit`` run by ``torchrun``), Taylor /
Fisher statistics are averaged over all ranks before each mask update, so the
masks reflect every process's data and come out the same on every rank.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from .channels import kept_inputs
from .importance import ACCUMULATORS, Criterion, get_criterion, needs_grad
from .patterns import Pattern, parse_pattern
from .schedules import one_shot

__all__ = ["Pruner", "PruneReport", "LayerReport", "l1_regularization", "mask_of"]

PRUNABLE = (nn.Linear, nn.Conv2d)
SCOPES = ("global", "layer")


# ----------------------------------------------------------------------------- masks


class _Mask(nn.Module):
    """Parametrization W -> W * mask; records gradient statistics for Taylor / Fisher."""

    def __init__(self, mask: torch.Tensor, track: str | None = None) -> None:
        super().__init__()
        self.register_buffer("mask", mask)
        self.register_buffer("accumulated", None, persistent=False)
        self.track = track
        self.backward_passes = 0

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        out = w * self.mask
        if self.track is not None and out.requires_grad:
            out.register_hook(functools.partial(_record_grad, self, out.detach()))
        return out

    def reset(self) -> None:
        self.accumulated = None
        self.backward_passes = 0


def _record_grad(mask: _Mask, w: torch.Tensor, grad: torch.Tensor) -> None:
    stat = ACCUMULATORS[mask.track](w, grad.detach())
    if mask.accumulated is None or mask.accumulated.shape != stat.shape:
        mask.accumulated = stat.clone()
    else:
        mask.accumulated += stat
    mask.backward_passes += 1


def mask_of(module: nn.Module, name: str = "weight") -> _Mask | None:
    """The pysparse mask parametrization on ``module.name``, or None."""
    if not parametrize.is_parametrized(module, name):
        return None
    for p in module.parametrizations[name]:
        if isinstance(p, _Mask):
            return p
    return None


def _original(module: nn.Module, name: str) -> torch.Tensor:
    return module.parametrizations[name].original


def _record_positions(module: nn.Module, args: Any, output: torch.Tensor) -> None:
    """Forward hook: output positions per sample (conv: H*W), for FLOP counts."""
    if isinstance(module, nn.Conv2d):
        module._pysparse_positions = int(output.shape[-1] * output.shape[-2])
    else:
        rows = output.numel() // max(module.out_features, 1)
        batch = output.shape[0] if output.dim() > 1 else 1
        module._pysparse_positions = max(rows // max(batch, 1), 1)


# ----------------------------------------------------------------------------- checks


def _check_sparsity(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number in [0, 1), got {value!r}")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(
            f"{what} must be in [0, 1) (the fraction of weights to remove), got {value}; "
            "e.g. 0.9 keeps one weight in ten"
        )
    return value


def _named_prunable(model: nn.Module, modules: Iterable[Any] | None) -> list[tuple[str, nn.Module]]:
    names = {id(m): (n or type(m).__name__) for n, m in model.named_modules()}
    if modules is None:
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


def _next_batchnorms(model: nn.Module) -> dict[int, nn.Module]:
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


# ----------------------------------------------------------------------------- ranking


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
        w = _original(self.module, "weight")
        return w.shape[0], w[0].numel()

    @property
    def numel(self) -> int:
        r, c = self.shape2d
        return r * c


# Groups are ranked by (tier, score, index): already-pruned groups first (tier -1), then
# those a pattern says must go (0), then the rest (1); least important first within a
# tier, the lower index first on ties, so every machine picks the same groups. When all
# groups have one size (unstructured, channels, blocks that divide the shape) the first
# k groups are what is needed, not their order: a partition finds them in O(n) instead
# of a full sort; otherwise the full order is built. ``_FAST = False`` forces the full
# order everywhere (the reference the tests compare the fast path against).
_FAST = True


def _order(tier: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Every group, sorted by (tier, score, index): least important first."""
    tiers = np.unique(tier)
    if len(tiers) == 1:
        return np.argsort(score, kind="stable")
    parts = []
    for t in tiers:
        idx = np.flatnonzero(tier == t)
        parts.append(idx[np.argsort(score[idx], kind="stable")])
    return np.concatenate(parts)


def _smallest(score: np.ndarray, k: int) -> np.ndarray:
    """Ascending indices of the k smallest scores, the lower index first on ties."""
    n = len(score)
    if k <= 0:
        return np.empty(0, np.intp)
    if k >= n:
        return np.arange(n)
    v = np.partition(score, k - 1)[k - 1]  # the k-th smallest value
    take = score < v
    ties = np.flatnonzero(score == v)[: k - int(np.count_nonzero(take))]
    take[ties] = True
    return np.flatnonzero(take)


def _first_k(tier: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """Ascending indices of the first k groups in (tier, score, index) order:
    the set ``np.sort(_order(tier, score)[:k])`` without sorting everything."""
    present = [t for t in (-1, 0, 1) if np.any(tier == t)]  # the tiers _Ranking uses
    if len(present) <= 1:
        return _smallest(score, k)
    take = np.zeros(len(score), bool)
    for t in present:
        if k <= 0:
            break
        in_t = tier == t
        count = int(np.count_nonzero(in_t))
        if k >= count:
            take |= in_t
        else:
            idx = np.flatnonzero(in_t)
            take[idx[_smallest(score[idx], k)]] = True
        k -= count
    return np.flatnonzero(take)


def _count_multiples(size: int, n: int, x: float, strict: bool) -> int:
    """How many of size * 1, size * 2, ..., size * n are < x (``strict``) or <= x."""
    j = min(max(math.floor(x / size), 0), n)
    below = (lambda v: v < x) if strict else (lambda v: v <= x)
    while j > 0 and not below(size * j):  # exact integer-vs-float comparisons fix
        j -= 1  # the float estimate, as searchsorted on the int cumsum would
    while j < n and below(size * (j + 1)):
        j += 1
    return j


@dataclass
class _Ranking:
    """Groups of one layer (or of a global pool): tier (-1 already pruned, 0 must go
    first, 1 others), score, and size: one int when every group has that many weights,
    else an array."""

    tiers: np.ndarray
    scores: np.ndarray
    size: int | np.ndarray
    _order: np.ndarray | None = None
    _cums: np.ndarray | None = None

    @property
    def uniform(self) -> bool:
        """Every group has ``size`` weights, and the fast path is on."""
        return isinstance(self.size, int) and _FAST

    @property
    def order(self) -> np.ndarray:
        if self._order is None:
            self._order = _order(self.tiers, self.scores)
        return self._order

    @property
    def sizes(self) -> np.ndarray:
        return np.full(len(self), self.size, np.int64) if isinstance(self.size, int) else self.size

    @property
    def cums(self) -> np.ndarray:
        """Weights pruned if the first k groups (in order) go, k = 1, 2, ... (uneven sizes)."""
        if self._cums is None:
            self._cums = np.cumsum(self.sizes[self.order])
        return self._cums

    def cum(self, k: int) -> int:
        """Weights pruned if the first k groups (in order) go."""
        if k <= 0:
            return 0
        return self.size * k if self.uniform else int(self.cums[k - 1])

    def count_within(self, x: float, strict: bool) -> int:
        """The most leading groups whose total is < x (``strict``) or <= x."""
        if self.uniform:
            return _count_multiples(self.size, len(self), x, strict)  # type: ignore[arg-type]
        return int(np.searchsorted(self.cums, x, side="left" if strict else "right"))

    def choose_k(self, target: float, max_k: int) -> int:
        """How many leading groups to prune so the pruned count is closest to ``target``
        (at most ``max_k``; on a tie, the smaller count)."""
        m = min(len(self), max_k)
        j = min(self.count_within(target, strict=True), m)  # cum(j) < target <= cum(j + 1)
        return j + 1 if j < m and abs(self.cum(j + 1) - target) < abs(self.cum(j) - target) else j

    def cap_k(self, limit: float, max_k: int) -> int:
        """The most leading groups whose total stays within ``limit`` (at most ``max_k``)."""
        return min(self.count_within(limit + 1e-9, strict=False), max_k)

    def first(self, k: int) -> np.ndarray:
        """Ascending indices of the first k groups in order."""
        if self.uniform:
            return _first_k(self.tiers, self.scores, k)
        take = np.zeros(len(self), bool)
        take[self.order[:k]] = True
        return np.flatnonzero(take)

    def weights_in(self, groups: np.ndarray) -> int:
        """Total size of ``groups``."""
        return self.size * len(groups) if isinstance(self.size, int) else int(self.size[groups].sum())

    def __len__(self) -> int:
        return len(self.scores)

    @staticmethod
    def concat(parts: list[_Ranking]) -> _Ranking:
        sizes = {p.size for p in parts if isinstance(p.size, int)}
        size: int | np.ndarray
        if len(sizes) == 1 and all(isinstance(p.size, int) for p in parts):
            size = sizes.pop()
        else:
            size = np.concatenate([p.sizes for p in parts])
        return _Ranking(np.concatenate([p.tiers for p in parts]), np.concatenate([p.scores for p in parts]), size)


# ----------------------------------------------------------------------------- report


@dataclass
class LayerReport:
    """One pruned layer: target vs measured sparsity, weights and FLOPs per sample.

    FLOPs count 2 per multiply-add of the weight (bias ignored); a Conv2d's
    are ``None`` until one forward pass has recorded its output size. With the
    "channel" pattern, kept FLOPs also leave out the weights on inputs whose
    producing channel is pruned (what ``remove_channels`` cuts), though
    ``nonzero`` counts them while they are nonzero."""

    name: str
    kind: str
    shape: tuple[int, ...]
    target: float
    sparsity: float
    params: int
    nonzero: int
    flops_dense: int | None
    flops: int | None


def _si(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


class PruneReport:
    """Per-layer rows (``.rows``, iterable) and totals; ``str()`` is a table."""

    def __init__(self, rows: list[LayerReport]) -> None:
        self.rows = rows

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> LayerReport:
        return self.rows[i]

    @property
    def params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def nonzero(self) -> int:
        return sum(r.nonzero for r in self.rows)

    @property
    def sparsity(self) -> float:
        """Measured sparsity over all pruned layers' weights."""
        return 1.0 - self.nonzero / self.params if self.params else 0.0

    @property
    def flops_dense(self) -> int | None:
        vals = [r.flops_dense for r in self.rows]
        return None if any(v is None for v in vals) else sum(vals)  # type: ignore[arg-type]

    @property
    def flops(self) -> int | None:
        vals = [r.flops for r in self.rows]
        return None if any(v is None for v in vals) else sum(vals)  # type: ignore[arg-type]

    def __str__(self) -> str:
        head = ("layer", "kind", "shape", "target", "sparsity", "params", "nonzero",
                "FLOPs dense", "FLOPs kept")
        lines = [
            (r.name, r.kind, "x".join(map(str, r.shape)), f"{r.target:.3f}", f"{r.sparsity:.3f}",
             _si(r.params), _si(r.nonzero), _si(r.flops_dense), _si(r.flops))
            for r in self.rows
        ]
        lines.append(("total", "", "", "", f"{self.sparsity:.3f}", _si(self.params), _si(self.nonzero),
                      _si(self.flops_dense), _si(self.flops)))
        widths = [max(len(h), *(len(row[i]) for row in lines)) for i, h in enumerate(head)]

        def fmt(row: tuple[str, ...]) -> str:  # names left, numbers right
            return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

        rule = "  ".join("-" * w for w in widths)
        out = [fmt(head), rule, *(fmt(row) for row in lines[:-1]), rule, fmt(lines[-1])]
        if any(r.flops is None for r in self.rows):
            out.append("(FLOPs of a Conv2d appear after one forward pass)")
        return "\n".join(out)

    def __repr__(self) -> str:
        return f"PruneReport({len(self.rows)} layers, sparsity={self.sparsity:.3f})"


# ----------------------------------------------------------------------------- pruner


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
      modules: layers to prune (modules or names); default every Linear and Conv2d.
      overrides: {module or name: sparsity} for layers pruned to their own target.
      exclude_first / exclude_last: leave the first / last selected layer dense.
      max_layer_sparsity: with scope="global", no layer goes beyond this.

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
        if isinstance(max_layer_sparsity, bool) or not isinstance(max_layer_sparsity, (int, float)) or not (
            0.0 < max_layer_sparsity <= 1.0
        ):
            raise ValueError(f"max_layer_sparsity must be in (0, 1], got {max_layer_sparsity!r}")

        named = _named_prunable(model, modules)
        if exclude_first:
            named = named[1:]
        if exclude_last:
            named = named[:-1]
        if not named:
            raise ValueError(
                "the model has no layer to prune: pass a model with nn.Linear or nn.Conv2d layers "
                "(or name them in modules=...), and check exclude_first / exclude_last"
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
        batchnorms = _next_batchnorms(model) if self.pattern_.name == "channel" else {}
        for name, module in named:
            layer = _Layer(name, module, finals.get(id(module), self.sparsity), id(module) not in finals)
            if self.pattern_.name == "channel":
                if module.bias is not None:
                    layer.followers.append((module, "bias"))
                bn = batchnorms.get(id(module))
                if bn is not None:
                    layer.followers += [(bn, "weight"), (bn, "bias")]
            for m, pname in [(module, "weight"), *layer.followers]:
                track = self._track if m is module and pname == "weight" else None
                mask = _Mask(torch.ones_like(getattr(m, pname), dtype=torch.bool), track)
                parametrize.register_parametrization(m, pname, mask, unsafe=True)
            self._hooks.append(module.register_forward_hook(_record_positions))
            self._layers.append(layer)
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
        return {layer.name: layer.module for layer in self._layers}

    @property
    def masks_(self) -> dict[str, torch.Tensor]:
        """{layer name: bool mask shaped like its weight} (True = kept)."""
        self._check_live()
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

    def report(self) -> PruneReport:
        """Per layer: target and measured sparsity, params, nonzero params, FLOPs."""
        # Channel pruning: the inputs a pruned channel fed go too (in a Sequential stack).
        cut = kept_inputs(self.model) if self.pattern_.name == "channel" else {}
        rows = []
        for layer in self._layers:
            m = layer.module
            with torch.no_grad():
                w = m.weight
                nonzero = int(torch.count_nonzero(w))
                cols = cut.get(id(m))
                live = nonzero if cols is None else int(torch.count_nonzero(w.reshape(w.shape[0], -1)[:, cols]))
            params = w.numel()
            positions = getattr(m, "_pysparse_positions", None)
            if positions is None and isinstance(m, nn.Linear):
                positions = 1
            rows.append(
                LayerReport(
                    name=layer.name, kind=type(m).__name__.replace("Parametrized", ""),
                    shape=tuple(w.shape), target=layer.target,
                    sparsity=1.0 - nonzero / params if params else 0.0, params=params, nonzero=nonzero,
                    flops_dense=None if positions is None else 2 * params * positions,
                    flops=None if positions is None else 2 * live * positions,
                )
            )
        return PruneReport(rows)

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

    def _unwrap(self, keep_masks: bool) -> None:
        """Remove parametrizations (baking the masks in, or not) and hooks."""
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
        shape = _original(module, "weight").shape
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
        gid, ngroups = self._groups(layer)
        size: int | np.ndarray
        if gid is None:
            gscore, galive, size = scores.reshape(-1), alive.reshape(-1), 1
        else:
            flat = gid.reshape(-1)
            gsize = torch.bincount(flat, minlength=ngroups)
            gscore = torch.bincount(flat, weights=scores.reshape(-1).double(), minlength=ngroups) / gsize
            galive = torch.bincount(flat, weights=alive.reshape(-1).double(), minlength=ngroups) > 0
            size = int(gsize[0]) if bool((gsize == gsize[0]).all()) else gsize.numpy()
        tiers = None
        if type(self.pattern_).tiers is not Pattern.tiers:  # only N:M has tiers here
            d = scores.double()
            tiers = self.pattern_.tiers(torch.where(alive, d, torch.full_like(d, -1e300)))
        tier = np.zeros(ngroups, np.int8) if tiers is None else tiers.reshape(-1).numpy().copy()
        tier[~galive.numpy()] = -1
        return _Ranking(tier, gscore.numpy(), size)

    def _allocate_global(
        self, pool: list[int], ranks: dict[int, _Ranking], t: float
    ) -> dict[int, np.ndarray]:
        """Groups to prune per pooled layer: one ranking over all of them, each layer
        capped at ``max_layer_sparsity`` (a capped layer's surplus goes to the others)."""
        pruned: dict[int, np.ndarray] = {}
        limits = {}
        for i in pool:
            n, largest = self._layers[i].numel, ranks[i].size
            largest = largest if isinstance(largest, int) else int(largest.max())
            # At most the cap, and never every group: one (the largest, to be safe) survives.
            limits[i] = min(math.floor(self.max_layer_sparsity * n + 1e-9), n - largest)
        remaining = t * sum(self._layers[i].numel for i in pool)
        pool = list(pool)
        while pool:
            combo = _Ranking.concat([ranks[i] for i in pool])
            chosen = combo.first(combo.choose_k(remaining, len(combo)))  # ascending
            starts = np.cumsum([0] + [len(ranks[i]) for i in pool])
            cuts = np.searchsorted(chosen, starts)
            mine = {i: chosen[cuts[j] : cuts[j + 1]] - starts[j] for j, i in enumerate(pool)}
            over = [i for i in pool if ranks[i].weights_in(mine[i]) > limits[i]]
            if not over:
                pruned.update(mine)
                break
            for i in over:
                r = ranks[i]
                pruned[i] = r.first(r.cap_k(limits[i], len(r) - 1))
                remaining -= r.weights_in(pruned[i])
                pool.remove(i)
        return pruned

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
            pruned.update(self._allocate_global(pool, ranks, targets[pool[0]]))
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
        with torch.no_grad():
            for layer in self._layers:
                for m, pname in [(layer.module, "weight"), *layer.followers]:
                    mask = mask_of(m, pname)
                    if mask is None:
                        continue
                    orig = _original(m, pname)
                    orig.mul_(mask.mask)
                    if orig.grad is not None:
                        orig.grad.mul_(mask.mask)


# ----------------------------------------------------------------------------- L1


def l1_regularization(model: nn.Module, lam: float, modules: Iterable[Any] | None = None) -> torch.Tensor:
    """lam * sum |w| over the weights of ``modules`` (default every Linear and Conv2d):
    add it to the loss to push weights towards zero before pruning."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam >= 0:
        raise ValueError(f"lam must be a number >= 0, got {lam!r}")
    named = _named_prunable(model, modules)
    if not named:
        raise ValueError("the model has no Linear or Conv2d layer to regularise; pass modules=...")
    return lam * sum(m.weight.abs().sum() for _, m in named)
