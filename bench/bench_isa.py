"""One ISA's sparse Linears against another's, in one process: is the new rung faster?

    python bench/bench_isa.py [--isas avx2 avx512] [--rounds 9] [--batches 128 16]
                              [--kernels NAME ...]

Cells: ``ps.linear(x, W)`` (the runtime's Linear: X^T, the nx kernel, Y^T) on the BERT-base
shapes 768x3072, 3072x768, 768x768 (``--shapes``; MiniLM's are 384x384, 1536x384, 384x1536) at
90% sparsity, in (4, 1) and (8, 1) blocks, CSR and SELL (``--formats``); x is (batch, K); 1 thread; fixed seeds. Every round times every (cell, ISA)
once in a shuffled order, so drift in the machine lands on every ISA alike; each ISA after
the first is reported as the median of its per-round time ratios to the first, and the first
ISA runs twice (A and A') so the A/A ratio shows the noise. ``--kernels`` adds forced
kernels (by name, from ``_core.kernels()``) as extra columns on the cells of their format.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

import numpy as np

import pysparse as ps
from pysparse import _core
from pysparse.ops.matmul import core_matrix


def block_sparse(rng, m, k, r, sp):
    a = rng.standard_normal((m, k)).astype(np.float32)
    keep = rng.random(((m + r - 1) // r, k)) >= sp
    return a * np.repeat(keep, r, axis=0)[:m]


def build(fmt, m, k, sp, batch, seed):
    rng = np.random.default_rng(seed)
    if fmt.startswith("bsr"):
        r = int(fmt[3:])
        w = ps.BSRMatrix.from_dense(block_sparse(rng, m, k, r, sp), block=(r, 1))
    else:
        a = rng.standard_normal((m, k)).astype(np.float32)
        a *= rng.random((m, k)) >= sp
        w = ps.CSRMatrix.from_dense(a) if fmt == "csr" else ps.SELLMatrix.from_dense(a)
    x = rng.standard_normal((batch, k)).astype(np.float32)
    return core_matrix(w), x


def format_of(fmt):
    """(format, block_r) of a cell's format label: bsr<R>, csr or sell."""
    return ("bsr", int(fmt[3:])) if fmt.startswith("bsr") else (fmt, 8 if fmt == "sell" else 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--isas", nargs="+", default=["avx2", "avx512"])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--target-ms", type=float, default=15.0, help="time per (cell, ISA) and round")
    ap.add_argument("--batches", type=int, nargs="+", default=[128, 16])
    ap.add_argument("--formats", nargs="+", default=["bsr4", "bsr8", "csr", "sell"], help="bsr<R> ((R, 1) blocks), csr, sell")
    ap.add_argument("--shapes", nargs="+", default=["768x3072", "3072x768", "768x768"])
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--kernels", nargs="*", default=[], help="forced kernels to time as extra columns")
    args = ap.parse_args()
    ps.set_num_threads(1)
    runnable = _core.runnable_isas()
    for isa in args.isas:
        if isa not in runnable:
            raise SystemExit(f"ISA {isa!r} is not runnable here (runnable: {runnable})")
    known = {k["name"]: k for k in _core.kernels()}
    for name in args.kernels:
        if name not in known or not known[name]["runnable"]:
            raise SystemExit(f"kernel {name!r} is not built or not runnable here")
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average {os.getloadavg()[0]:.2f} "
          f"{os.getloadavg()[1]:.2f}; {ps.cpu_info()['arch']}; 1 thread; {args.rounds} interleaved rounds")
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes]
    cells = [(fmt, m, k, b) for b in args.batches for (m, k) in shapes for fmt in args.formats]
    data = {c: build(c[0], c[1], c[2], args.sparsity, c[3], seed=i) for i, c in enumerate(cells)}
    base = args.isas[0]
    # Columns: (label, isa, kernel name or None)
    cols = [(base, base, None), (base + "'", base, None)] + [(i, i, None) for i in args.isas[1:]]
    cols += [(name, base, name) for name in args.kernels]

    def applies(col, cell):
        if col[2] is None:
            return True
        k = known[col[2]]
        fmt, r = format_of(cell[0])
        return k["format"] == fmt and k["block_r"] == r and k["batch"] == "nx"

    def call(col, cell):
        w, x = data[cell]
        if col[2] is None:
            return lambda: _core.linear(x, w)
        return lambda: _core.linear(x, w, kernel=col[2])

    previous = _core.get_isa()
    try:
        # Agreement first: every column against the first ISA on every cell.
        for cell in cells:
            _core.set_isa(base)
            ref = call(cols[0], cell)()
            for col in cols[1:]:
                if not applies(col, cell):
                    continue
                _core.set_isa(col[1])
                y = call(col, cell)()
                err = float(np.abs(y - ref).max() / max(1e-30, np.abs(ref).max()))
                assert err < 1e-5, (cell, col, err)
        reps = {}
        for cell in cells:
            _core.set_isa(base)
            fn = call(cols[0], cell)
            fn()
            t = time.perf_counter()
            fn()
            reps[cell] = max(1, int(args.target_ms / 1e3 / max(time.perf_counter() - t, 1e-7)))
        times = {(cell, col[0]): [] for cell in cells for col in cols if applies(col, cell)}
        rng = random.Random(0)
        start = time.time()
        for _ in range(args.rounds):
            order = [(cell, col) for cell in cells for col in cols if applies(col, cell)]
            rng.shuffle(order)
            for cell, col in order:
                _core.set_isa(col[1])
                fn = call(col, cell)
                n = reps[cell]
                t = time.perf_counter()
                for _ in range(n):
                    fn()
                times[(cell, col[0])].append((time.perf_counter() - t) / n)
    finally:
        _core.set_isa(previous)

    def ratio(cell, a, b):
        return statistics.median(x / y for x, y in zip(times[(cell, a)], times[(cell, b)]))

    print(f"# {time.time() - start:.0f} s; ratio = median of per-round ratios to {base}; load average now "
          f"{os.getloadavg()[0]:.2f}")
    labels = [c[0] for c in cols]
    head = f"{'cell':26} {base + ' us':>10} " + " ".join(f"{lab[-22:]:>22}" for lab in labels[1:])
    print(head)
    for cell in cells:
        fmt, m, k, b = cell
        t0 = statistics.median(times[(cell, base)]) * 1e6
        parts = []
        for col in cols[1:]:
            if (cell, col[0]) not in times:
                parts.append(f"{'-':>22}")
                continue
            t = statistics.median(times[(cell, col[0])]) * 1e6
            parts.append(f"{t:9.1f} us {ratio(cell, col[0], base):6.3f}x  ")
        print(f"{fmt + ' ' + str(m) + 'x' + str(k) + ' n' + str(b):26} {t0:10.1f} " + " ".join(parts))


if __name__ == "__main__":
    main()
