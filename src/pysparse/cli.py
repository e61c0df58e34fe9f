"""The ``pysparse`` command: info, inspect, bench, run and embed, torch-free.

Every error prints one line (``pysparse: error: ...``) and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence

import numpy as np

from ._timing import interleaved

MAX_BENCH_ELEMENTS = 1 << 28
MAX_THREADS = 256  # what the kernels' pool takes (pysparse.set_num_threads)
MAX_ROUNDS = 1_000_000


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, no usage dump
        raise _UsageError(f"{self.prog}: {message} (see --help)")


class _UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pysparse", description="Inspect, benchmark and run pysparse model files (.pspz).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("info", help="CPU, ISA, kernels in use, threads")
    s = sub.add_parser("inspect", help="layers, formats, sparsity and bytes of a model file")
    s.add_argument("model")
    s = sub.add_parser("bench", help="latency of a model file against its densified twin (same runtime)")
    s.add_argument("model")
    s.add_argument("--batch", type=int, default=1)
    s.add_argument("--seq", type=int, default=128, help="tokens per sample, for inputs with a free sequence length")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--rounds", type=int, default=50, help="timed calls per variant (interleaved)")
    s.add_argument("--warmup", type=int, default=5)
    s = sub.add_parser("run", help="run a model file on .npy inputs")
    s.add_argument("model")
    s.add_argument("--input", "-i", action="append", required=True, help=".npy file (repeat for several inputs)")
    s.add_argument("--output", "-o", action="append", default=[], help=".npy file (repeat for several outputs)")
    s = sub.add_parser("embed", help="sentence embeddings of texts with a BERT model file that carries its tokenizer")
    s.add_argument("model")
    s.add_argument("sentences", nargs="+", help="one or more texts")
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--max-length", type=int, default=None, help="tokens per text at most (default: the tokenizer's)")
    s.add_argument("--output", "-o", help=".npy file for the (sentences, hidden) embeddings (else printed)")
    return p


def _info() -> None:
    import pysparse as ps

    info = ps.cpu_info()
    feats = sorted(k for k, v in info["features"].items() if v)
    print(f"pysparse {ps.__version__} from {os.path.dirname(ps.__file__)}")
    print(f"arch: {info['arch']}  isa in use: {info['isa']}  built: {', '.join(info['built'])}  "
          f"runnable: {', '.join(info['runnable'])}")
    print(f"cpu features: {', '.join(feats) or '-'}")
    print(f"threads: {info['threads']} (default {info['default_threads']}, os.cpu_count {os.cpu_count()})")
    print("kernels in use:")
    for slot, kernel in sorted(info["kernels"].items()):
        print(f"  {slot:<14} {kernel}")
    print(f"numpy: {np.__version__}")


def _inspect(path: str) -> None:
    from .io import load

    m = load(path)
    print(f"{path}: {os.path.getsize(path):,} bytes")
    print(m.summary())


def _timings(fns: Sequence[Any], x: Sequence[np.ndarray], rounds: int, warmup: int) -> list[np.ndarray]:
    """Per-call seconds of each fn, one call per round, interleaved (pysparse._timing)."""
    calls = {str(i): (lambda f=f: f(*x)) for i, f in enumerate(fns)}
    out = interleaved(calls, rounds, 0.0, cap=1, warmup=warmup)
    return [out[str(i)] for i in range(len(fns))]


def _blas_limit(threads: int) -> Any:
    """Limit numpy's BLAS (the dense path) to the same threads, when threadpoolctl is there."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=threads, user_api="blas")


def _bench_input(name: str, shape: tuple[Any, ...], dtype: str, rng: Any) -> np.ndarray:
    if dtype == "int64":  # token ids 0 (in every vocabulary), a mask of ones: every token attended
        return np.ones(shape, np.int64) if name == "attention_mask" else np.zeros(shape, np.int64)
    return rng.standard_normal(shape).astype(np.float32)


def _bench(path: str, batch: int, threads: int, rounds: int, warmup: int, seq: int = 128) -> None:
    import pysparse as ps

    from .io import load

    if batch < 1 or seq < 1 or not 1 <= threads <= MAX_THREADS or not 3 <= rounds <= MAX_ROUNDS or not 0 <= warmup <= MAX_ROUNDS:
        raise ValueError(
            f"--batch and --seq must be >= 1, --threads in [1, {MAX_THREADS}], --rounds in [3, {MAX_ROUNDS}], "
            f"--warmup in [0, {MAX_ROUNDS}]"
        )
    sparse = load(path)
    dense = sparse.densified()
    rng = np.random.default_rng(0)
    xs = []
    for name, shape, dtype in zip(sparse.input_names, sparse.input_shapes, sparse.input_dtypes):
        # the first free dimension is the batch, later ones a sequence length
        full = tuple((batch if i == 0 else seq) if s is None else s for i, s in enumerate(shape))
        if int(np.prod(full, dtype=np.float64)) > MAX_BENCH_ELEMENTS:
            raise ValueError(f"input {name!r} of shape {full} is too large to benchmark")
        xs.append(_bench_input(name, full, dtype, rng))
    previous = ps.get_num_threads()
    ps.set_num_threads(threads)
    limiter = _blas_limit(threads)
    try:
        ts, td = _timings([sparse, dense], xs, rounds, warmup)
    finally:
        ps.set_num_threads(previous)
        if limiter is not None:
            limiter.restore_original_limits()
    formats = sorted({li.format for li in sparse.layers if li.op in ("linear", "conv2d")})
    seq_note = f", seq {seq}" if any(d is None for sh in sparse.input_shapes for d in sh[1:]) else ""
    print(f"{path}: batch {batch}{seq_note}, threads {threads}, {rounds} rounds interleaved, formats {formats}")
    if limiter is None:
        print("note: threadpoolctl is not installed, so the dense path's BLAS threads are not limited")
    for label, t in (("sparse", ts), ("dense", td)):
        q1, med, q3 = np.percentile(t, [25, 50, 75]) * 1e3
        print(f"  {label:<7} median {med:9.3f} ms   IQR {q1:.3f}-{q3:.3f} ms")
    print(f"  speedup (dense median / sparse median): {np.median(td) / np.median(ts):.2f}x")


def _run(path: str, inputs: list[str], outputs: list[str]) -> None:
    from .io import load

    m = load(path)
    xs = []
    for f in inputs:
        try:
            xs.append(np.load(f, allow_pickle=False))
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read {f} as a .npy array: {e}") from None
    ys = m(*xs)
    ys = [np.asarray(y) for y in (ys if isinstance(ys, tuple) else [ys])]  # an output may be an int (a size)
    if outputs and len(outputs) != len(ys):
        raise ValueError(f"the model has {len(ys)} output(s) but {len(outputs)} --output file(s) were given")
    for i, y in enumerate(ys):
        if outputs:
            _save(outputs[i], y)
            print(f"{m.output_names[i]}: {y.shape} -> {outputs[i]}")
        else:
            mean = float(y.mean()) if y.size else float("nan")
            print(f"{m.output_names[i]}: shape {y.shape}, mean {mean:.6g}")


def _embed(path: str, sentences: list[str], batch_size: int, max_length: int | None, output: str | None) -> None:
    from . import text
    from .io import load

    e = text.encode(load(path), sentences, batch_size=batch_size, max_length=max_length)
    if output:
        _save(output, e)
        print(f"embeddings: {e.shape} -> {output}")
    else:  # one line of numbers per sentence, in the order given
        for row in e:
            print(" ".join(f"{v:.7g}" for v in row))


def _save(path: str, y: np.ndarray) -> None:
    """np.save, with every write checked: a full disk (or /dev/full) is an error, not a success."""
    try:
        with open(path, "wb") as f:
            np.save(f, y, allow_pickle=False)
            f.flush()  # raises here (or at close) when the data does not fit
    except OSError as e:
        raise OSError(f"cannot write {path}: {e.strerror or e}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pysparse`` command; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
        if args.command == "info":
            _info()
        elif args.command == "inspect":
            _inspect(args.model)
        elif args.command == "bench":
            _bench(args.model, args.batch, args.threads, args.rounds, args.warmup, args.seq)
        elif args.command == "embed":
            _embed(args.model, args.sentences, args.batch_size, args.max_length, args.output)
        else:
            _run(args.model, args.input, args.output)
    except _UsageError as e:
        print(f"pysparse: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pysparse: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line, never a traceback
        msg = str(e).splitlines()[0] if str(e).strip() else ""
        if not isinstance(e, (ValueError, TypeError, OSError, KeyError, MemoryError)) or not msg:
            msg = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
        print(f"pysparse: error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # python -m pysparse.cli
    sys.exit(main())
