"""The one timing loop: interleaved rounds, compared by the median of per-round ratios.

Every function runs once per round (for about ``target_s``); comparing two
functions by the median of their round-by-round time ratio makes a slow phase of
the machine slow both sides of a ratio alike. convert, the CLI and the
benchmarks all time through here.
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable

import numpy as np


def inner_count(fn: Callable[[], Any], target_s: float, cap: int) -> int:
    """How many calls of fn last about target_s (1 to cap), from one timed call."""
    t = time.perf_counter_ns()
    fn()
    one = max((time.perf_counter_ns() - t) / 1e9, 1e-7)
    return max(1, min(cap, int(target_s / one)))


def interleaved(
    fns: dict[str, Callable[[], Any]],
    rounds: int,
    target_s: float,
    *,
    cap: int = 1000,
    warmup: int = 1,
    shuffle: int | None = None,
    counts: dict[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """Seconds per call of each function, one sample per round: ``warmup`` calls each
    (allocation, page faults, thread start), then ``rounds`` rounds in which every
    function runs ``inner_count`` times. The order rotates by one each round, or is
    shuffled with the seed ``shuffle``. ``counts``, if given, receives the calls per sample."""
    order = list(fns)
    for name in order:
        for _ in range(warmup):
            fns[name]()
    inner = {name: inner_count(fns[name], target_s, cap) for name in order}
    if counts is not None:
        counts.update(inner)
    samples: dict[str, list[float]] = {name: [] for name in order}
    rng = random.Random(shuffle) if shuffle is not None else None
    for r in range(rounds):
        if rng is not None:
            rng.shuffle(order)
            now = order
        else:
            now = order[r % len(order) :] + order[: r % len(order)]
        for name in now:
            n, fn = inner[name], fns[name]
            t = time.perf_counter_ns()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter_ns() - t) / n / 1e9)
    return {name: np.array(samples[name]) for name in fns}
