"""Two builds of pysparse, kernel by kernel, in one sitting: is the new one slower?

    python bench/compare_builds.py --before /path/to/venv-a/bin/python --after .venv/bin/python

Each build runs in its own worker process (two builds cannot share one process:
both are `pysparse._core`). The parent interleaves rounds: every round, every
worker times every cell once, in an order shuffled per round, so drift in the
machine (a neighbour, the clock) lands on both builds alike. A third worker runs
the `before` build again: the before/before' ratio is the A/A control, and a
cell is only called slower or faster when its after/before ratio leaves the A/A
spread. Cells: CSR, SELL, BSR (8, 1) and N:M 2:4 products at batch 1 and 32 on
the shapes and sparsities of the kernel grid, 1 thread, fixed seeds (every
worker builds the same matrices). Prints a table (median time per build, median
of per-round ratios, A/A) and writes it as JSON with --out.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _worker import Worker  # noqa: E402

WORKER = r"""
import json, sys, time
import numpy as np
import pysparse as ps
ps.set_num_threads(1)
cells = {}
def build(spec):
    m, k, sp, fmt, batch = spec
    rng = np.random.default_rng(hash((m, k, int(sp * 100), batch)) % 2**32)
    if fmt == "nm":
        a = rng.standard_normal((m, k)).astype(np.float32)
        rank = rng.random((m, k // 4, 4)).argsort(axis=2).argsort(axis=2)
        a.reshape(m, -1, 4)[rank >= 2] = 0.0  # 2 of every 4 survive
        w = ps.NMMatrix.from_dense(a, "2:4")
    else:
        a = rng.standard_normal((m, k)).astype(np.float32)
        if fmt == "bsr":
            keep = rng.random((m // 8, k)) >= sp
            a *= np.repeat(keep, 8, axis=0)
            w = ps.BSRMatrix.from_dense(a, block=(8, 1))
        else:
            a *= rng.random((m, k)) >= sp
            w = ps.CSRMatrix.from_dense(a) if fmt == "csr" else ps.SELLMatrix.from_dense(a)
    x = rng.standard_normal((batch, k)).astype(np.float32)
    return w, (x[0] if batch == 1 else x)
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "build":
        cells[cmd["id"]] = build(cmd["spec"])
        print(json.dumps({"ok": ps.__file__}), flush=True)
    else:
        w, x = cells[cmd["id"]]
        reps = cmd["reps"]
        ps.linear(x, w)
        t0 = time.perf_counter()
        for _ in range(reps):
            ps.linear(x, w)
        print(json.dumps({"t": (time.perf_counter() - t0) / reps}), flush=True)
"""


def worker(python: str, name: str) -> Worker:
    return Worker(python, name, WORKER, {"OMP_NUM_THREADS": "1"}, cwd="/")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", required=True, help="python of the reference build")
    ap.add_argument("--after", required=True, help="python of the build under test")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--target-ms", type=float, default=20.0, help="time per cell and round")
    ap.add_argument("--quick", action="store_true", help="two cells, three rounds (a smoke run)")
    ap.add_argument("--out", help="write the table as JSON here")
    args = ap.parse_args()

    shapes = [(3072, 768), (768, 3072)]
    specs = [(m, k, sp, fmt, b) for (m, k) in shapes for sp in (0.5, 0.9) for fmt in ("csr", "sell", "bsr", "nm")
             for b in (1, 32) if not (fmt == "nm" and sp != 0.5)]
    if args.quick:
        specs, args.rounds = specs[:2], 3
    with open("/proc/loadavg") as f:
        print(f"load average: {f.read().split()[0]}  (figures taken under load are worthless)")
    workers = [worker(args.before, "before"), worker(args.after, "after"), worker(args.before, "before'")]
    for w in workers:
        print(w.name, "->", [w.ask({"op": "build", "id": i, "spec": s}) for i, s in enumerate(specs)][0]["ok"])
    # reps per cell from a first timing by the reference build
    reps = []
    for i in range(len(specs)):
        t = workers[0].ask({"op": "time", "id": i, "reps": 3})["t"]
        reps.append(max(1, int(args.target_ms / 1e3 / max(t, 1e-7))))
    times = {w.name: [[] for _ in specs] for w in workers}
    start = time.time()
    for _ in range(args.rounds):
        order = [(w, i) for w in workers for i in range(len(specs))]
        random.shuffle(order)
        for w, i in order:
            times[w.name][i].append(w.ask({"op": "time", "id": i, "reps": reps[i]})["t"])
    for w in workers:
        w.close()

    def ratio(a: str, b: str, i: int) -> float:
        return statistics.median(x / y for x, y in zip(times[a][i], times[b][i]))

    rows = []
    # One cell's A/A is one draw of the noise; the run's noise floor is the 90th
    # percentile of |A/A - 1| over all cells (at least 3%).
    spreads = sorted(abs(ratio("before'", "before", i) - 1.0) for i in range(len(specs)))
    floor = max(0.03, spreads[min(len(spreads) - 1, int(0.9 * len(spreads)))])
    print(f"\n{args.rounds} interleaved rounds in {time.time() - start:.0f} s; ratio = median of per-round after/before; "
          f"noise floor (A/A, 90th percentile) {floor:.1%}")
    print(f"{'cell':28} {'before us':>10} {'after us':>10} {'after/before':>13} {'A/A':>7}  verdict")
    for i, (m, k, sp, fmt, b) in enumerate(specs):
        r, aa = ratio("after", "before", i), ratio("before'", "before", i)
        noise = max(abs(aa - 1.0), floor)
        verdict = "within noise" if abs(r - 1.0) <= noise else ("slower" if r > 1 else "faster")
        name = f"{m}x{k} {int(sp * 100)}% {fmt} b{b}"
        tb, ta = statistics.median(times["before"][i]) * 1e6, statistics.median(times["after"][i]) * 1e6
        print(f"{name:28} {tb:10.1f} {ta:10.1f} {r:13.3f} {aa:7.3f}  {verdict}")
        rows.append(dict(cell=name, before_us=tb, after_us=ta, ratio=r, aa=aa, verdict=verdict))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
