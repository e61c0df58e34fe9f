"""Before anything is written: the runtime graph must give what the torch model gives.

``pysparse.save`` builds the runtime ``Model`` from the exported graph and arrays,
runs the example inputs through it and compares with the torch model's outputs on
the same inputs; a file whose outputs disagree is never written. numpy only (the
torch outputs arrive as tensors and leave through ``.numpy()``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..runtime import Model

__all__ = ["verify", "compare"]


def verify(graph: dict, arrays: dict, inputs: tuple, expected: Any, rtol: float) -> Model:
    """The runtime Model of ``graph`` and ``arrays``, once its outputs on ``inputs`` (float32
    CPU tensors) match ``expected`` (the torch model's) within ``rtol``; ValueError if not."""
    runtime = Model(graph, arrays)
    compare(expected, runtime(*[t.numpy() for t in inputs]), rtol)
    return runtime


def compare(ref: Any, got: Any, rtol: float) -> None:
    """ValueError unless every output in ``got`` (runtime, numpy) is within ``rtol`` times the
    largest finite output of its ``ref`` (torch); equal infinities and NaNs agree."""
    refs = list(ref) if isinstance(ref, (list, tuple)) else [ref]
    gots = list(got) if isinstance(got, tuple) else [got]
    if len(refs) != len(gots):
        raise ValueError(f"the torch model returned {len(refs)} outputs, the runtime graph {len(gots)}")
    for i, (r, g) in enumerate(zip(refs, gots)):
        r = r.detach().cpu().numpy().astype(np.float64)
        g = np.asarray(g, dtype=np.float64)
        if r.shape != g.shape:
            raise ValueError(f"output {i}: torch gives shape {r.shape}, the runtime graph {g.shape}; not saved")
        if r.size == 0:
            continue
        same = (r == g) | (np.isnan(r) & np.isnan(g))  # equal infinities and nans agree
        finite = np.abs(r[np.isfinite(r)])
        scale = max(float(finite.max()) if finite.size else 0.0, 1e-6)
        with np.errstate(invalid="ignore"):
            err = float(np.max(np.where(same, 0.0, np.abs(r - g)))) / scale
        if not err <= rtol:
            raise ValueError(
                f"output {i}: the runtime graph differs from the torch model by {err:.2e} (relative to the "
                f"largest output; allowed {rtol:.1e}); not saved. Is the model deterministic in eval mode?"
            )
