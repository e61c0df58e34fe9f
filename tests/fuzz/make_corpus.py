"""Writes the fuzz seed corpus (tests/fuzz/corpus/*.pspz): small real model files saved by pysparse.

Run from the repository with the dev venv (needs torch):
    .venv/bin/python tests/fuzz/make_corpus.py
Deterministic content (fixed seeds: the same graphs and arrays every run; safetensors may
order the header's keys differently, so the bytes can differ); each file is a few KB, so
the corpus stays far below 1 MB.
The fuzzer mutates these, so every op and format the loader validates has a seed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

import pysparse as ps
from pysparse.nn import SparseConv2d, SparseLinear

OUT = Path(__file__).resolve().parent / "corpus"


def _prune_(m: nn.Module, keep: float) -> None:
    """Zero all but the largest `keep` fraction of each weight (2:4 along the inputs for nm)."""
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() >= 2:
                t = p.abs().flatten()
                k = max(1, int(keep * t.numel()))
                p[p.abs() < t.kthvalue(t.numel() - k + 1).values] = 0.0


def _nm_(w: torch.Tensor) -> None:
    with torch.no_grad():
        g = w.reshape(w.shape[0], -1, 4)
        drop = g.abs().argsort(dim=2)[:, :, :2]
        g.scatter_(2, drop, 0.0)


def mlp(fmt: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    lin1, lin2 = nn.Linear(16, 24), nn.Linear(24, 8)
    if fmt == "nm":
        _nm_(lin1.weight)
        _nm_(lin2.weight)
    else:
        _prune_(lin1, 0.3)
        _prune_(lin2, 0.3)
    kw = {"block": (8, 1)} if fmt == "bsr" else {"nm": "2:4"} if fmt == "nm" else {}
    model = nn.Sequential(
        SparseLinear.from_module(lin1, fmt, **kw), nn.ReLU(), SparseLinear.from_module(lin2, fmt, **kw),
        nn.Tanh(), nn.Softmax(dim=-1),
    )
    return model.eval(), torch.randn(2, 16)


def cnn() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(1)
    c1, c2, fc = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 8, 3, stride=2), nn.Linear(8 * 3 * 3, 5)
    for m in (c1, c2, fc):
        _prune_(m, 0.5)
    model = nn.Sequential(
        SparseConv2d.from_module(c1, "csr"), nn.ReLU(), nn.MaxPool2d(2),
        SparseConv2d.from_module(c2, "csr"), nn.GELU(), nn.Flatten(), SparseLinear.from_module(fc, "csr"),
    )
    return model.eval(), torch.randn(2, 1, 16, 16)


class _Ops(nn.Module):
    """The shape and elementwise ops of the runtime in one small graph."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(4)
        self.ln = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn(x) + x
        h = h * torch.sigmoid(h) / 2.0 - 0.1
        p = nn.functional.avg_pool2d(h, 2)
        q = nn.functional.adaptive_avg_pool2d(h, (3, 3))
        c = torch.cat([p, q], dim=1).permute(0, 2, 3, 1)  # (N, 3, 3, 8)
        c = self.ln(c).reshape(c.size(0), 9, 8).transpose(1, 2).mean(dim=2)
        return torch.softmax(self.fc(c.unsqueeze(1)).squeeze(1), dim=-1)


class _Const(nn.Module):
    """Constants (buffers) in binary ops, a pool with padding and a strided, dilated conv."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor([2.0, 4.0, 0.5]).reshape(1, 3, 1, 1))
        self.conv = nn.Conv2d(3, 2, 3, stride=2, dilation=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.max_pool2d(x / self.scale + self.scale, 3, stride=1, padding=1)
        return torch.flatten(torch.relu(self.conv(h)), 1)


def const() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(3)
    return _Const().eval(), torch.randn(2, 3, 9, 9)


def ops() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(2)
    model = _Ops().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    return model, torch.randn(2, 4, 6, 6)


def bert() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A tiny Hugging Face BERT (1 layer, hidden 8): the transformer ops and integer inputs."""
    import transformers

    torch.manual_seed(4)
    cfg = transformers.BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=16, max_position_embeddings=8, type_vocab_size=2)
    ids = torch.randint(0, 20, (2, 5))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    return transformers.BertModel(cfg).eval(), {"input_ids": ids, "attention_mask": mask,
                                                "token_type_ids": torch.zeros_like(ids)}


def main() -> int:
    OUT.mkdir(exist_ok=True)
    models = {f"mlp_{f}": (lambda f=f: mlp(f)) for f in ("csr", "sell", "bsr", "nm", "dense")}
    models["cnn_csr"] = cnn
    models["ops"] = ops
    models["const"] = const
    models["bert"] = bert
    total = 0
    for name, make in models.items():
        model, x = make()
        path = OUT / f"{name}.pspz"
        if name == "bert":
            ps.save(model, path, example_inputs=x, outputs=("last_hidden_state", "sentence_embedding"))
        else:
            ps.save(model, path, example_inputs=(x,))
        total += path.stat().st_size
        print(f"{path.name}: {path.stat().st_size} bytes")
    print(f"corpus: {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
