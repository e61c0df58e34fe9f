"""The torch-free runtime on the real MobileNetV2, against torch and against its own dense, in one run.

    python bench/bench_mobilenet_runtime.py [--before /other/venv/bin/python] [--threads 1 2] [--profile]

The ImageNet MobileNetV2 (``bench_peers.prepare_mobilenet``: the pretrained checkpoint, its 1x1
convolutions pruned one-shot to 90% in (4, 1) blocks and unstructured; random 224x224 inputs) runs
batch 1 as torch dense eager (twice: the A/A pair), and as the pysparse runtime
(``ps.convert`` -> ``ps.save`` -> ``ps.load``) on the dense and the pruned weights. ``--before``
adds the runtime of another pysparse build (its venv's python, e.g. the main branch's) on the
same files: before / after in the same run. One worker process per (venv, thread count)
(bench_peers' workers: passive OpenMP waits, outputs checked against torch on the same weights
before timing); every round runs every cell once in shuffled order, each sample is
``--sample-ms`` of back-to-back forwards; medians over rounds, ratios the median of per-round
ratios. ``--profile`` then times each node of the runtime's run plan (fused nodes, medians over
repetitions), grouped by op and conv path, for every runtime cell.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_peers import _cpu, prepare_mobilenet, worker  # noqa: E402

HERE = Path(__file__).resolve().parent

# Per-node profile of a loaded runtime model (run by each venv's python on its own saved file).
PROFILE = r'''
import collections, sys, time, numpy as np, pysparse as ps
path, threads, reps, x_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ps.set_num_threads(threads)
m = ps.load(path)
x = np.load(x_path)["x"]
for _ in range(3):
    m(x)
times = collections.defaultdict(list)
for _ in range(reps):
    env = {s["name"]: x for s in m._inputs}
    for i, (n, fn, free) in enumerate(zip(m._plan_nodes, m._plan_fns, m._plan_release)):
        args = [env[r] if isinstance(r, str) else r for r in n.inputs]
        t0 = time.perf_counter()
        env[n.name] = fn(*args)
        times[i].append(time.perf_counter() - t0)
        for r in free:
            del env[r]
by, count = collections.defaultdict(float), collections.Counter()
for i, n in enumerate(m._plan_nodes):
    plan = getattr(m._plan_fns[i], "conv_plan", None)
    kind = n.op
    if plan is not None:
        kind += f" [{plan.path}, {'sparse' if plan.sparse else 'dense'} {plan.kernel_size[0]}x{plan.kernel_size[1]} s{plan.stride[0]}]"
    by[kind] += float(np.median(times[i])) * 1e3
    count[kind] += 1
total = sum(by.values())
print(f"  {len(m._plan_nodes)} run-plan nodes, per-node medians sum to {total:.2f} ms")
for k, v in sorted(by.items(), key=lambda kv: -kv[1]):
    print(f"    {k:58} x{count[k]:<3} {v:7.2f} ms {100 * v / total:5.1f}%")
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", help="python of a venv with another pysparse build (its runtime is timed too)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--sample-ms", type=float, default=60.0)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--variants", nargs="+", default=["dense", "90pct_4x1", "90pct_unstr"])
    ap.add_argument("--profile", action="store_true", help="per-node profile of every runtime cell afterwards")
    ap.add_argument("--profile-reps", type=int, default=30)
    ap.add_argument("--work", type=Path, help="working folder; files already prepared there are reused")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "mobilenetv2_runtime.txt")
    args = ap.parse_args()
    up = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"machine: {up}")
    work = args.work or Path(tempfile.mkdtemp(prefix="pysparse-mnv2-"))
    work.mkdir(parents=True, exist_ok=True)
    stamp = work / "prepared_mobilenetv2_0.9_224.json"
    if stamp.exists():
        variants, measured = json.loads(stamp.read_text())
    else:
        variants, measured = prepare_mobilenet(work, 0.9, [224])
        stamp.write_text(json.dumps([variants, measured]))
    venvs = {"after": sys.executable, **({"before": args.before} if args.before else {})}
    plan: list[tuple[str, str, str]] = [("after", "torch", "dense"), ("after", "torch", "dense")]
    plan += [(v, "pysparse_runtime", var) for var in args.variants for v in venvs]
    workers = {(v, t): worker(py, v, t, str(work), "mobilenetv2") for v, py in venvs.items() for t in args.threads}
    cells: list[dict[str, Any]] = []
    for t in args.threads:
        for i, (venv, c, var) in enumerate(plan):
            label = ("torch" if c == "torch" else f"runtime({venv})") + f":{var}" + ("'" if i == 1 else "")
            cells.append(dict(id=len(cells), venv=venv, contender=c, variant=var, threads=t, label=label))
    ok = []
    for cell in cells:
        r = workers[(cell["venv"], cell["threads"])].ask(
            {"op": "build", "id": cell["id"], "contender": cell["contender"], "variant": cell["variant"], "seq": 224})
        if "error" in r:
            print(f"  {cell['label']} {cell['threads']}t: NOT RUN: {r['error']}")
            cell["error"] = r["error"]
            continue
        if cell["contender"] == "pysparse_runtime":  # keep this venv's file for the profile
            src = work / f"rt_pysparse_runtime_{cell['variant']}_224_{cell['threads']}.pspz"
            cell["file"] = work / f"{cell['venv']}_{cell['variant']}_{cell['threads']}t.pspz"
            shutil.copyfile(src, cell["file"])
        ok.append(cell)
    refs = {}
    for var in args.variants:
        rid = 10_000 + len(refs)
        workers[("after", args.threads[0])].ask({"op": "build", "id": rid, "contender": "torch", "variant": var, "seq": 224})
        refs[var] = np.load(work / f"out_{rid}.npy")
    for c in ok:
        c["cosine"] = float(np.min(np.sum(np.load(work / f"out_{c['id']}.npy") * refs[c["variant"]], axis=1)))
    timed = [c for c in ok if c["cosine"] > 0.999]
    for c in ok:
        if c not in timed:
            print(f"  {c['label']} {c['threads']}t: WRONG ANSWER (cosine {c['cosine']:.4f}), not timed")
    for c in timed:
        tt = workers[(c["venv"], c["threads"])].ask({"op": "time", "id": c["id"], "reps": 3})["t"]
        c["reps"], c["samples"] = max(1, int(args.sample_ms / 1e3 / max(tt, 1e-6))), []
    start = time.time()
    for _ in range(args.rounds):
        order = list(timed)
        random.shuffle(order)
        for c in order:
            c["samples"].append(workers[(c["venv"], c["threads"])].ask({"op": "time", "id": c["id"], "reps": c["reps"]})["t"])
    for w in workers.values():
        w.close()
    up2 = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    torch_base = {c["threads"]: c for c in timed if c["label"] == "torch:dense"}
    own_dense = {(c["venv"], c["threads"]): c for c in timed if c["contender"] == "pysparse_runtime" and c["variant"] == "dense"}

    def ratio(base: dict[str, Any] | None, c: dict[str, Any]) -> float:
        return statistics.median(x / y for x, y in zip(base["samples"], c["samples"])) if base else float("nan")

    lines = [f"# bench/bench_mobilenet_runtime.py, {time.strftime('%Y-%m-%d %H:%M')} UTC; {up}",
             f"# {' '.join([os.path.basename(sys.argv[0])] + sys.argv[1:])}",
             f"# {os.uname().machine}, {_cpu()}; {args.rounds} interleaved rounds of {args.sample_ms:.0f} ms samples in "
             f"{time.time() - start:.0f} s; batch 1, 224x224, MobileNetV2 ImageNet weights, random inputs; 1x1 convs "
             f"pruned one-shot {measured}; after = {venvs['after']}" + (f", before = {args.before}" if args.before else ""),
             f"{'contender':28} {'thr':>3} {'median ms':>10} {'IQR':>6} {'vs torch':>9} {'vs own dense':>13} {'cos min':>8}"]
    for c in sorted(timed, key=lambda c: (c["threads"], statistics.median(c["samples"]))):
        med = statistics.median(c["samples"]) * 1e3
        q = np.percentile(np.array(c["samples"]) * 1e3, [25, 75])
        own = own_dense.get((c["venv"], c["threads"])) if c["contender"] == "pysparse_runtime" else None
        own_s = f"{ratio(own, c):12.2f}x" if own is not None and own is not c else f"{'':13}"
        lines.append(f"{c['label']:28} {c['threads']:3} {med:10.2f} {q[1] - q[0]:6.2f} {ratio(torch_base.get(c['threads']), c):8.2f}x "
                     f"{own_s} {c['cosine']:8.5f}")
    for c in cells:
        if "error" in c:
            lines.append(f"{c['label']:28} {c['threads']:3}  not run: {c['error']}")
    lines.append(f"# vs torch / vs own dense = median over rounds of (torch dense | the same build's runtime on the dense "
                 f"model) / contender, same threads; torch:dense' is the A/A pair; {up2}")
    if args.profile:
        lines.append(f"# per-node profile of the run plan (each node's median over {args.profile_reps} forwards; "
                     f"{subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()})")
        for c in timed:
            if c["contender"] != "pysparse_runtime":
                continue
            out = subprocess.run([venvs[c["venv"]], "-c", PROFILE, str(c["file"]), str(c["threads"]), str(args.profile_reps),
                                  str(work / "inputs_224.npz")], capture_output=True, text=True,
                                 env=dict(os.environ, OMP_NUM_THREADS=str(c["threads"])))
            lines.append(f"{c['label']} {c['threads']}t:")
            lines.append(out.stdout.rstrip() if out.returncode == 0 else f"  profile failed: {out.stderr[-300:]}")
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
