"""Masks over coupled channel groups: the Pruner's ``pattern="channel", graph=True`` mode.

The graph (``groups.py``) says which channels live or die together; this file
scores each cluster (the criterion's scores summed over every member: output
rows, input columns, depthwise rows; or the BatchNorm scales for "bn_scale"),
picks the clusters to cut (per group, or one global ranking of scores normalised
by each group's mean, capped per group), and masks every member's parameters:
weight rows and columns, biases, BatchNorm affine. A cut cluster then outputs
exactly zero everywhere it flows, so ``remove_channels`` cuts it out without
changing the model's output. ``GroupReport`` counts what that leaves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from .._timing import interleaved
from .groups import ChannelGraph, ChannelGroup, keep_lists
from .importance import ACCUMULATORS, Criterion
from .masks import _Mask, mask_of, zero_masked
from .report import _si, record_positions

__all__ = ["GroupMasks", "GroupReport", "GroupRow"]

_PRODUCING = ("out", "dw")


class GroupMasks:
    """Parametrized masks on every member of every prunable group of ``graph``."""

    def __init__(self, graph: ChannelGraph, criterion: Criterion, track: str | None) -> None:
        self.graph = graph
        self.criterion = criterion
        self.params: list[tuple[nn.Module, str]] = []
        self.pruned: list[set[int]] = [set() for _ in graph.groups]
        self._score_cache: dict[str, torch.Tensor] = {}
        members = [mb for g in graph.groups for c in g.clusters for mb in c]
        weights = {mb.module for mb in members if mb.kind != "bn"}
        producers = {mb.module for mb in members if mb.kind in _PRODUCING}
        bns = {mb.module for mb in members if mb.kind == "bn"}
        mods = graph.modules
        for name in mods:  # model order
            m = mods[name]
            if name in weights:
                self._mask(m, "weight", track)
                if m.bias is not None and name in producers:
                    self._mask(m, "bias", None)
        for name in mods:
            if name in bns:
                self._mask(mods[name], "weight", None)
                self._mask(mods[name], "bias", None)
        self.hooks = [mods[n].register_forward_hook(record_positions) for n in mods
                      if isinstance(mods[n], (nn.Conv2d, nn.Linear))]

    def _mask(self, m: nn.Module, pname: str, track: str | None) -> None:
        ones = torch.ones_like(getattr(m, pname), dtype=torch.bool)
        mask = _Mask(ones, track, ACCUMULATORS[track]) if track is not None else _Mask(ones)
        parametrize.register_parametrization(m, pname, mask, unsafe=True)
        self.params.append((m, pname))

    # ------------------------------------------------------------------ scores and choice

    def scores(self, group: ChannelGroup) -> np.ndarray:
        """One score per cluster: the criterion summed over the cluster's members."""
        bn_only = getattr(self.criterion, "members", None) == "bn"
        out = np.zeros(group.size)
        for (name, kind, rep), (cis, idx) in group.by_member().items():
            if (kind == "bn") != bn_only:
                continue
            s = self._score_cache.get(name)
            if s is None:
                s = self.criterion(self.graph.modules[name], "weight")
                if not isinstance(s, torch.Tensor):
                    raise TypeError(f"criterion must return a torch.Tensor of scores, got {type(s).__name__}")
                s = self._score_cache[name] = s.detach().to("cpu", torch.float64)
            if kind == "in":
                per = s.transpose(0, 1).reshape(s.shape[1], -1).sum(1) if s.dim() == 4 else \
                    s.sum(0).reshape(-1, rep).sum(1)
            else:
                per = s.reshape(s.shape[0], -1).sum(1)
            np.add.at(out, cis, per.numpy()[idx])
        if np.isnan(out).any():
            raise ValueError(f"criterion returned NaN scores in the channel group of {group.name!r}")
        return out

    def choose(self, targets: list[float], pooled: list[bool], cap: float) -> list[set[int]]:
        """Clusters to cut per group: ``targets[i]`` of group i's channels; the pooled groups
        share one ranking (scores over the group's mean), each capped at ``cap`` of its channels."""
        chosen: list[set[int]] = [set() for _ in self.graph.groups]
        self._score_cache: dict[str, torch.Tensor] = {}
        pool: list[tuple[int, int, float, int]] = []  # (tier, group, score, cluster)
        want = 0.0
        for gi, g in enumerate(self.graph.groups):
            s = self.scores(g)
            tier = np.array([0 if ci in self.pruned[gi] else 1 for ci in range(g.size)])
            if not pooled[gi]:
                k = min(int(round(targets[gi] * g.size)), g.size - 1)
                order = np.lexsort((np.arange(g.size), s, tier))
                chosen[gi] = {int(c) for c in order[:k]}
                continue
            alive = s[tier == 1]
            mean = float(alive.mean()) if alive.size and alive.mean() > 0 else 1.0
            pool += [(int(tier[ci]), gi, s[ci] / mean, ci) for ci in range(g.size)]
            want += targets[gi] * g.size
        limit = {gi: min(int(cap * g.size), g.size - 1) for gi, g in enumerate(self.graph.groups)}
        left = int(round(want))
        for _, gi, _, ci in sorted(pool):
            if left <= 0:
                break
            if len(chosen[gi]) < limit[gi]:
                chosen[gi].add(ci)
                left -= 1
        return chosen

    # ------------------------------------------------------------------ masks

    def apply(self, chosen: list[set[int]]) -> None:
        self.pruned = chosen
        masks = {(id(m), p): torch.ones_like(mask_of(m, p).mask) for m, p in self.params}  # type: ignore[union-attr]
        mods = self.graph.modules
        for gi, g in enumerate(self.graph.groups):
            cut = np.zeros(g.size, dtype=bool)
            cut[list(chosen[gi])] = True
            for (name, kind, rep), (cis, idx) in g.by_member().items():
                gone = torch.from_numpy(idx[cut[cis]])
                if not gone.numel():
                    continue
                m = mods[name]
                if kind == "in":
                    w = masks[(id(m), "weight")]
                    if w.dim() == 4:
                        w[:, gone] = False
                    else:
                        cols = (gone[:, None] * rep + torch.arange(rep)).reshape(-1)
                        w[:, cols] = False
                    continue
                for p in ("weight", "bias"):
                    if (id(m), p) in masks:
                        masks[(id(m), p)][gone] = False
        with torch.no_grad():
            for m, p in self.params:
                mask = mask_of(m, p)
                mask.mask.copy_(masks[(id(m), p)])  # type: ignore[union-attr]
                mask.reset()  # type: ignore[union-attr]
        self.zero()

    def zero(self) -> None:
        zero_masked(self.params)

    def unwrap(self, keep_masks: bool) -> None:
        for m, p in self.params:
            if parametrize.is_parametrized(m, p):
                parametrize.remove_parametrizations(m, p, leave_parametrized=keep_masks)
        for name, m in self.graph.modules.items():
            if hasattr(m, "_pysparse_positions"):
                del m._pysparse_positions
        for h in self.hooks:
            h.remove()
        self.hooks = []

    def report(self) -> "GroupReport":
        return GroupReport.of(self.graph, self.pruned)


# ---------------------------------------------------------------------- report


@dataclass
class GroupRow:
    """One channel group: its producing layers, channels before and kept."""

    name: str
    layers: tuple[str, ...]
    channels: int
    kept: int


def _sizes(graph: ChannelGraph, pruned: list[set[int]]) -> dict[str, tuple[int, int, int | None, int | None]]:
    """{layer: (params, params kept, FLOPs, FLOPs kept)} for every Conv2d / Linear / BatchNorm."""
    dead = {(gi, ci) for gi, s in enumerate(pruned) for ci in s}
    keep = keep_lists(graph, dead)
    cut = {k: int((~v).sum()) for k, v in keep.items()}
    reps = {mb.module: mb.rep for g in graph.groups for c in g.clusters for mb in c if mb.kind == "in"}
    out = {}
    for name, m in graph.modules.items():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight
            o = w.shape[0] - cut.get((name, "out"), 0) - cut.get((name, "dw"), 0)
            i = w.shape[1] - cut.get((name, "in"), 0) * reps.get(name, 1)
            per = w[0, 0].numel() if w.dim() == 4 else 1
            params, kept = w.numel(), o * i * per
            pos = getattr(m, "_pysparse_positions", None)
            if pos is None and isinstance(m, nn.Linear):
                pos = 1
            flops = None if pos is None else 2 * params * pos
            flops_kept = None if pos is None else 2 * kept * pos
            if m.bias is not None:
                params, kept = params + w.shape[0], kept + o
            out[name] = (params, kept, flops, flops_kept)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            n = m.num_features
            out[name] = (2 * n, 2 * (n - cut.get((name, "bn"), 0)), 0, 0)  # BN FLOPs not counted
    return out


class GroupReport:
    """Per group the channels kept (``.rows``), per layer params and FLOPs before / after
    (``.layers``: {name: (params, kept, FLOPs, FLOPs kept)}), totals; ``str()`` is a table.
    FLOPs (2 per multiply-add) of a conv appear after one forward pass with the pruner on."""

    def __init__(self, rows: list[GroupRow], layers: dict[str, tuple[int, int, int | None, int | None]]) -> None:
        self.rows = rows
        self.layers = layers
        self.latency: tuple[float, float] | None = None  # seconds before / after, if measured

    @classmethod
    def of(cls, graph: ChannelGraph, pruned: list[set[int]]) -> "GroupReport":
        rows = [GroupRow(g.name, g.modules, g.size, g.size - len(pruned[gi])) for gi, g in enumerate(graph.groups)]
        return cls(rows, _sizes(graph, pruned))

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def measure_latency(self, before: nn.Module, after: nn.Module, example_inputs: Any, *,
                        rounds: int = 5, target_s: float = 0.05) -> tuple[float, float]:
        """Median seconds per forward of ``before`` (e.g. a copy of the dense model) and ``after``
        (what ``remove_channels`` made) in torch on 1 thread, interleaved rounds
        (``pysparse._timing``); stored in ``.latency`` and shown by ``str()``."""
        args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                t = interleaved({"before": lambda: before(*args), "after": lambda: after(*args)}, rounds, target_s)
        finally:
            torch.set_num_threads(threads)
        self.latency = (float(np.median(t["before"])), float(np.median(t["after"])))
        return self.latency

    @property
    def params(self) -> int:
        return sum(v[0] for v in self.layers.values())

    @property
    def params_kept(self) -> int:
        return sum(v[1] for v in self.layers.values())

    @property
    def flops(self) -> int | None:
        vals = [v[2] for v in self.layers.values()]
        return None if any(v is None for v in vals) else sum(vals)  # type: ignore[arg-type]

    @property
    def flops_kept(self) -> int | None:
        vals = [v[3] for v in self.layers.values()]
        return None if any(v is None for v in vals) else sum(vals)  # type: ignore[arg-type]

    def __str__(self) -> str:
        head = ("group", "layers", "channels", "kept")
        lines = [(r.name, str(len(r.layers)), str(r.channels), str(r.kept)) for r in self.rows]
        widths = [max(len(h), *(len(x[i]) for x in lines)) if lines else len(h) for i, h in enumerate(head)]

        def fmt(row: tuple[str, ...]) -> str:
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

        out = [fmt(head), "  ".join("-" * w for w in widths), *(fmt(x) for x in lines)]
        out.append(f"params {_si(self.params)} -> {_si(self.params_kept)}, "
                   f"FLOPs {_si(self.flops)} -> {_si(self.flops_kept)}")
        if self.latency is not None:
            out.append(f"latency (torch, 1 thread) {self.latency[0] * 1e3:.2f} ms -> {self.latency[1] * 1e3:.2f} ms")
        return "\n".join(out)

    def __repr__(self) -> str:
        return f"GroupReport({len(self.rows)} groups, FLOPs {_si(self.flops)} -> {_si(self.flops_kept)})"
