"""The model file's identity, its limits, and the attribute-check combinators nodes are checked with.

Each check takes ``(value, where)`` and returns the (normalised) value or raises
``ModelFileError`` naming ``where``. ``_Param`` describes what one array of a
node must be (required, dtypes, shape).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..formats import BLOCK_ROWS, FORMATS, INT8_FORMATS, NM_GROUPS

FORMAT_NAME = "pysparse-model"
FORMAT_VERSION = 1

MAX_NODES = 100_000
MAX_NAME = 256
MAX_RANK = 8
MAX_INPUTS = 64
MAX_DIM = 2**31 - 1
MAX_DRY_RUN_ELEMENTS = 1 << 27  # per tensor, at batch 1
# The load-time dry run (batch 1) refuses a graph before the node that would pass either bound
# runs. Work is in numpy element operations, about 1 ns each on one idle core
# (runtime/ops/base.py), so a file can keep a load busy for seconds, not hours. Real models
# stay below: MobileNetV2 or ResNet-50 at 224x224 need under 100 MiB and 5e8 operations; a
# BERT-base-sized stack of dense layers at 512 tokens under 100 MiB and 5e9.
MAX_DRY_RUN_BYTES = 1 << 29  # live intermediates + the next node's output and temporaries (5x real models)
MAX_DRY_RUN_WORK = 1 << 33
MAX_TENSOR_ELEMENTS = 1 << 31  # per tensor a growing op (cat, broadcast) may make
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")


class ModelFileError(ValueError):
    """A model file (or graph) that is truncated, corrupted, hostile or from another version."""


# ---------------------------------------------------------------------------
# Attribute checks: each takes (value, where) and returns the value or raises.

Check = Callable[[Any, str], Any]
_REQUIRED = object()


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(lo: int, hi: int) -> Check:
    def check(v: Any, where: str) -> int:
        if not _is_int(v) or not lo <= v <= hi:
            raise ModelFileError(f"{where} must be an int in [{lo}, {hi}], got {v!r}")
        return v

    return check


def _ints(lo: int, hi: int, n: int | None = None, max_len: int = MAX_RANK) -> Check:
    def check(v: Any, where: str) -> tuple[int, ...]:
        if not isinstance(v, list) or (n is not None and len(v) != n) or len(v) > max_len:
            want = f"{n}" if n is not None else f"at most {max_len}"
            raise ModelFileError(f"{where} must be a list of {want} ints, got {v!r}")
        return tuple(_int(lo, hi)(e, where) for e in v)

    return check


def _float(lo: float = -math.inf, hi: float = math.inf) -> Check:
    def check(v: Any, where: str) -> float:
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**1000:  # math.isfinite would overflow
            raise ModelFileError(f"{where} must be a finite number in [{lo}, {hi}], got an int of {v.bit_length()} bits")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
            raise ModelFileError(f"{where} must be a finite number in [{lo}, {hi}], got {v!r}")
        return float(v)

    return check


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise ModelFileError(f"{where} must be true or false, got {v!r}")
    return v


def _choice(*values: str) -> Check:
    def check(v: Any, where: str) -> str:
        if v not in values:
            raise ModelFileError(f"{where} must be one of {list(values)}, got {v!r}")
        return v

    return check


def _optional(inner: Check) -> Check:
    def check(v: Any, where: str) -> Any:
        return None if v is None else inner(v, where)

    return check


def _block(v: Any, where: str) -> tuple[int, int]:
    r, c = _ints(1, 64, 2)(v, where)
    if r not in BLOCK_ROWS:
        raise ModelFileError(f"{where}: block rows must be one of {BLOCK_ROWS}, got {r}")
    return r, c


def _nm(v: Any, where: str) -> tuple[int, int]:
    n, m = _ints(1, 8, 2)(v, where)
    if m not in NM_GROUPS or n > m:
        raise ModelFileError(f"{where}: N:M needs M in {NM_GROUPS} and 1 <= N <= M, got {n}:{m}")
    return n, m


_DIM = _int(-MAX_RANK, MAX_RANK - 1)
_FEATURES = _int(1, MAX_DIM)
_EPS = _float(0.0, 1.0)
_NUM = _float()
_PAIR_K = _ints(1, 1024, 2)
_PAIR_S = _ints(1, 1024, 2)
_PAIR_P = _ints(0, 1024, 2)
_FORMAT = _choice("dense", *FORMATS, *INT8_FORMATS)  # every registered format's tag (pysparse.formats)
_MATRIX_ATTRS: dict[str, tuple[Check, Any]] = {
    "format": (_FORMAT, _REQUIRED),
    "block": (_optional(_block), None),
    "nm": (_optional(_nm), None),
}


def _check_name(v: Any, where: str) -> str:
    if not isinstance(v, str) or not 0 < len(v) <= MAX_NAME or not _NAME_RE.match(v):
        raise ModelFileError(f"{where} must be a name of letters, digits, '_', '.', '-' (at most {MAX_NAME}), got {v!r:.80}")
    return v


def _check_keys(d: Any, allowed: Sequence[str], where: str, required: Sequence[str] = ()) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise ModelFileError(f"{where} must be a JSON object, got {type(d).__name__}")
    extra = sorted(set(d) - set(allowed))
    if extra:
        raise ModelFileError(f"{where} has unknown keys {extra}")
    missing = [k for k in required if k not in d]
    if missing:
        raise ModelFileError(f"{where} is missing {missing}")
    return d


# ---------------------------------------------------------------------------
# Params (arrays): role -> what its array must be.

_F32 = ("float32",)
_INDPTR = ("int32", "int64")
_INDEX = ("uint16", "int32", "uint32", "int64")


@dataclass(frozen=True)
class _Param:
    required: bool
    dtypes: tuple[str, ...]
    shape: tuple[int | None, ...] | None  # None: any shape (rank <= MAX_RANK); None entries: any length
