"""What a Pruner did, layer by layer: ``PruneReport`` of ``PruneLayer`` rows.

``layer_row`` measures one masked layer (target vs measured sparsity, weights,
FLOPs per sample); ``record_positions`` is the forward hook that gives a Conv2d
its output size for the FLOP count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.parametrize import type_before_parametrizations

__all__ = ["PruneReport", "PruneLayer", "LayerReport"]


@dataclass
class PruneLayer:
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

    def __init__(self, rows: list[PruneLayer]) -> None:
        self.rows = rows

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> PruneLayer:
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


# The name this row class had before it was split out of pruner.py (prune.LayerReport).
LayerReport = PruneLayer


def record_positions(module: nn.Module, args: Any, output: torch.Tensor) -> None:
    """Forward hook: output positions per sample (conv: H*W), for FLOP counts."""
    if isinstance(module, nn.Conv2d):
        module._pysparse_positions = int(output.shape[-1] * output.shape[-2])
    else:
        rows = output.numel() // max(module.out_features, 1)
        batch = output.shape[0] if output.dim() > 1 else 1
        module._pysparse_positions = max(rows // max(batch, 1), 1)


def layer_row(name: str, module: nn.Module, target: float, kept_columns: torch.Tensor | None) -> PruneLayer:
    """One layer's row, from its masked weight; ``kept_columns`` (channel pruning) are
    the inputs still fed by a live channel, the only ones counted in kept FLOPs."""
    with torch.no_grad():
        w = module.weight
        nonzero = int(torch.count_nonzero(w))
        live = nonzero
        if kept_columns is not None:
            live = int(torch.count_nonzero(w.reshape(w.shape[0], -1)[:, kept_columns]))
    params = w.numel()
    positions = getattr(module, "_pysparse_positions", None)
    if positions is None and isinstance(module, nn.Linear):
        positions = 1
    return PruneLayer(
        name=name, kind=type_before_parametrizations(module).__name__,
        shape=tuple(w.shape), target=target,
        sparsity=1.0 - nonzero / params if params else 0.0, params=params, nonzero=nonzero,
        flops_dense=None if positions is None else 2 * params * positions,
        flops=None if positions is None else 2 * live * positions,
    )
