"""The benchmarks' harness: environment capture, thread settings, and the one use of the
timing loop (pysparse._timing, the loop convert and the CLI use too) for kernel cells and
whole models.

Timing follows the rules a shared, noisy machine needs: one process, warm-up, then rounds
in which every contender runs once (shuffled or rotating order), medians over rounds, and
ratios to torch dense taken round by round so slow phases of the machine cancel out; the
kernel grid's A/A contender (a second torch dense) measures what is left of the noise.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
from typing import Any, Callable

import numpy as np

import pysparse as ps
from pysparse._timing import interleaved

from contenders import Cell

try:  # numpy/scipy BLAS threads; scikit-learn (test extra) brings threadpoolctl
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - reported in the results' environment
    threadpool_limits = None


def environment() -> dict:
    import torch

    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": ps.cpu_info(),
        "torch": torch.__version__,
        "torch_mkl": torch.backends.mkl.is_available(),
        "numpy": np.__version__,
        "load_1min": os.getloadavg()[0],
    }
    try:
        with open("/proc/cpuinfo") as f:
            env["cpu_model"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        import threadpoolctl  # noqa: F401

        env["blas_threads_limited"] = True
    except ImportError:
        env["blas_threads_limited"] = False
    return env


@contextlib.contextmanager
def threads(n: int):
    import torch

    before = (torch.get_num_threads(), ps.get_num_threads())
    torch.set_num_threads(n)
    ps.set_num_threads(n)
    ctx = threadpool_limits(limits=n) if threadpool_limits is not None else contextlib.nullcontext()
    try:
        with ctx:
            yield
    finally:
        torch.set_num_threads(before[0])
        ps.set_num_threads(before[1])


def measure_cell(cell: Cell, rounds: int, target_s: float = 2e-3, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per contender of a kernel cell: median seconds per call, IQR/median, and the median and IQR
    of the round-by-round ratio torch_dense / contender (> 1: faster than dense).
    Rounds in shuffled order."""
    inner: dict[str, int] = {}
    times = interleaved({c.name: c.fn for c in cell.contenders}, rounds, target_s, warmup=2, shuffle=seed,
                        counts=inner)
    base = np.array(times["torch_dense"])
    out = {}
    for name, ts in times.items():
        arr = np.array(ts)
        q1, med, q3 = np.percentile(arr, [25, 50, 75])
        ratio = base / arr
        r1, rmed, r3 = np.percentile(ratio, [25, 50, 75])
        out[name] = {
            "median_s": float(med),
            "iqr_over_median": float((q3 - q1) / med),
            "speedup_vs_torch_dense": float(rmed),
            "speedup_iqr": float(r3 - r1),
            "inner": inner[name],
        }
    return out


def measure(fns: dict[str, Callable[[], Any]], rounds: int, target_s: float) -> dict[str, dict[str, float]]:
    """Per function (whole models): median and IQR of µs per call, and the median and IQR of the
    round-by-round ratio torch_dense / function (rotating order)."""
    times = {n: t * 1e6 for n, t in interleaved(fns, rounds, target_s, warmup=2).items()}
    base = np.array(times["torch_dense"])
    out = {}
    for n, ts in times.items():
        t = np.array(ts)
        ratio = base / t
        out[n] = {
            "median_us": float(np.median(t)),
            "iqr_us": float(np.percentile(t, 75) - np.percentile(t, 25)),
            "speedup": float(np.median(ratio)),
            "speedup_iqr": float(np.percentile(ratio, 75) - np.percentile(ratio, 25)),
        }
    return out
