"""Whole-model benchmark: torch dense vs the ``ps.convert`` model (and the torch-free
runtime, when ``pysparse.io`` exists), one thread, batch 1 and 32.

Models (weights pruned one-shot by ``prune.Pruner``, layer scope, then squashed; no
training, so the benchmark measures the packing and kernels on what the library makes):
  * MLP 784-2048-2048-10, hidden layers at 90% in (8, 1) blocks of W[out, in] (L2);
  * the same MLP at 90% unstructured (magnitude);
  * a CNN on 3x32x32 with 1x1 and 3x3 convolutions, BatchNorm and pooling, every
    conv but the first (3 input channels) at 90% unstructured.

Timing rules for a shared, noisy machine: one process, warm-up, then rounds in
which every contender runs once (rotating order) for about ``--sample-ms``; medians
and IQR over rounds; speedups are ratios torch dense / contender taken round by
round, so slow phases of the machine cancel out. Outputs are checked against the
dense model before anything is timed.

    python bench/bench_models.py                      # full run
    python bench/bench_models.py --quick --rounds 3   # a smoke run: small models
    python bench/bench_models.py --json results.json
    python bench/bench_models.py --only cnn           # one model family
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import pysparse as ps

# bench/ is on sys.path when this script runs. harness: the timing rounds, shared with
# the kernel benchmark, and one thread count for torch, pysparse and numpy's BLAS (the
# runtime's dense layers); models: the benchmarked models.
from harness import measure, threads
from models.mlp_cnn import cnn, mlp

CHECK_RTOL = 1e-4


def runtime_contender(sm: torch.nn.Module, x: np.ndarray, workdir: Path) -> tuple[Callable[[], Any] | None, str]:
    """The torch-free runtime (``ps.save`` then ``ps.load``), if this pysparse has it."""
    try:
        import pysparse.io  # noqa: F401
    except ImportError:
        return None, "pysparse.io not available"
    try:
        path = workdir / "model.pspz"
        ps.save(sm, path, example_inputs=(torch.from_numpy(x),))
        model = ps.load(path)
    except Exception as e:  # a contender that cannot run is reported, not fatal
        return None, f"save/load failed: {type(e).__name__}: {e}"
    return (lambda: model(x)), f"file {path.stat().st_size / 1e6:.2f} MB"


def run_case(name: str, model: torch.nn.Module, shape: tuple[int, ...], batch: int, args: argparse.Namespace,
             workdir: Path) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(batch)
    xt = torch.randn((batch, *shape), generator=gen)
    x = xt.numpy()
    t0 = time.perf_counter()
    sm = ps.convert(model, example_inputs=(xt,), batch=batch, threads=args.threads, progress=False)
    convert_s = time.perf_counter() - t0
    with torch.no_grad():
        ref = model(xt).numpy().astype(np.float64)
    fns: dict[str, Callable[[], Any]] = {}

    def torch_dense() -> Any:
        with torch.no_grad():
            return model(xt)

    def pysparse_convert() -> Any:
        with torch.no_grad():
            return sm(xt)

    fns["torch_dense"] = torch_dense
    fns["ps.convert"] = pysparse_convert
    runtime, runtime_note = runtime_contender(sm, x, workdir)
    if runtime is not None:
        fns["ps.load runtime"] = runtime
    for n, fn in fns.items():
        y = np.asarray(fn(), dtype=np.float64)
        err = np.max(np.abs(y - ref)) / max(np.max(np.abs(ref)), 1e-30)
        if not err <= CHECK_RTOL:
            raise AssertionError(f"{name} batch {batch}: {n} is wrong (rel err {err:.2e})")
    res = measure(fns, args.rounds, args.sample_ms / 1e3)
    report = sm.pysparse_report_
    return {
        "model": name,
        "batch": batch,
        "threads": args.threads,
        "convert_seconds": convert_s,
        "formats": [f"{layer.name}:{layer.format}" for layer in report.layers],
        "weight_bytes": report.nbytes,
        "dense_weight_bytes": report.dense_nbytes,
        "runtime": runtime_note,
        "results": res,
        "report": str(report),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small models, to check the script runs")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--sample-ms", type=float, default=5.0, help="length of one timed sample per contender")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--show-reports", action="store_true", help="print each conversion report")
    ap.add_argument("--only", choices=["mlp", "cnn"], help="run only the MLPs or only the CNN")
    args = ap.parse_args()
    torch.manual_seed(0)
    hidden, width = (256, 8) if args.quick else (2048, 32)
    models = {
        f"MLP 784-{hidden}-{hidden}-10 block8x1": (mlp(hidden, args.sparsity, "block8x1"), (784,)),
        f"MLP 784-{hidden}-{hidden}-10 unstructured": (mlp(hidden, args.sparsity, "unstructured"), (784,)),
        f"CNN w{width} 1x1+3x3 unstructured": (cnn(width, args.sparsity), (3, 32, 32)),
    }
    if args.only:
        models = {k: v for k, v in models.items() if k.lower().startswith(args.only)}
    info = ps.cpu_info()
    print(
        f"pysparse {ps.__version__} ({info['isa']} kernels), torch {torch.__version__}, {args.threads} thread(s), "
        f"sparsity {args.sparsity:.0%}, {args.rounds} rounds; median us (IQR), speedup = torch dense / contender"
    )
    rows = []
    with threads(args.threads), tempfile.TemporaryDirectory() as tmp:
        for name, (model, shape) in models.items():
            for batch in args.batches:
                row = run_case(name, model, shape, batch, args, Path(tmp))
                rows.append(row)
                cells = "  ".join(
                    f"{n} {r['median_us']:9.1f} us ({r['iqr_us']:.0f}) {r['speedup']:5.2f}x"
                    for n, r in row["results"].items()
                )
                print(f"{name:<40} b={batch:<3} {cells}")
                print(f"{'':<40} formats {' '.join(row['formats'])}; weights {row['weight_bytes'] / 1e6:.2f} MB "
                      f"vs {row['dense_weight_bytes'] / 1e6:.2f} MB; convert {row['convert_seconds']:.1f} s; "
                      f"runtime: {row['runtime']}")
                if args.show_reports:
                    print(row["report"])
    if args.json:
        env = {"cpu_info": info, "torch": torch.__version__, "args": {k: str(v) for k, v in vars(args).items()}}
        args.json.write_text(json.dumps({"environment": env, "rows": rows}, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
