"""Schedules: how much is pruned when, as plain functions.

A schedule is any callable ``(step, final) -> target sparsity`` where ``step``
counts ``Pruner.step()`` calls (0 at construction) and ``final`` is the
sparsity asked for. The pruner recomputes its masks whenever the target
changes, so a schedule that holds its value between updates prunes only then.

    prune.one_shot()                         # final from step 0 (the default)
    prune.iterative(every=500, amount=0.2)   # 20% of the survivors every 500 steps
    prune.gradual(begin=0, end=2000, every=100)  # Zhu & Gupta's cubic ramp
"""

from __future__ import annotations

import math

from .._checks import count, fraction

__all__ = ["one_shot", "iterative", "gradual"]


def _steps(value: object, what: str, minimum: int = 0) -> int:
    return count(value, what, minimum, unit="a step count")


class one_shot:
    """All of the final sparsity at step ``at`` (default 0: at once); nothing before."""

    def __init__(self, at: int = 0) -> None:
        self.at = _steps(at, "at")

    def __call__(self, step: int, final: float) -> float:
        return final if step >= self.at else 0.0

    def __repr__(self) -> str:
        return f"one_shot(at={self.at})"


class iterative:
    """Prune ``amount`` of the surviving weights every ``every`` steps from ``begin``,
    fine-tuning in between, until ``final`` is reached (round r: 1 - (1 - amount)^r)."""

    def __init__(self, every: int, amount: float = 0.2, begin: int = 0) -> None:
        self.every = _steps(every, "every", 1)
        self.amount = fraction(amount, "amount", high_open=False)
        self.begin = _steps(begin, "begin")

    def rounds(self, final: float) -> int:
        """How many rounds it takes to reach ``final``."""
        if final <= 0:
            return 0
        if self.amount >= 1.0:
            return 1
        return max(1, math.ceil(math.log1p(-final) / math.log1p(-self.amount) - 1e-9))

    def __call__(self, step: int, final: float) -> float:
        if step < self.begin:
            return 0.0
        r = (step - self.begin) // self.every + 1
        return min(final, 1.0 - (1.0 - self.amount) ** r)

    def __repr__(self) -> str:
        return f"iterative(every={self.every}, amount={self.amount}, begin={self.begin})"


class gradual:
    """Zhu & Gupta's cubic schedule: from ``initial`` at ``begin`` to ``final`` at ``end``,
    updated every ``every`` steps: s_t = s_f + (s_i - s_f) * (1 - (t - begin) / (end - begin))^3.
    Before ``begin`` nothing is pruned; after ``end`` the target stays ``final``."""

    def __init__(self, begin: int, end: int, every: int, initial: float = 0.0) -> None:
        self.begin = _steps(begin, "begin")
        self.end = _steps(end, "end")
        if self.end <= self.begin:
            raise ValueError(f"end must be after begin, got begin={begin}, end={end}")
        self.every = _steps(every, "every", 1)
        self.initial = fraction(initial, "initial")

    def __call__(self, step: int, final: float) -> float:
        if step < self.begin:
            return 0.0
        t = min(self.begin + (step - self.begin) // self.every * self.every, self.end)
        if step >= self.end:
            t = self.end
        progress = (t - self.begin) / (self.end - self.begin)
        return final + (self.initial - final) * (1.0 - progress) ** 3

    def __repr__(self) -> str:
        return f"gradual(begin={self.begin}, end={self.end}, every={self.every}, initial={self.initial})"
