"""The argument checks the pruning modules share (one copy, so messages agree).

A bool is an int in Python, but ``sparsity=True`` or ``every=False`` is a
mistake, never a number: every check here refuses it.
"""

from __future__ import annotations

from typing import Any


def is_number(value: Any) -> bool:
    """An int or float, and not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def step_count(value: Any, what: str, minimum: int = 0) -> int:
    """An int step count >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int (a step count), got {value!r}")
    if value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return value


def fraction(value: Any, what: str, high_open: bool = True, hint: str = "") -> float:
    """A number in [0, 1) (``high_open``) or (0, 1], as a float; ``hint`` ends the ValueError's message."""
    interval = "[0, 1)" if high_open else "(0, 1]"
    if not is_number(value):
        raise TypeError(f"{what} must be a number in {interval}, got {value!r}")
    value = float(value)
    if not (0.0 <= value < 1.0 if high_open else 0.0 < value <= 1.0):
        raise ValueError(f"{what} must be in {interval}, got {value}{hint}")
    return value
