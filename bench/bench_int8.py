"""int8 vs float32 kernels on the issue-14 shapes: 3072x768 and 768x3072, 90% sparse in
(8, 4) blocks, batch 1 and 32, 1 thread. Every contender on the same weight, interleaved
rounds (pysparse._timing), medians of per-round ratios; an A/A pair (the same int8 call
twice) shows the noise.

Batch 128 (the MiniLM sequence length: tokens per call) is timed beside the issue's 1 and 32.

    python bench/bench_int8.py [--rounds 15] [--target 0.02] [--batch 1 32 128] [--out FILE]
"""

from __future__ import annotations

import argparse
import platform
import subprocess
from pathlib import Path

import numpy as np
import torch

import pysparse as ps
from pysparse import _core, _timing


def weight(rng, m, k, density=0.1, r=8):
    keep = rng.random((m // r, k // 4)) < density
    mask = np.repeat(np.repeat(keep, r, axis=0), 4, axis=1)
    return (rng.standard_normal((m, k)).astype(np.float32) * mask).astype(np.float32)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--target", type=float, default=0.02)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32, 128])
    p.add_argument("--out", type=Path, help="also write the table to this file")
    args = p.parse_args()
    lines: list[str] = []

    def out(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    out(f"# python bench/bench_int8.py --rounds {args.rounds} --target {args.target} --batch "
        f"{' '.join(map(str, args.batch))}; {cpu_name()}; {load}")
    torch.set_num_threads(1)
    ps.set_num_threads(1)
    rng = np.random.default_rng(14)
    out(f"# isa {_core.get_isa()} / int8 {_core.get_qisa()}, 1 thread, {args.rounds} rounds")
    out(f"{'shape':>10} {'batch':>5} {'int8 us':>9} {'fp32 us':>9} {'fp32/int8':>9} {'torch/int8':>10} {'A/A':>6}"
          f"  fp32 format")
    for m, k in ((3072, 768), (768, 3072)):
        a = weight(rng, m, k)
        q = ps.BSRInt8Matrix.from_dense(a, block=(8, 4))
        f32 = {lab: ps.BSRMatrix.from_dense(a, block=b) for lab, b in (("bsr(8,4)", (8, 4)), ("bsr(8,1)", (8, 1)))}
        wt = torch.from_numpy(a)
        for batch in args.batch:
            x = rng.standard_normal((batch, k)).astype(np.float32)
            xt = torch.from_numpy(x)
            fns = {"int8": lambda: ps.linear(x, q), "int8_b": lambda: ps.linear(x, q),
                   "torch": lambda: torch.nn.functional.linear(xt, wt)}
            for lab, w in f32.items():
                fns[lab] = lambda w=w: ps.linear(x, w)
            with torch.no_grad():
                s = _timing.interleaved(fns, args.rounds, args.target, shuffle=batch)
            best = min(f32, key=lambda lab: np.median(s[lab]))
            med = lambda name: float(np.median(s[name]))  # noqa: E731
            ratio = lambda num: float(np.median(s[num] / s["int8"]))  # noqa: E731
            out(f"{m}x{k:<5} {batch:>5} {med('int8') * 1e6:9.1f} {med(best) * 1e6:9.1f} {ratio(best):9.2f}"
                  f" {ratio('torch'):10.2f} {ratio('int8_b'):6.2f}  {best}")

    out(f"# ratios: median over rounds of (contender / int8) time; A/A: int8 against itself; "
        f"{subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
