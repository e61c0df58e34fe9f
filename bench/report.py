"""Run the kernel benchmark grid (grid.py; contenders.py, timed by harness.py) and write
results.json, results.md and PNG plots.

    python bench/report.py            # the full grid (about 10-15 min on 2 cores)
    python bench/report.py --quick    # a small grid for a smoke run (< 1 min)

Every figure is a median over interleaved rounds in this one process; speedups
are the median of round-by-round ratios against torch dense (F.linear), so they
compare contenders measured side by side. Check `uptime` first: a figure taken
while something else runs is worthless (the script warns when the load is high).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# torch's OpenMP workers otherwise keep spinning for up to 200 ms after each
# call and steal a core from whatever contender runs next; set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("KMP_BLOCKTIME", "0")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from contenders import AA, build_cell, check  # noqa: E402
from grid import FULL, QUICK, cells  # noqa: E402
from harness import environment, measure_cell, threads  # noqa: E402

PEERS = ("torch_csr", "scipy_csr")


def run(cfg: dict, seed: int = 0, progress: bool = True) -> list[dict]:
    rng = np.random.default_rng(seed)
    grid = cells(cfg)
    try:
        from tqdm import tqdm

        it = tqdm(grid, desc="cells", disable=not progress)
    except ImportError:
        it = grid
    rows = []
    for shape, s, b, t in it:
        with threads(t):
            cell = build_cell(rng, shape, s, b, t)
            check(cell)
            res = measure_cell(cell, cfg["rounds"], seed=seed)
        m, k = shape
        for c in cell.contenders:
            r = res[c.name]
            rows.append(
                dict(
                    shape=[m, k], sparsity=s, batch=b, threads=t, contender=c.name, weights=c.weights,
                    nnz=c.nnz, **r,
                    dense_gflops=2 * m * k * b / r["median_s"] / 1e9,
                    nonzero_gflops=2 * c.nnz * b / r["median_s"] / 1e9,
                )
            )
    return rows


def _get(rows, **key):
    out = [r for r in rows if all((r[k] == v) if k != "shape" else (tuple(r[k]) == v) for k, v in key.items())]
    return out[0] if out else None


def noise(rows: list[dict], **cell) -> float | None:
    """A cell's noise from its A/A pair: |median ratio - 1| + half the ratio's IQR."""
    aa = _get(rows, contender=AA, **cell)
    return None if aa is None else abs(aa["speedup_vs_torch_dense"] - 1.0) + aa["speedup_iqr"] / 2


Target = tuple[str, str, "bool | None", "float | None", bool]


def targets(rows: list[dict]) -> list[Target]:
    """The issue's targets: (what, measured, passed, noise, within_noise).

    passed is None for reference rows. noise is the cell's A/A noise (relative);
    within_noise says the measured value is closer to its threshold than that,
    so this run cannot tell PASS from FAIL.

    At batch 1 the unstructured figure is SELL's, the format pysparse.convert
    picks for unstructured weights at batch 1 (CSR's is listed beside it); at
    batch 32 it is CSR's, the one convert picks there.
    """
    out: list[Target] = []

    def add(what: str, value: float, threshold: float | None, cell: dict, text: str | None = None) -> None:
        nz = noise(rows, **cell)
        ok = None if threshold is None else value >= threshold
        close = threshold is not None and nz is not None and abs(value / threshold - 1.0) <= nz
        out.append((what, text or f"{value:.2f}x", ok, nz, close))

    for shape in [(3072, 768), (768, 3072)]:
        sh = f"{shape[0]}x{shape[1]}"
        one = dict(shape=shape, sparsity=0.9, batch=1, threads=1)
        s1 = _get(rows, contender="pysparse_sell", **one)
        c1 = _get(rows, contender="pysparse_csr", **one)
        if s1 is None or c1 is None:
            continue
        peers = [_get(rows, contender=p, **one) for p in PEERS]
        best_peer = min(p["median_s"] for p in peers if p)
        add(f"{sh} 90% batch 1, 1 thread: unstructured (SELL) >= 5x torch dense", s1["speedup_vs_torch_dense"], 5, one)
        add(f"{sh} 90% batch 1: unstructured (SELL) >= 2.5x best of torch CSR / scipy",
            best_peer / s1["median_s"], 2.5, one)
        add(f"{sh} 90% batch 1: CSR vs torch dense / vs best peer (same matrix, for reference)",
            c1["speedup_vs_torch_dense"], None, one,
            f"{c1['speedup_vs_torch_dense']:.2f}x / {best_peer / c1['median_s']:.2f}x")
        b1 = _get(rows, contender="pysparse_bsr8x1", **one)
        add(f"{sh} 90% batch 1: BSR 8x1 (block-pruned) vs torch dense", b1["speedup_vs_torch_dense"], None, one)
        c32cell = dict(shape=shape, sparsity=0.9, batch=32, threads=1)
        c32 = _get(rows, contender="pysparse_csr", **c32cell)
        if c32:
            add(f"{sh} 90% batch 32: CSR >= 4x torch dense", c32["speedup_vs_torch_dense"], 4, c32cell)
        h32cell = dict(shape=shape, sparsity=0.5, batch=32, threads=1)
        h32 = _get(rows, contender="pysparse_csr", **h32cell)
        if h32:
            add(f"{sh} 50% batch 32: CSR no slower than torch dense", h32["speedup_vs_torch_dense"], 1.0, h32cell)
        for b in (1, 32):
            cell = dict(shape=shape, sparsity=0.9, batch=b, threads=1)
            bb = _get(rows, contender="pysparse_bsr8x1", **cell)
            for name in ("pysparse_csr", "pysparse_sell") if b == 1 else ("pysparse_csr",):
                cc = _get(rows, contender=name, **cell)
                if bb and cc:
                    fmt = name.split("_")[1].upper()
                    add(f"{sh} 90% batch {b}: BSR 8x1 faster than {fmt}", cc["median_s"] / bb["median_s"], 1.0, cell)
            d1 = _get(rows, contender="torch_dense", **cell)
            d2 = _get(rows, contender="torch_dense@2t", **cell)
            if d1 and d2 and b == 32:
                add(f"{sh} 90% batch 32: control, torch dense (MKL) 2 threads vs 1 in the same rounds",
                    d1["median_s"] / d2["median_s"], None, cell)
            for name in ("pysparse_csr", "pysparse_bsr8x1"):
                t1 = _get(rows, contender=name, **cell)
                t2 = _get(rows, contender=name + "@2t", **cell)
                if t1 and t2 and b == 32:
                    add(f"{sh} 90% batch 32: {name} 2 threads >= 1.6x of 1 thread", t1["median_s"] / t2["median_s"],
                        1.6, cell)
    return out


def verdict(ok: bool | None, close: bool) -> str:
    if ok is None:
        return ""
    return ("PASS" if ok else "FAIL") + (" (within noise)" if close else "")


def summary(rows: list[dict]) -> list[str]:
    """One line per shape and batch at 90% sparsity, 1 thread: the README table."""
    lines = [
        "| W (M x K), 90% sparse, 1 thread | batch | torch dense | pysparse CSR | pysparse SELL "
        "| pysparse BSR 8x1 (block-pruned) | torch sparse CSR | scipy CSR |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for shape in dict.fromkeys(tuple(r["shape"]) for r in rows):
        for b in dict.fromkeys(r["batch"] for r in rows):
            d = _get(rows, shape=shape, sparsity=0.9, batch=b, threads=1, contender="torch_dense")
            if d is None:
                continue
            cells = []
            for n in ("pysparse_csr", "pysparse_sell", "pysparse_bsr8x1", "torch_csr", "scipy_csr"):
                r = _get(rows, shape=shape, sparsity=0.9, batch=b, threads=1, contender=n)
                cells.append(f"{r['median_s'] * 1e6:.0f} us ({r['speedup_vs_torch_dense']:.1f}x)" if r else "")
            lines.append(f"| {shape[0]} x {shape[1]} | {b} | {d['median_s'] * 1e6:.0f} us | " + " | ".join(cells) + " |")
    return lines


def write_markdown(rows: list[dict], env: dict, path: Path) -> None:
    lines = ["# Kernel benchmark", ""]
    lines.append(
        f"{env['date']}, {env.get('cpu_model', '?')} ({env['cpu']['isa']}), torch {env['torch']} "
        f"(MKL {env['torch_mkl']}), numpy {env['numpy']}, load {env['load_1min']:.2f} at start. "
        "Speedup = median over rounds of (torch dense time / contender time), measured interleaved in one "
        "process; +- is the IQR of that ratio. GFLOP/s are effective dense (2 M K batch / t)."
    )
    lines += ["", "## Summary", ""] + summary(rows)
    lines += [
        "",
        "## Targets",
        "",
        f"Noise is the cell's A/A figure: torch dense timed twice under two names ({AA}) in the same "
        "interleaved rounds; |median ratio - 1| + IQR/2. A result closer to its threshold than that is marked "
        "'within noise': this run cannot decide it.",
        "",
        "| target | measured | noise (A/A) | |",
        "| --- | --- | --- | --- |",
    ]
    for what, val, ok, nz, close in targets(rows):
        lines.append(f"| {what} | {val} | {'' if nz is None else f'{nz:.0%}'} | {verdict(ok, close)} |")
    names = list(dict.fromkeys(r["contender"] for r in rows))
    for shape in dict.fromkeys(tuple(r["shape"]) for r in rows):
        for t in dict.fromkeys(r["threads"] for r in rows):
            sel = [r for r in rows if tuple(r["shape"]) == shape and r["threads"] == t]
            cols = [n for n in names if any(r["contender"] == n for r in sel) and n != "torch_dense"]
            lines += ["", f"## {shape[0]}x{shape[1]}, {t} thread{'s' if t > 1 else ''}", ""]
            lines.append("| sparsity | batch | torch dense | " + " | ".join(cols) + " |")
            lines.append("| --- | --- | --- | " + " | ".join("---" for _ in cols) + " |")
            for s in dict.fromkeys(r["sparsity"] for r in sel):
                for b in dict.fromkeys(r["batch"] for r in sel):
                    d = _get(sel, sparsity=s, batch=b, contender="torch_dense")
                    if d is None:
                        continue
                    cells = []
                    for n in cols:
                        r = _get(sel, sparsity=s, batch=b, contender=n)
                        cells.append("" if r is None else f"{r['speedup_vs_torch_dense']:.2f}x ±{r['speedup_iqr'] / 2:.2f}")
                    lines.append(
                        f"| {s:.2f} | {b} | {d['median_s'] * 1e3:.3f} ms ({d['dense_gflops']:.0f} GF/s) | "
                        + " | ".join(cells) + " |"
                    )
    path.write_text("\n".join(lines) + "\n")


def plot(rows: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    names = [n for n in dict.fromkeys(r["contender"] for r in rows) if n not in ("torch_dense", AA) and "@2t" not in n]
    for shape in dict.fromkeys(tuple(r["shape"]) for r in rows):
        ts = list(dict.fromkeys(r["threads"] for r in rows))
        bs = list(dict.fromkeys(r["batch"] for r in rows))
        fig, axes = plt.subplots(len(ts), len(bs), figsize=(4 * len(bs), 3.4 * len(ts)), squeeze=False, sharey=True)
        for i, t in enumerate(ts):
            for j, b in enumerate(bs):
                ax = axes[i][j]
                for n in names:
                    pts = sorted(
                        (r["sparsity"], r["speedup_vs_torch_dense"])
                        for r in rows
                        if tuple(r["shape"]) == shape and r["threads"] == t and r["batch"] == b and r["contender"] == n
                    )
                    if pts:
                        ax.plot(*zip(*pts), marker="o", ms=3, label=n)
                ax.axhline(1.0, color="k", lw=0.8, ls="--")
                ax.set_yscale("log", base=2)
                ax.set_title(f"batch {b}, {t} thread{'s' if t > 1 else ''}", fontsize=9)
                ax.set_xlabel("sparsity")
                if j == 0:
                    ax.set_ylabel("speedup over torch dense")
                ax.grid(True, which="both", alpha=0.3)
        axes[0][-1].legend(fontsize=7, loc="upper left")
        fig.suptitle(f"y = x W^T, W {shape[0]}x{shape[1]} (median of interleaved rounds)")
        fig.tight_layout()
        p = out / f"speedup_{shape[0]}x{shape[1]}.png"
        fig.savefig(p, dpi=90)
        plt.close(fig)
        paths.append(p)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small grid for a smoke run")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--rounds", type=int, help="rounds per cell (default: 15, quick: 7)")
    ap.add_argument("--shapes", nargs="+", help="e.g. 3072x768 768x3072")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    if args.rounds:
        cfg["rounds"] = args.rounds
    if args.shapes:
        cfg["shapes"] = [tuple(int(v) for v in s.lower().split("x")) for s in args.shapes]
    env = environment()
    if env["load_1min"] > 0.5:
        print(f"WARNING: 1-minute load is {env['load_1min']:.2f}: something else is running; figures will be noisy.")
    rows = run(cfg, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"env": env, "config": cfg, "rows": rows}, indent=1))
    write_markdown(rows, env, args.out / "results.md")
    pngs = plot(rows, args.out)
    for what, val, ok, nz, close in targets(rows):
        print(f"{verdict(ok, close) or 'info'}  {what}: {val}" + ("" if nz is None else f" (noise {nz:.0%})"))
    print(f"wrote {args.out / 'results.md'}, {args.out / 'results.json'}, " + ", ".join(p.name for p in pngs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
