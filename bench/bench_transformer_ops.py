"""The fused transformer kernels against torch and the numpy reference at all-MiniLM-L6-v2's
shapes (hidden 384, 12 heads of 32, intermediate 1536), batch 1, one thread by default.

    python bench/bench_transformer_ops.py [--threads 1] [--rounds 15]

Interleaved rounds (pysparse._timing), medians in microseconds; every contender's output is
checked against ours before timing. Timings are noise while the machine is busy: keep the
rounds and read the ratios.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

import pysparse as ps
from pysparse import _timing
from pysparse.ops import transformer as T

HIDDEN, HEADS, INTER = 384, 12, 1536


def cases(seq: int, rng: np.random.Generator) -> dict[str, dict]:
    qkv = rng.standard_normal((1, seq, 3 * HIDDEN)).astype(np.float32)
    q, k, v = qkv[..., :HIDDEN], qkv[..., HIDDEN : 2 * HIDDEN], qkv[..., 2 * HIDDEN :]
    mask = np.zeros((1, 1, 1, seq), np.float32)
    tq, tk, tv = (torch.from_numpy(np.asarray(a)) for a in (q, k, v))
    tm = torch.from_numpy(mask)

    def sdpa():
        split = lambda a: a.view(1, seq, HEADS, HIDDEN // HEADS).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(split(tq), split(tk), split(tv), attn_mask=tm)
        return out.transpose(1, 2).reshape(1, seq, HIDDEN)

    x = rng.standard_normal((1, seq, HIDDEN)).astype(np.float32)
    res = rng.standard_normal((1, seq, HIDDEN)).astype(np.float32)
    w, b = rng.standard_normal(HIDDEN).astype(np.float32), rng.standard_normal(HIDDEN).astype(np.float32)
    tx, tr, tw, tb = map(torch.from_numpy, (x, res, w, b))
    g = rng.standard_normal((1, seq, INTER)).astype(np.float32)
    tg = torch.from_numpy(g)
    return {
        "attention": {
            "pysparse": lambda: T.attention(q, k, v, HEADS, mask),
            "torch sdpa": sdpa,
            "numpy reference": lambda: T.reference_attention(q, k, v, HEADS, mask),
        },
        "layer_norm + residual": {
            "pysparse": lambda: T.layer_norm(x, w, b, 1e-12, res),
            "torch": lambda: F.layer_norm(tx + tr, (HIDDEN,), tw, tb, 1e-12),
        },
        "gelu (erf)": {"pysparse": lambda: T.gelu(g), "torch": lambda: F.gelu(tg)},
        "gelu (tanh)": {"pysparse": lambda: T.gelu(g, "tanh"), "torch": lambda: F.gelu(tg, approximate="tanh")},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--seq", type=int, nargs="+", default=[16, 128])
    args = ap.parse_args()
    ps.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"threads {args.threads}, isa {ps.cpu_info()['isa']}, rounds {args.rounds}; median us per call")
    for seq in args.seq:
        for op, fns in cases(seq, rng).items():
            ours = np.asarray(fns["pysparse"]())
            for name, fn in fns.items():
                other = np.asarray(fn())
                assert np.allclose(ours, other, rtol=1e-4, atol=1e-4), (op, name)
            t = _timing.interleaved(fns, args.rounds, 0.02)
            med = {name: float(np.median(s)) * 1e6 for name, s in t.items()}
            ratios = "  ".join(
                f"{name} {med[name]:8.1f} ({float(np.median(t[name] / t['pysparse'])):.2f}x)" for name in fns
            )
            print(f"seq {seq:4d}  {op:22s} {ratios}")


if __name__ == "__main__":
    main()
