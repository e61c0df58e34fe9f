"""Fuzz target: the raw-array constructors and their products.

CSRMatrix / SELLMatrix (indptr, indices, data, shape), BSRMatrix (... , block),
NMMatrix (data, offsets, shape, nm), from_dense (any shape, dtype, block, N:M),
from_scipy (when scipy is there), all with hostile values: wrong lengths, dtypes,
unsorted or out-of-range indices, negative or huge shapes. A matrix that is
accepted must then multiply a small X (spmm, linear, to_dense) and agree with
its own to_dense() in float64.

Contract (issue 16): every call either works or raises ValueError / TypeError /
MemoryError; anything else (another exception, a wrong product, a crash, a hang
past libFuzzer's -timeout) is a finding.

Run: .ci/fuzz (CI), or by hand
    python tests/fuzz/fuzz_arrays.py -max_total_time=60 build/fuzz/arrays
Findings become tests/fuzz/regressions/*.json (the call spelled out, independent of how
this harness decodes bytes) checked by tests/fuzz/test_fuzz_regressions.py.
"""

from __future__ import annotations

import os

import numpy as np

from _harness import atheris, fuzz, import_pysparse

ps = import_pysparse(__name__ == "__main__")

try:
    import scipy.sparse as sp
except ImportError:  # from_scipy is then not fuzzed
    sp = None

ALLOWED = (ValueError, TypeError, MemoryError)
# Sizes a hostile caller might pass; small ones dominate so that accepted matrices are common.
_SIZES = [0, 1, 2, 3, 5, 7, 8, 9, 16, 17, 31, 33, 64, 255, 256, 257, 65535, 65536, 65537,
          2**31 - 1, 2**31, 2**32, 2**32 + 1, 2**40, 2**62, -1, -2**31]
_DTYPES = [np.int32, np.int64, np.uint16, np.uint32, np.uint64, np.int8, np.float32, np.float64, np.bool_]
_VALUES = [0.0, 1.0, -1.0, 0.5, 3e38, -3e38, 1e-45, np.inf, -np.inf, np.nan]
# Products are checked only for matrices this small (dense reference cost).
_CHECK_ELEMENTS = 1 << 16
# PYSPARSE_FUZZ_SKIP_KNOWN=1 (local exploration only; CI never sets it) steps around the
# known bugs below so that the fuzzer can look for new ones instead of stopping at those.
SKIP_KNOWN = os.environ.get("PYSPARSE_FUZZ_SKIP_KNOWN") == "1"


class Known(Exception):
    """An input that hits a known, reported bug (raised only with SKIP_KNOWN)."""


def _known(what: str, shape) -> None:
    if not SKIP_KNOWN or not (isinstance(shape, tuple) and len(shape) == 2):
        return
    try:
        m, k = (int(v) for v in shape)
    except (TypeError, ValueError):
        return
    big = max(m, k) > 1 << 20
    if what == "nm_arrays" and m > 0 and k > 0 and m * k > 1 << 26:
        raise Known("NMMatrix allocates for the shape before checking the array lengths (rel-ci finding)")
    if what == "nm_arrays" and big:
        raise Known("issue 16 finding 7: N:M storage count overflow")
    if what == "from_dense" and big:
        raise Known("issue 16 finding 7: from_dense on (huge, 0) loops / allocates")


class Input:
    """Typed values out of the fuzzer's bytes (a thin layer over FuzzedDataProvider or a byte list)."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        b = self.data[self.pos]
        self.pos += 1
        return b

    def pick(self, seq):
        return seq[self.byte() % len(seq)]

    def small(self, hi: int) -> int:
        return self.byte() % (hi + 1)

    def size(self) -> int:
        b = self.byte()
        return b % 24 if b < 200 else self.pick(_SIZES)

    def int_array(self, n: int, hi: int) -> np.ndarray:
        """n ints, mostly in [0, hi] and sorted runs, sometimes hostile."""
        n = max(0, min(n, 4096))
        dtype = self.pick(_DTYPES) if self.byte() < 40 else np.int64
        mode = self.byte() % 4
        vals = [self.byte() for _ in range(n)]
        if mode == 0:
            out = np.cumsum([v % 4 for v in vals])  # a plausible indptr
        elif mode == 1:
            out = np.array([v % max(hi, 1) for v in vals])
        elif mode == 2:
            out = np.array([self.pick(_SIZES) if v > 230 else v % max(hi, 1) for v in vals])
        else:
            out = np.array(vals) - 128
        with np.errstate(all="ignore"):
            return np.asarray(out).astype(dtype, copy=False)

    def floats(self, n: int) -> np.ndarray:
        n = max(0, min(n, 1 << 15))
        a = np.array([self.pick(_VALUES) if self.byte() > 240 else (self.byte() - 128) / 16 for _ in range(min(n, 512))],
                     dtype=np.float32)
        a = np.resize(a, n) if n else a[:0]
        if self.byte() < 20:
            a = a.astype(self.pick([np.float64, np.float16, np.int32]))
        return a


def _product_check(w) -> None:
    """An accepted matrix multiplies like its dense form (float32 products checked in float64)."""
    m, k = w.shape
    if m * k > _CHECK_ELEMENTS or m > 4096 or k > 4096:
        return
    dense = w.to_dense()
    assert dense.shape == (m, k) and dense.dtype == np.float32
    if not np.all(np.isfinite(dense)) or (dense.size and np.max(np.abs(dense)) > 1e18):
        return  # non-finite weights or float32 overflow: test_properties checks their propagation
    rng = np.random.default_rng(m * 31 + k)
    for n in (1, 3):
        x = rng.standard_normal((k, n)).astype(np.float32)
        ref = dense.astype(np.float64) @ x.astype(np.float64)
        y = ps.spmm(w, x)
        assert y.shape == (m, n)
        scale = max(float(np.max(np.abs(ref))) if ref.size else 0.0, 1.0)
        err = float(np.max(np.abs(y - ref))) if ref.size else 0.0
        assert err <= 1e-4 * scale * max(k, 1) ** 0.5, f"spmm differs from to_dense() @ x by {err}"
        assert np.array_equal(ps.linear(np.ascontiguousarray(x.T), w), ps.spmm(w, x).T)


def _one(inp: Input) -> None:
    kind = inp.small(7)
    shape = (inp.size(), inp.size())
    if inp.byte() < 8:
        shape = inp.pick([(1,), (1, 2, 3), "ab", None, (1.5, 2), (np.int64(3), np.int32(4))])
    if kind in (0, 1):  # CSR / SELL from arrays
        m = shape[0] if isinstance(shape, tuple) and shape and isinstance(shape[0], (int, np.integer)) else 4
        m = int(m) if 0 <= int(m) <= 4096 else inp.small(64)
        indptr = inp.int_array(m + 1 if inp.byte() > 20 else inp.small(70), 64)
        nnz = int(indptr[-1]) if indptr.size and indptr.dtype.kind in "iu" and 0 <= int(indptr[-1]) <= 4096 else inp.small(64)
        indices = inp.int_array(nnz if inp.byte() > 20 else inp.small(70), shape[1] if isinstance(shape, tuple) and len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 0 else 8)
        data = inp.floats(nnz if inp.byte() > 20 else inp.small(70))
        cls = ps.CSRMatrix if kind == 0 else ps.SELLMatrix
        w = cls(indptr, indices, data, shape)
    elif kind == 2:  # BSR from arrays
        r, c = inp.pick([1, 2, 4, 8, 16, 3, 0, -1]), inp.pick([1, 2, 3, 4, 8, 64, 65, 0])
        brows = inp.small(40)
        indptr = inp.int_array(brows + 1 if inp.byte() > 20 else inp.small(42), 16)
        nb = int(indptr[-1]) if indptr.size and indptr.dtype.kind in "iu" and 0 <= int(indptr[-1]) <= 1024 else inp.small(16)
        indices = inp.int_array(nb, 64)
        data = inp.floats(nb * max(r, 0) * max(c, 0) if inp.byte() > 20 else inp.small(200))
        if inp.byte() > 30 and r > 0 and c > 0 and data.size == nb * r * c:
            data = data.reshape(nb, r, c)
        w = ps.BSRMatrix(indptr, indices, data, shape, block=(r, c) if inp.byte() > 10 else None)
    elif kind == 3:  # N:M from arrays
        mm = inp.pick([2, 4, 8, 3, 16])
        n = inp.small(9)
        if isinstance(shape, tuple) and len(shape) == 2 and all(isinstance(v, int) and 0 <= v <= 4096 for v in shape):
            total = -(-shape[0] // 8) * -(-shape[1] // max(mm, 1)) * max(n, 0) * 8
        else:
            total = inp.small(64)
        total = min(total, 1 << 15) if inp.byte() > 20 else inp.small(100)
        data = inp.floats(total)
        offsets = inp.int_array(total, mm).astype(inp.pick([np.uint8, np.uint8, np.int64, np.int8]), copy=False)
        _known("nm_arrays", shape)
        w = ps.NMMatrix(data, offsets, shape, inp.pick([(n, mm), f"{n}:{mm}", "2:4", "x", (1, 2, 3)]))
    elif kind in (4, 5, 6):  # from_dense with any shape / dtype / block / pattern
        if isinstance(shape, tuple) and len(shape) == 2 and all(isinstance(v, int) and v >= 0 for v in shape) \
                and shape[0] * shape[1] <= 1 << 16:
            a = inp.floats(shape[0] * shape[1]).reshape(shape)
            if inp.byte() < 60:  # sparsify
                a = np.where(np.arange(a.size).reshape(shape) % (inp.small(6) + 1) == 0, a, 0).astype(a.dtype)
        else:
            a = np.zeros(inp.pick([(0,), (2, 3, 4), (3,), ()]), np.float32)
        _known("from_dense", a.shape)
        if kind == 4:
            w = (ps.CSRMatrix if inp.byte() % 2 else ps.SELLMatrix).from_dense(a)
        elif kind == 5:
            w = ps.BSRMatrix.from_dense(a, block=(inp.pick([1, 2, 4, 8, 16, 5]), inp.pick([1, 2, 3, 4, 8, 64, 99])))
        else:
            w = ps.NMMatrix.from_dense(a, inp.pick(["2:4", "1:2", "4:8", "1:8", "2:8", "3:4", "0:4", "5:4"]))
    else:  # from_scipy
        if sp is None:
            return
        m, k = inp.small(40), inp.small(40)
        a = inp.floats(m * k).reshape(m, k)
        a = np.where(np.arange(a.size).reshape(m, k) % (inp.small(5) + 1) == 0, a, 0).astype(np.float32)
        s = inp.pick([sp.csr_matrix, sp.coo_matrix, sp.csc_matrix])(a)
        which = inp.small(2)
        if which == 0:
            w = ps.CSRMatrix.from_scipy(s)
        elif which == 1:
            w = ps.SELLMatrix.from_scipy(s)
        else:
            w = ps.BSRMatrix.from_scipy(s, block=(inp.pick([1, 2, 4, 8]), 1))
    _product_check(w)


def check(data: bytes) -> str:
    """Run one input through the contract; returns the outcome, raises on a finding."""
    try:
        with np.errstate(all="ignore"):
            _one(Input(data))
    except ALLOWED:
        return "rejected"
    except Known:
        return "skipped (known bug)"
    return "accepted"


if __name__ == "__main__":
    _one = atheris.instrument_func(_one)  # the harness's own branches guide the search too
    fuzz("fuzz_arrays", check, 5000)
