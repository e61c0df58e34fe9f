"""Sparsity patterns: how weights are grouped so that whole groups die together.

Every pattern works on the 2-D view W[out, in] of a weight (a Conv2d weight
[out, in, kh, kw] is W[out, in * kh * kw], the layout the kernels run), and is
exactly one the kernels (``pysparse.formats``) store:

- ``"unstructured"``: each weight on its own (``CSRMatrix``).
- ``(R, C)``: blocks of R consecutive output rows by C consecutive inputs, the
  (R, C) of ``BSRMatrix``. When the shape does not divide, the last block row /
  column are smaller; each still becomes one stored block of the BSR matrix.
- ``"N:M"`` (M in 2, 4, 8): along the input dimension every M consecutive
  weights of a row keep at most N (``NMMatrix``); a short last group keeps at
  most N too. At a target below 1 - N/M the mask ramps towards the N:M one;
  above it, survivors are pruned further (still N:M).
- ``"channel"``: whole output channels / neurons (rows of W), which
  ``pysparse.prune.remove_channels`` can then cut out of the model.
"""

from __future__ import annotations

from typing import Any

import torch

from ..formats import parse_block, parse_nm

__all__ = ["Pattern", "Unstructured", "Block", "NM", "Channel", "parse_pattern"]


class Pattern:
    """Groups of a W[out, in] matrix; subclasses set how."""

    name = ""

    def check(self, rows: int, cols: int, layer: str) -> None:
        """Raise ValueError if the pattern cannot apply to a rows x cols weight."""

    def groups(self, rows: int, cols: int, device: torch.device) -> tuple[torch.Tensor | None, int]:
        """(group id of every weight as a (rows, cols) long tensor, number of groups);
        ``None`` for ids means one group per weight."""
        return None, rows * cols

    def tiers(self, scores: torch.Tensor) -> torch.Tensor | None:
        """Per weight, 0 for weights that must go before any tier-1 weight, else 1."""
        return None

    def __repr__(self) -> str:
        return repr(self.name)


class Unstructured(Pattern):
    name = "unstructured"


class Block(Pattern):
    """(R, C) blocks of W[out, in], like ``BSRMatrix``."""

    def __init__(self, r: int, c: int) -> None:
        self.r, self.c = r, c
        self.name = f"block {r}x{c}"

    def check(self, rows: int, cols: int, layer: str) -> None:
        if self.r > rows or self.c > cols:
            raise ValueError(
                f"block ({self.r}, {self.c}) does not fit layer {layer!r}, whose weight is "
                f"{rows} x {cols} as W[out, in]; use a smaller block, or leave the layer out "
                "(modules=..., exclude_first=True / exclude_last=True)"
            )

    def groups(self, rows: int, cols: int, device: torch.device) -> tuple[torch.Tensor, int]:
        ncb = -(-cols // self.c)
        i = torch.arange(rows, device=device) // self.r
        j = torch.arange(cols, device=device) // self.c
        return i[:, None] * ncb + j[None, :], (-(-rows // self.r)) * ncb

    def __repr__(self) -> str:
        return f"({self.r}, {self.c})"


class Channel(Pattern):
    """Whole output channels: the rows of W[out, in]."""

    name = "channel"

    def groups(self, rows: int, cols: int, device: torch.device) -> tuple[torch.Tensor, int]:
        return torch.arange(rows, device=device)[:, None].expand(rows, cols), rows


class NM(Pattern):
    """At most N of every M consecutive inputs of a row, like ``NMMatrix``."""

    def __init__(self, n: int, m: int) -> None:
        self.n, self.m = n, m
        self.name = f"{n}:{m}"

    def tiers(self, scores: torch.Tensor) -> torch.Tensor:
        rows, cols = scores.shape
        groups = -(-cols // self.m)
        padded = scores.new_full((rows, groups * self.m), float("-inf"))
        padded[:, :cols] = scores
        grouped = padded.reshape(rows, groups, self.m)
        keep = torch.zeros_like(grouped, dtype=torch.bool)
        keep.scatter_(2, grouped.topk(self.n, dim=2).indices, True)
        return keep.reshape(rows, -1)[:, :cols].to(torch.int8)

    def __repr__(self) -> str:
        return repr(self.name)


_NAMED = {"unstructured": Unstructured, "channel": Channel}


def parse_pattern(spec: Any) -> Pattern:
    """A pattern from "unstructured" | "channel" | "N:M" | (R, C) | a Pattern."""
    if isinstance(spec, Pattern):
        return spec
    if isinstance(spec, str):
        key = spec.strip().lower()
        if key in _NAMED:
            return _NAMED[key]()
        if ":" in key:
            return NM(*parse_nm(key))
        raise ValueError(
            f"unknown pattern {spec!r}; use 'unstructured', 'channel', an N:M string like '2:4', "
            "or a block (R, C) of W[out, in] like (8, 1)"
        )
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        return Block(*parse_block(spec))
    raise TypeError(
        f"pattern must be 'unstructured', 'channel', 'N:M' or a block (R, C), got {spec!r}"
    )
