"""What the fuzz targets share: atheris (optional outside fuzzing), instrumented imports, outcome counts."""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable

try:
    import atheris
except ImportError:  # the regression tests replay inputs without atheris
    atheris = None

# pysparse's Python side: the loader, the runtime's validation, formats and ops.
MODULES = ("pysparse", "pysparse.io", "pysparse.runtime", "pysparse.formats", "pysparse.ops")


def import_pysparse(fuzzing: bool) -> Any:
    """pysparse, with its modules instrumented for coverage when fuzzing."""
    if fuzzing and atheris is not None:
        with atheris.instrument_imports(include=["pysparse"]):
            for name in MODULES:
                importlib.import_module(name)
    else:
        for name in MODULES:
            importlib.import_module(name)
    return sys.modules["pysparse"]


class Outcomes:
    """Counts of each outcome, printed every `every` inputs (libFuzzer exits without atexit hooks)."""

    def __init__(self, name: str, every: int) -> None:
        self.name, self.every, self.counts, self.total = name, every, {}, 0

    def add(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        self.total += 1
        if self.total % self.every == 0:
            parts = ", ".join(f"{k}: {v}" for k, v in sorted(self.counts.items()))
            print(f"{self.name}: {self.total} inputs tried: {parts}", file=sys.stderr, flush=True)


def fuzz(name: str, check: Callable[[bytes], str], every: int, **setup: Any) -> None:
    """Run libFuzzer on `check` with sys.argv's options; one pysparse thread (a shared machine)."""
    sys.modules["pysparse"].set_num_threads(1)
    outcomes = Outcomes(name, every)

    def test_one_input(data: bytes) -> None:
        outcomes.add(check(data))

    atheris.Setup(sys.argv, test_one_input, **setup)
    atheris.Fuzz()
