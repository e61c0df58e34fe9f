"""One process of the 2-process data-parallel test in tests/test_distill.py.

    torchrun --nproc_per_node=2 tests/distill_ddp_worker.py OUT_DIR
    RANK=r WORLD_SIZE=2 python tests/distill_ddp_worker.py OUT_DIR file:///tmp/store   # r = 0, 1

The test uses the second form: a file store, so nothing listens on a TCP port
but gloo's own connections, which GLOO_SOCKET_IFNAME=lo keeps on loopback
(torchrun's TCP store listens on every interface).

Every rank builds the same tiny data set and teacher but initialises its
student (and feature projection) from a different seed: DistributedDataParallel
and fit's broadcast must make them equal, and averaged gradients must keep them
equal. Writes rank<N>.pt (weights, history, pruner steps) into the directory
given on the command line.
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

from pysparse import distill


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
        },
        out_dir / f"rank{rank}.pt",
    )
    dist.barrier()  # both ranks past every collective before either tears gloo down
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)
