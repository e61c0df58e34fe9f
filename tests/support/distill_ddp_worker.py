"""One process of the 2-process data-parallel test in tests/distill/test_distill.py.

    torchrun --nproc_per_node=2 tests/support/distill_ddp_worker.py OUT_DIR
    RANK=r WORLD_SIZE=2 python tests/support/distill_ddp_worker.py OUT_DIR file:///tmp/store   # r = 0, 1

The test uses the second form: a file store, so nothing listens on a TCP port
but gloo's own connections, which GLOO_SOCKET_IFNAME=lo keeps on loopback
(torchrun's TCP store listens on every interface).

Every rank builds the same tiny data set and teacher but initialises its
student (and feature projection) from a different seed: DistributedDataParallel
and fit's broadcast must make them equal, and averaged gradients must keep them
equal. Writes rank<N>.pt (weights, history, pruner steps) into the directory
given on the command line.

Then, for the Taylor and Fisher criteria, a ``prune.Pruner`` prunes a student
that fit trains on rank-dependent data (each rank its own inputs): every rank
saves its local gradient statistics just before the pruning step, and its masks
just after it (before fit copies rank 0's state over), so the test can check
that both ranks decided alike, from the scores averaged over the ranks.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from pysparse import distill, prune
from pysparse.prune.masks import mask_of


class LocalPruner:
    """Counts its steps and zeroes one weight per step, chosen differently on each
    rank (as a criterion that reads local state might): fit must keep rank 0's."""

    def __init__(self, layer: nn.Linear, rank: int) -> None:
        self.layer, self.steps = layer, 0
        self.gen = torch.Generator().manual_seed(rank)

    def step(self) -> bool:
        self.steps += 1
        with torch.no_grad():
            self.layer.weight.view(-1)[torch.randint(self.layer.weight.numel(), (1,), generator=self.gen)] = 0.0
        return True


class RecordingPruner:
    """Steps a real Pruner; on the step that prunes, keeps what this rank had recorded
    (its local statistics, the weights) and the masks the step chose."""

    def __init__(self, pruner: prune.Pruner) -> None:
        self.pruner = pruner
        self.record: dict[str, dict[str, torch.Tensor]] = {}

    def step(self) -> bool:
        layers = self.pruner.layers_
        local = {n: mask_of(m).accumulated.clone() for n, m in layers.items() if mask_of(m).accumulated is not None}
        weights = {n: m.weight.detach().clone() for n, m in layers.items()}
        changed = self.pruner.step()
        if changed:
            masks = {n: t.clone() for n, t in self.pruner.masks_.items()}
            self.record = {"local": local, "weights": weights, "masks": masks}
        return changed


def prune_on_local_data(rank: int, criterion: str) -> dict[str, dict[str, torch.Tensor]]:
    """Taylor / Fisher pruning inside fit, each rank training on data only it has."""
    g = torch.Generator().manual_seed(10 + rank)  # rank-dependent inputs and labels
    x = torch.randn(64, 12, generator=g) * (1 + rank)
    y = torch.randint(0, 4, (64,), generator=g)
    data = TensorDataset(x, y)
    torch.manual_seed(7)
    student = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4))
    pruner = RecordingPruner(
        prune.Pruner(student, sparsity=0.6, criterion=criterion, schedule=prune.one_shot(at=4))
    )
    # Each rank's own data set, so a DistributedSampler would be wrong here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*DistributedSampler.*")
        distill.fit(student, None, DataLoader(data, batch_size=16), 1, pruner=pruner, progress=False)
    return pruner.record


def main(out_dir: Path, init_method: str | None) -> None:
    if init_method is None:  # under torchrun: rank, world size and store from the environment
        dist.init_process_group("gloo")
    else:
        rank_env, world_env = os.environ["RANK"], os.environ["WORLD_SIZE"]
        dist.init_process_group("gloo", init_method=init_method, rank=int(rank_env), world_size=int(world_env))
    rank = dist.get_rank()
    torch.set_num_threads(1)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 12, generator=g)
    y = (x @ torch.randn(12, 4, generator=g)).argmax(1)
    data = TensorDataset(x, y)

    torch.manual_seed(0)  # the same teacher everywhere, trained without fit (no DDP)
    teacher = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.Adam(teacher.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(teacher(x), y).backward()
        opt.step()

    torch.manual_seed(100 + rank)  # a different student on each rank
    student = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 4))
    hints = distill.FeatureDistiller(student, teacher, {"1": "1"}, example_input=x[:2])
    loader = DataLoader(data, batch_size=16, sampler=DistributedSampler(data, shuffle=True, seed=0))
    pruner = LocalPruner(student[0], rank)
    history = distill.fit(student, teacher, loader, 4, pruner=pruner, features=hints, lr=1e-2, progress=rank == 0)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        distill.fit(nn.Linear(12, 4), None, DataLoader(data, batch_size=128), 1, progress=False)
    warned = any("DistributedSampler" in str(w.message) for w in caught)

    torch.save(
        {
            "student": student.state_dict(),
            "projection": hints.state_dict(),
            "loss": [row["loss"] for row in history],
            "pruner_steps": pruner.steps,
            "steps": history[-1]["steps"],
            "batches": len(loader),
            "sparsity": history[-1]["sparsity"],
            "warned": warned,
            "taylor": prune_on_local_data(rank, "taylor"),
            "fisher": prune_on_local_data(rank, "fisher"),
        },
        out_dir / f"rank{rank}.pt",
    )
    dist.barrier()  # both ranks past every collective before either tears gloo down
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)
