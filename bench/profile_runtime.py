"""Per-op CPU time of loaded runtime models (``ps.load``), 1 thread, and their whole-forward time.

Thread CPU time (``time.thread_time``), not wall time: on a shared, loaded machine the time a
process is scheduled out does not count, so figures from different runs are comparable (caches
and the memory bus are still shared: quote the load). Every model runs interleaved rounds of
``--sample`` seconds of back-to-back forwards; medians over rounds. Then each model's plan nodes
are wrapped with timers for ``--reps`` forwards and summed per op kind (a linear also names its
format and its layer's last two name parts): where the time goes.

    python bench/profile_runtime.py --seq 128 m_int8.pspz m_fp32.pspz [--inputs windows.npz]

Inputs: ``--inputs`` an .npz of input_ids / attention_mask / token_type_ids (batch 1 used), else
``seq`` random token ids with a full mask (BERT-style three-input models).
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import time
from typing import Any

import numpy as np

import pysparse as ps

NAMES = ("input_ids", "attention_mask", "token_type_ids")


def feed_for(args: argparse.Namespace) -> list[np.ndarray]:
    if args.inputs:
        z = np.load(args.inputs)
        return [z[k][:1].astype(np.int64) for k in NAMES]
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 20000, (1, args.seq)).astype(np.int64)
    return [ids, np.ones_like(ids), np.zeros_like(ids)]


def kind(n: Any) -> str:
    fmt = n.attrs.get("format", "")
    k = n.op + (f":{fmt}" if fmt else "")
    if n.op.startswith("linear"):
        k += ":" + ".".join(n.name.split(".")[-2:])
    return k


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--inputs", help="npz with input_ids, attention_mask, token_type_ids")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--sample", type=float, default=0.1, help="seconds of forwards per sample")
    ap.add_argument("--reps", type=int, default=30, help="forwards of the per-op profile")
    ap.add_argument("--top", type=int, default=14)
    args = ap.parse_args()
    ps.set_num_threads(1)
    print(f"# bench/profile_runtime.py; {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    feed = feed_for(args)
    models = [ps.load(p) for p in args.models]
    samples: dict[str, list[float]] = {p: [] for p in args.models}
    for _ in range(args.rounds):
        for p, m in zip(args.models, models):
            m(*feed)
            t, n = time.thread_time(), 0
            while time.thread_time() - t < args.sample:
                m(*feed)
                n += 1
            samples[p].append((time.thread_time() - t) / n)
    for p in args.models:
        print(f"{np.median(samples[p]) * 1e3:8.2f} ms  {p}  (median of {args.rounds} rounds, thread CPU time)")
    for p, m in zip(args.models, models):
        times: dict[int, list[float]] = collections.defaultdict(list)
        fns = list(m._plan_fns)

        def wrap(i: int, f: Any) -> Any:
            def timed(*a: Any) -> Any:
                t = time.thread_time()
                y = f(*a)
                times[i].append(time.thread_time() - t)
                return y
            return timed

        m._plan_fns = [wrap(i, f) for i, f in enumerate(fns)]
        for _ in range(args.reps):
            m(*feed)
        m._plan_fns = fns
        by: dict[str, float] = collections.defaultdict(float)
        for i, n in enumerate(m._plan_nodes):
            by[kind(n)] += float(np.median(times[i])) * 1e3
        print(f"{p}: per-op medians, sum {sum(by.values()):.2f} ms (the rest: the graph loop)")
        for k, v in sorted(by.items(), key=lambda kv: -kv[1])[: args.top]:
            print(f"  {v:7.3f} ms  {k}")


if __name__ == "__main__":
    main()
