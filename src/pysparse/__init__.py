"""pysparse: prune PyTorch models and run the sparse result fast on CPUs.

The kernel side (formats, ops, runtime) needs only numpy and the compiled
``_core``; the training side (``pysparse.prune``, ``pysparse.distill``,
``pysparse.fold``, ``pysparse.convert``) imports torch when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import _checks, _core
from .formats import BSRMatrix, CSRMatrix, NMMatrix, SELLMatrix, SparseMatrixBase
from .formats import BSRInt8Matrix, DenseInt8Matrix
from .ops import conv2d, linear, spmm

__version__ = "0.1.0"

__all__ = [
    "BSRMatrix",
    "BSRInt8Matrix",
    "DenseInt8Matrix",
    "CSRMatrix",
    "NMMatrix",
    "SELLMatrix",
    "SparseMatrixBase",
    "conv2d",
    "cpu_info",
    "get_num_threads",
    "linear",
    "set_num_threads",
    "spmm",
]


def set_num_threads(n: int) -> None:
    """Threads every pysparse kernel call may use (the caller included)."""
    if not _checks.is_int(n):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    return _core.get_num_threads()


def cpu_info() -> dict[str, Any]:
    """The ISA in use ('avx512' | 'avx2' | 'neon' | 'scalar'), CPU features, threads and the
    kernel in use per slot (a slot the ISA has no kernel for runs the next rung down's:
    avx512 -> avx2 -> scalar);
    ``int8_isa`` / ``int8_runnable``: the int8 kernels' ISA ('avx512vnni', 'avxvnni', 'avx2',
    'neondot', 'neon' or 'scalar') and every one this CPU runs."""
    info = _core.cpu_info()
    info["int8_isa"] = _core.get_qisa()
    info["int8_runnable"] = _core.runnable_qisas()
    return info


# Submodules that need torch (or are large) load on first use, so that
# `import pysparse` stays torch-free.
_LAZY_SUBMODULES = {"prune", "distill", "fold", "nn", "io", "runtime", "cli", "text", "quant"}
# Functions of such submodules; a module and a function never share a name
# (``convert`` lives in ``pysparse.conversion``).
_LAZY_ATTRS: dict[str, tuple[str, str]] = {
    "convert": ("conversion", "convert"),
    "save": ("io", "save"),
    "load": ("io", "load"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY_ATTRS:
        mod, attr = _LAZY_ATTRS[name]
        return getattr(importlib.import_module(f".{mod}", __name__), attr)
    raise AttributeError(f"module 'pysparse' has no attribute {name!r}")
