"""ps.convert: swap every Linear / Conv2d of a pruned torch model for a pysparse module,
in the weight format that measures fastest on this CPU.

For each layer the candidates are dense, CSR, SELL (for Linear layers: its layout
pays at batch 1, where it usually beats CSR; convolutions multiply many pixels
at once, where CSR is as fast), BSR with the (R, 1) blocks the weight actually
has (no fill, or a small fill overhead), and N:M when the weight is N:M along
its inputs. Each candidate is a ready-made module timed on an input
of the layer's shape at the expected batch: interleaved rounds (every candidate
once per round, rotating order); a candidate's speedup is the median over rounds
of dense time / its time. The best sparse format is kept only if that speedup
reaches ``min_speedup``; otherwise the layer stays dense and the report says why.

With ``dtype="int8"`` a Linear's candidates also include the int8 formats
(bsr_int8 with (8, 4) / (4, 4) blocks when few enough blocks hold a weight,
and dense_int8): the fastest of all wins, by the same rule. The report then
gives each layer's quantization error: the relative L2 distance of the layer's
int8 output from its float32 output on the example input (on the timing probe
when example_inputs did not reach it).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import torch

from . import _checks, _core, _table, _timing
from .export import bert
from .formats import CHOICES, FORMATS, INT8_FORMATS, parse_block
from .fused import fuse_bert
from .io import INT8_RTOL, RTOL
from .nn import SparseConv2d, SparseLinear, conv_padding

__all__ = ["convert", "ConversionReport", "LayerReport"]

# Spatial size assumed for a conv that example_inputs did not reach.
DEFAULT_IMAGE = (32, 32)
DTYPES = ("float32", "int8")
ROUNDS = 7
TARGET_SECONDS = 1e-3  # one timed sample: enough calls of a candidate to last ~1 ms


@dataclass
class LayerReport:
    """One converted layer: what was measured and what was chosen."""

    name: str
    kind: str  # "linear" | "conv2d"
    shape: tuple[int, ...]  # the torch weight's shape
    input_shape: tuple[int, ...]  # the input the candidates were timed on
    format: str  # "csr" | "sell" | "bsr(8,1)" | "nm(2:4)" | "dense" | "kept" (module left as is)
    sparsity: float  # measured: exact zeros / weights
    nbytes: int  # bytes of the stored weight
    dense_nbytes: int  # bytes of the dense float32 weight
    speedup: float | None  # dense time / chosen time, same rounds (1.0 when dense)
    times_us: dict[str, float] = field(default_factory=dict)  # median per candidate
    note: str = ""
    dtype: str = "float32"  # of the chosen weight: "float32" | "int8"
    quant_error: float | None = None  # int8: relative L2 of the layer output vs float32; else None


@dataclass
class ConversionReport:
    """Per-layer results of :func:`convert`; ``print(report)`` shows a table."""

    layers: list[LayerReport]
    batch: int
    threads: int | None
    isa: str
    seconds: float
    forward: str = ""  # how the converted model runs its forward, when not module by module (pysparse.fused)

    @property
    def nbytes(self) -> int:
        return sum(layer.nbytes for layer in self.layers)

    @property
    def dense_nbytes(self) -> int:
        return sum(layer.dense_nbytes for layer in self.layers)

    def rows(self) -> list[dict[str, Any]]:
        """The table as plain dicts (for json or pandas)."""
        return [dict(vars(layer)) for layer in self.layers]

    def __str__(self) -> str:
        head = ("layer", "kind", "weight", "input", "sparsity", "dtype", "format", "bytes", "dense bytes", "speedup",
                "quant err", "note")
        rows = [
            (
                layer.name or "(model)",
                layer.kind,
                "x".join(map(str, layer.shape)),
                "x".join(map(str, layer.input_shape)),
                f"{layer.sparsity:.1%}",
                layer.dtype,
                layer.format,
                _table.size(layer.nbytes),
                _table.size(layer.dense_nbytes),
                "-" if layer.speedup is None else f"{layer.speedup:.2f}x",
                "-" if layer.quant_error is None else f"{layer.quant_error:.2e}",
                layer.note,
            )
            for layer in self.layers
        ]
        lines = [
            f"pysparse convert: {len(self.layers)} layers, batch {self.batch}, "
            f"threads {self.threads or 'default'}, {self.isa} kernels, {self.seconds:.1f} s",
            *_table.render(head, rows),
        ]
        total = self.dense_nbytes
        if total:
            size = _table.size
            lines.append(f"weights: {size(self.nbytes)} vs dense {size(total)} ({self.nbytes / total:.2f}x)")
        else:
            lines.append("weights: none")
        if self.forward:
            lines.append(f"forward: {self.forward}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        size = _table.size
        return f"ConversionReport({len(self.layers)} layers, {size(self.nbytes)} vs dense {size(self.dense_nbytes)})"


def time_candidates(
    fns: dict[str, Callable[[], Any]], rounds: int = ROUNDS, target_s: float = TARGET_SECONDS
) -> dict[str, np.ndarray]:
    """Seconds per call of each function, one sample per round (pysparse._timing's
    interleaved rounds, rotating order, at most 200 calls per sample). Compare two
    functions by the median of their round-by-round ratio."""
    return _timing.interleaved(fns, rounds, target_s, cap=200)


def _kind(m: torch.nn.Module) -> str | None:
    cls = type(m)
    if torch.nn.utils.parametrize.is_parametrized(m):
        cls = cls.__bases__[0]  # parametrize subclasses the module's class
    if cls is torch.nn.Linear:
        return "linear"
    if cls is torch.nn.Conv2d:
        return "conv2d"
    return None


def _targets(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module, str]]:
    """(qualified name, module, kind) of each distinct Linear / Conv2d, in model order,
    without descending into them (MultiheadAttention's own projections stay)."""
    found: list[tuple[str, torch.nn.Module, str]] = []
    seen: set[int] = set()
    kind = _kind(model)
    if kind is not None:  # the model is itself one layer
        return [("", model, kind)]

    def walk(prefix: str, mod: torch.nn.Module) -> None:
        if isinstance(mod, torch.nn.MultiheadAttention):
            return  # it reads out_proj.weight directly
        for name, child in mod.named_children():
            full = f"{prefix}.{name}" if prefix else name
            kind = _kind(child)
            if kind is not None:
                if id(child) not in seen:
                    seen.add(id(child))
                    found.append((full, child, kind))
            else:
                walk(full, child)

    walk("", model)
    return found


def _replace(model: torch.nn.Module, new: dict[int, torch.nn.Module]) -> None:
    for mod in list(model.modules()):
        for name, child in list(mod.named_children()):
            if id(child) in new:
                setattr(mod, name, new[id(child)])


def _input_shapes(
    model: torch.nn.Module, modules: list[torch.nn.Module], example_inputs: Any,
    keep: dict[int, torch.Tensor] | None = None,
) -> dict[int, tuple[int, ...]]:
    """The shape of each module's first positional input in one forward of example_inputs
    (and, if ``keep`` is given, a copy of that input for the modules it lists)."""
    shapes: dict[int, tuple[int, ...]] = {}

    def hook(mod: torch.nn.Module, args: tuple[Any, ...]) -> None:
        if args and isinstance(args[0], torch.Tensor):
            shapes.setdefault(id(mod), tuple(args[0].shape))
            if keep is not None and id(mod) in keep and keep[id(mod)] is None:
                keep[id(mod)] = args[0].detach().to(torch.float32).clone()

    handles = [m.register_forward_pre_hook(hook) for m in modules]
    try:
        with torch.no_grad():
            if isinstance(example_inputs, dict):
                model(**example_inputs)
            else:
                model(*example_inputs)
    finally:
        for h in handles:
            h.remove()
    return shapes


def _candidate_weights(
    w2d: np.ndarray, formats: Iterable[str], block: Any, kind: str = "linear", dtype: str = "float32"
) -> tuple[dict[str, Any], str]:
    """The sparse (and, for dtype int8, int8) weights worth timing, by label, and a note when none is."""
    out: dict[str, Any] = {}
    for tag, cls in FORMATS.items():
        if tag in formats:
            for mat in cls.candidates(w2d, block=block, conv=kind == "conv2d"):
                out[mat.label] = mat
    if dtype == "int8" and np.isfinite(w2d).all():
        for cls in INT8_FORMATS.values():
            for mat in cls.candidates(w2d, block=block, conv=kind == "conv2d"):
                out[mat.label] = mat
    density = np.count_nonzero(w2d) / max(1, w2d.size)
    note = "" if out else f"density {density:.2f}: no sparse format applies"
    return out, note


def _make(kind: str, m: torch.nn.Module, weight: Any, threads: int | None) -> torch.nn.Module:
    if kind == "linear":
        return SparseLinear(weight, m.bias, threads=threads)
    return SparseConv2d(
        weight, m.bias, in_channels=m.in_channels, out_channels=m.out_channels, kernel_size=m.kernel_size,
        stride=m.stride, padding=conv_padding(m), dilation=m.dilation, groups=m.groups, threads=threads,
    )


def _probe_shape(
    kind: str, m: torch.nn.Module, seen: tuple[int, ...] | None, batch: int, traced: bool
) -> tuple[tuple[int, ...], str]:
    """The input the candidates are timed on, and a note when it had to be assumed."""
    missed = "not reached by example_inputs" if traced and seen is None else ""
    if kind == "linear":
        if seen is None or len(seen) < 2:
            return (batch, m.in_features), missed
        return (batch * int(np.prod(seen[1:-1], dtype=np.int64)), seen[-1]), ""
    if seen is None or len(seen) != 4:
        assumed = f"input assumed {DEFAULT_IMAGE[0]}x{DEFAULT_IMAGE[1]} (pass example_inputs)"
        return (batch, m.in_channels, *DEFAULT_IMAGE), "; ".join(s for s in (missed, assumed) if s)
    return (batch, *seen[1:]), ""


def _quant_error(mod: torch.nn.Module, ref: torch.nn.Module, x: torch.Tensor) -> float:
    """Relative L2 distance of mod's output from ref's on x."""
    with torch.no_grad():
        y, want = mod(x).double(), ref(x).double()
    den = float(torch.linalg.vector_norm(want))
    num = float(torch.linalg.vector_norm(y - want))
    return num / den if den > 0 else num


def _convert_layer(
    name: str, kind: str, m: torch.nn.Module, seen: tuple[int, ...] | None, *, traced: bool, batch: int,
    formats: tuple[str, ...], block: Any, min_speedup: float, threads: int | None,
    dtype: str = "float32", example: torch.Tensor | None = None,
) -> tuple[torch.nn.Module, LayerReport]:
    weight = m.weight.detach().to(device="cpu", dtype=torch.float32)
    w2d = np.ascontiguousarray(weight.reshape(weight.shape[0], -1).numpy())
    shape = tuple(weight.shape)
    sparsity = 1.0 - np.count_nonzero(w2d) / max(1, w2d.size)
    probe, note = _probe_shape(kind, m, seen, batch, traced)

    def report(
        fmt: str, nbytes: int, speedup: float | None, times: dict[str, float], why: str,
        chosen: torch.nn.Module | None = None,
    ) -> LayerReport:
        quantized = chosen is not None and getattr(chosen.weight, "quantized", False)
        err = _quant_error(chosen, dense_mod, example if example is not None else x) if quantized else None
        return LayerReport(
            name, kind, shape, probe, fmt, float(sparsity), int(nbytes), int(w2d.nbytes), speedup,
            {k: v * 1e6 for k, v in times.items()}, "; ".join(s for s in (why, note) if s),
            "int8" if quantized else "float32", err,
        )

    dense_mod: Any = None
    x: Any = None

    if kind == "conv2d":
        try:
            conv_padding(m)
        except ValueError as e:
            return m, report("kept", w2d.nbytes, None, {}, f"left as Conv2d: {e}")
        if m.groups != 1:
            mod = _make(kind, m, w2d, threads)
            return mod, report("dense", w2d.nbytes, 1.0, {}, f"grouped (groups={m.groups}): dense")

    sparse, why = _candidate_weights(w2d, formats, block, kind, dtype)
    dense_mod = _make(kind, m, w2d, threads)
    if not sparse:
        return dense_mod, report("dense", w2d.nbytes, 1.0, {}, why)
    mods = {"dense": dense_mod, **{label: _make(kind, m, w, threads) for label, w in sparse.items()}}
    x = torch.randn(probe)

    def call(mod: torch.nn.Module) -> Callable[[], Any]:
        return lambda: mod(x)

    with torch.no_grad():
        samples = time_candidates({label: call(mod) for label, mod in mods.items()})
    gains = {label: float(np.median(samples["dense"] / samples[label])) for label in sparse}
    times = {label: float(np.median(v)) for label, v in samples.items()}
    best = max(gains, key=lambda label: gains[label])
    gain = gains[best]
    if "dense" in formats and gain < min_speedup:
        return dense_mod, report(
            "dense", w2d.nbytes, 1.0, times, f"stays dense: best sparse {best} only {gain:.2f}x (< {min_speedup:g}x)"
        )
    chosen = mods[best]
    return chosen, report(best, chosen.nbytes, gain, times, "", chosen)


def convert(
    model: torch.nn.Module,
    *,
    example_inputs: Any = None,
    batch: int = 1,
    formats: Iterable[str] = CHOICES,
    block: Any = None,
    min_speedup: float = 1.05,
    threads: int | None = None,
    inplace: bool = False,
    progress: bool = True,
    dtype: str = "float32",
    fuse: bool = True,
) -> torch.nn.Module:
    """A copy of ``model`` for fast CPU inference: every ``nn.Linear`` becomes a
    :class:`pysparse.nn.SparseLinear` and every ``nn.Conv2d`` a :class:`pysparse.nn.SparseConv2d`;
    other modules are untouched.

    The format of each layer (CSR, SELL, BSR (R, 1), N:M or dense) is chosen by timing the
    candidates on this CPU, on the layer's input shape (taken from one forward pass
    of ``example_inputs``, a tensor or a tuple of positional arguments; without it a
    Linear gets (batch, in_features) and a conv an assumed 32x32 image) with the
    leading dimension set to ``batch``. BSR candidates use the (R, 1) blocks the weight
    really has (``block`` forces one); N:M is tried when the weight is N:M along its
    inputs; SELL (the batch-1 layout of unstructured weights) is tried for Linears.
    A layer whose best sparse format is not ``min_speedup`` times faster than
    dense stays dense (as a pysparse module with a dense weight). Grouped and depthwise
    convolutions become dense ``SparseConv2d``; a conv with non-zero padding modes or
    asymmetric 'same' padding is left as ``nn.Conv2d``. Linears inside
    ``nn.MultiheadAttention`` are left alone (it reads their weights directly).

    ``threads`` is stored in the modules for the sparse kernels (None: pysparse's
    default, :func:`pysparse.set_num_threads`). The result is in eval mode, with
    every remaining parameter frozen (inference only), and carries the per-layer
    :class:`ConversionReport` as ``result.pysparse_report_`` (``print`` it).
    ``inplace=True`` converts ``model`` itself instead of a deep copy.

    ``dtype="int8"`` adds the int8 weight formats (``pysparse.formats.int8``: per-row weight
    scales, activations quantized per row inside the kernel) to every Linear's candidates;
    the report's ``dtype`` and ``quant_error`` columns say which layers went int8 and what
    that cost on the example input. Convolutions stay float32.

    A Hugging Face ``BertModel`` (``fuse=True``, ``threads=None``), or each one inside the model
    (a ``BertForSequenceClassification``'s ``bert``), then runs its whole forward as
    the runtime graph that ``ps.save`` writes (attention, layer norm, GELU and the epilogues fused
    in C++; :mod:`pysparse.fused`), once that graph reproduces the torch forward on the example
    inputs (token ids; a small padded batch without them); calls the graph does not compute run
    the torch modules. The report's ``forward`` line says which, and why. With ``threads=`` the
    model runs module by module (the graph runs on :func:`pysparse.set_num_threads`).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _checks.positive_int(batch, "batch")
    if isinstance(formats, str):
        formats = (formats,)
    formats = tuple(formats)
    bad = [f for f in formats if f not in CHOICES]
    if bad or not formats:
        raise ValueError(f"formats must be a non-empty subset of {CHOICES}, got {formats!r}")
    if block is not None:
        block = parse_block(block)
    _checks.positive_number(min_speedup, "min_speedup")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    _checks.threads(threads)

    start = time.perf_counter()
    target = model if inplace else copy.deepcopy(model)
    target.eval()
    layers = _targets(target)
    seen: dict[int, tuple[int, ...]] = {}
    # int8: each Linear's example input, for its quantization error
    kept: dict[int, Any] | None = {id(m): None for _, m, k in layers if k == "linear"} if dtype == "int8" else None
    if example_inputs is not None:
        if isinstance(example_inputs, torch.Tensor):
            example_inputs = (example_inputs,)
        seen = _input_shapes(target, [m for _, m, _ in layers], example_inputs, kept)

    bar: Any = layers
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(layers, desc="pysparse convert", unit="layer", leave=False)
        except ImportError:  # tqdm comes with the torch extra; without it, no bar
            pass
    new: dict[int, torch.nn.Module] = {}
    reports = []
    for name, m, kind in bar:
        mod, rep = _convert_layer(
            name, kind, m, seen.get(id(m)), traced=example_inputs is not None, batch=batch, formats=formats,
            block=block, min_speedup=min_speedup, threads=threads, dtype=dtype,
            example=None if kept is None else kept.get(id(m)),
        )
        if mod is not m:
            new[id(m)] = mod
        reports.append(rep)
    _replace(target, new)
    target = new.get(id(target), target)  # a bare Linear / Conv2d converts to its replacement
    for p in target.parameters():
        p.requires_grad_(False)
    forward = _fuse(target, example_inputs, fuse, threads, reports)
    isa = str(_core.get_isa()) + (f", int8 {_core.get_qisa()}" if dtype == "int8" else "")
    target.pysparse_report_ = ConversionReport(reports, batch, threads, isa, time.perf_counter() - start, forward)
    return target


def _fuse(model: torch.nn.Module, example_inputs: Any, fuse: bool, threads: int | None,
          reports: list[LayerReport]) -> str:
    """The report's forward line; installs the fused forward on each BertModel: the model itself,
    or the encoders inside it (a BertForSequenceClassification's ``bert``, a sentence-transformers
    module's ``auto_model``; pysparse.fused)."""
    berts = [(n, m) for n, m in model.named_modules() if bert.is_bert(m)]
    if not berts:
        return ""
    if not fuse:
        return "module by module (fuse=False)"
    if threads is not None:
        return "module by module (threads= given; the fused graph runs on pysparse.set_num_threads)"
    probe = None
    if example_inputs is not None:
        try:  # the example is the model's; an encoder inside it takes it when it holds only ids / masks
            probe = bert.bert_inputs(example_inputs)
        except (TypeError, ValueError):  # e.g. inputs_embeds or labels: the probe batch checks the graph
            probe = None
    int8 = any(r.dtype == "int8" for r in reports)
    lines = [fuse_bert(m, probe, INT8_RTOL if int8 else RTOL) for _, m in berts]
    return "; ".join(line if not n else f"{n}: {line}" for (n, _), line in zip(berts, lines))
