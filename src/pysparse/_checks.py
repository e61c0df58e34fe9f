"""The argument checks every public entry point shares (numpy only).

Each returns the normalised value or raises TypeError / ValueError with a message
that names the argument and says what it must be. ``bool`` is an ``int`` subclass
in Python; none of these take True for 1. The kernels' side (formats, ops, nn,
conversion) and the training side (prune, distill) share this one copy, so
their messages agree; checks that only make sense in one package (a KD
temperature, a loader that is a one-shot iterator) stay in that package.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# BSR block rows the kernels have (block columns: 1 to MAX_BLOCK_COLS).
BLOCK_ROWS = (1, 2, 4, 8, 16)
MAX_BLOCK_COLS = 64
# N:M group sizes M the kernels have.
NM_GROUPS = (2, 4, 8)


def is_int(v: Any) -> bool:
    """An int (numpy integers included), not a bool."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def positive_int(v: Any, what: str) -> int:
    if not is_int(v) or v < 1:
        raise ValueError(f"{what} must be a positive int, got {v!r}")
    return int(v)


def threads(v: Any) -> int:
    """``threads=`` of a kernel call: None (0, pysparse's default) or a positive int."""
    if v is None:
        return 0
    if not is_int(v) or v < 1:
        raise ValueError(f"threads must be a positive int or None, got {v!r}")
    return int(v)


def positive_number(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not v > 0:
        raise ValueError(f"{what} must be a positive number, got {v!r}")
    return float(v)


def is_number(v: Any) -> bool:
    """A Python int or float (numpy.float64 is a float), not a bool: ``sparsity=True`` or
    ``lr=False`` is a mistake, never a number."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def number(v: Any, what: str, minimum: float = 0.0, *, strict: bool = False) -> float:
    """A number >= ``minimum`` (> with ``strict``), or ValueError (for a non-number too)."""
    if not is_number(v) or not (v > minimum if strict else v >= minimum):
        raise ValueError(f"{what} must be a number {'>' if strict else '>='} {minimum:g}, got {v!r}")
    return float(v)


def fraction(v: Any, what: str, high_open: bool = True, hint: str = "") -> float:
    """A number in [0, 1) (``high_open``) or (0, 1], as a float; TypeError for a non-number,
    ValueError outside, with ``hint`` at the end of its message."""
    interval = "[0, 1)" if high_open else "(0, 1]"
    if not is_number(v):
        raise TypeError(f"{what} must be a number in {interval}, got {v!r}")
    v = float(v)
    if not (0.0 <= v < 1.0 if high_open else 0.0 < v <= 1.0):
        raise ValueError(f"{what} must be in {interval}, got {v}{hint}")
    return v


def count(v: Any, what: str, minimum: int = 0, unit: str = "") -> int:
    """An int (not a bool) >= ``minimum``: steps, epochs. ``unit`` says in the TypeError what
    the int counts ("a step count")."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{what} must be an int{f' ({unit})' if unit else ''}, got {v!r}")
    if v < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {v}")
    return v


def pair(v: Any, what: str, minimum: int, *, single: bool = False) -> tuple[int, int]:
    """An int or a pair of ints -> (h, w), each >= minimum. ``single=True`` also takes
    a one-element sequence (torch's functional pooling accepts ``[k]``)."""
    if is_int(v):
        out = (int(v), int(v))
    else:
        try:
            items = tuple(v)
        except TypeError:
            raise TypeError(f"{what} must be an int or a pair of ints, got {v!r}") from None
        if single and len(items) == 1:
            items = items * 2
        if len(items) != 2 or not all(is_int(i) for i in items):
            raise TypeError(f"{what} must be an int or a pair of ints, got {v!r}")
        out = (int(items[0]), int(items[1]))
    if min(out) < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {v!r}")
    return out


def shape2(shape: Any) -> tuple[int, int]:
    """A matrix shape (rows, cols)."""
    try:
        m, k = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be a pair (rows, cols), got {shape!r}") from None
    return m, k


def block(v: Any) -> tuple[int, int]:
    """A BSR block (R, C): R in BLOCK_ROWS, 1 <= C <= 64."""
    try:
        r, c = (int(e) for e in v)
    except (TypeError, ValueError):
        raise ValueError(f"block must be a pair (R, C) of ints, got {v!r}") from None
    if r not in BLOCK_ROWS:
        raise ValueError(f"block rows R must be one of {BLOCK_ROWS}, got {r}")
    if not 1 <= c <= MAX_BLOCK_COLS:
        raise ValueError(f"block columns C must be between 1 and {MAX_BLOCK_COLS}, got {c}")
    return r, c


def nm(pattern: Any) -> tuple[int, int]:
    """'2:4' or (2, 4) -> (2, 4), with a clear error for anything else."""
    try:
        if isinstance(pattern, str):
            n, m = (int(e) for e in pattern.split(":"))
        else:
            n, m = (int(e) for e in pattern)
    except (TypeError, ValueError):
        raise ValueError(f"an N:M pattern is 'N:M' like '2:4' or a pair (N, M), got {pattern!r}") from None
    if m not in NM_GROUPS:
        raise ValueError(f"N:M needs M in {NM_GROUPS}, got {n}:{m}")
    if not 1 <= n <= m:
        raise ValueError(f"N:M needs 1 <= N <= M, got {n}:{m}")
    return n, m
