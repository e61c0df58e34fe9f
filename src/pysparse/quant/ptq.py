"""Calibration passes and the per-layer quantization report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch

from .. import _table
from ..formats import BSRInt8Matrix, DenseInt8Matrix, quantize_rows
from ..formats.bsr_int8 import MAX_INT8_BLOCK_DENSITY, block_density
from ..ops import linear
from .observers import MinMaxObserver, Observer


def fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    """The weight after int8 per-output-channel quantization and back (zeros stay zero)."""
    w2 = w.detach().to(torch.float32).reshape(w.shape[0], -1).cpu().numpy()
    q, s = quantize_rows(w2)
    return torch.from_numpy((q.astype(np.float32) * s[:, None]).astype(np.float32)).reshape(w.shape)


def _linears(model: torch.nn.Module) -> list[tuple[str, torch.nn.Linear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]


def _run(model: torch.nn.Module, batches: Iterable[Any]) -> None:
    with torch.no_grad():
        for b in batches:
            if isinstance(b, dict):
                model(**b)
            elif isinstance(b, (tuple, list)):
                model(*b)
            else:
                model(b)


def _with_inputs(model: torch.nn.Module, batches: Iterable[Any], fn: Any) -> None:
    """Runs the batches, calling fn(name, module, input) for every Linear's input."""
    handles = []
    for name, m in _linears(model):
        def hook(mod: torch.nn.Module, args: tuple[Any, ...], name: str = name) -> None:
            if args and isinstance(args[0], torch.Tensor):
                fn(name, mod, args[0].detach().to(torch.float32))
        handles.append(m.register_forward_pre_hook(hook))
    was_training = model.training
    model.eval()
    try:
        _run(model, batches)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)


def calibrate(
    model: torch.nn.Module, batches: Iterable[Any], observer: Observer | None = None
) -> dict[str, Observer]:
    """One observer per ``nn.Linear`` (a fresh copy of ``observer``, default min-max), fed that
    layer's inputs over ``batches`` (tensors, tuples of positional arguments or kwargs dicts)."""
    proto = observer if observer is not None else MinMaxObserver()
    if not isinstance(proto, Observer):
        raise TypeError(f"observer must be a pysparse.quant.Observer, got {type(proto).__name__}")
    obs = {name: proto.fresh() for name, _ in _linears(model)}
    _with_inputs(model, batches, lambda name, m, x: obs[name].observe(x.numpy()))
    return obs


@dataclass
class LayerQuantReport:
    name: str
    shape: tuple[int, int]
    sparsity: float  # measured: exact zeros / weights
    format: str  # the int8 format the dynamic error was measured with
    w_scale_min: float  # per-channel weight scales (0-rows excluded from the min)
    w_scale_max: float
    act_scale: float  # the observer's static per-tensor scale
    error_dynamic: float  # relative L2 of the layer output: int8 kernels (dynamic activations) vs float32
    error_static: float  # the same with the static activation scale (simulated)


@dataclass
class QuantReport:
    layers: list[LayerQuantReport]

    def __str__(self) -> str:
        head = ("layer", "weight", "sparsity", "format", "w scales", "act scale", "err dynamic", "err static")
        rows = [
            (
                r.name, f"{r.shape[0]}x{r.shape[1]}", f"{r.sparsity:.1%}", r.format,
                f"{r.w_scale_min:.2e}..{r.w_scale_max:.2e}", f"{r.act_scale:.2e}",
                f"{r.error_dynamic:.2e}", f"{r.error_static:.2e}",
            )
            for r in self.layers
        ]
        return "\n".join(["pysparse quant: int8 per-channel weights", *_table.render(head, rows)])


def _rel(y: np.ndarray, ref: np.ndarray) -> float:
    den = float(np.linalg.norm(ref))
    num = float(np.linalg.norm(y - ref))
    return num / den if den > 0 else num


def report(
    model: torch.nn.Module, batches: Iterable[Any], observers: dict[str, Observer] | None = None
) -> QuantReport:
    """Per ``nn.Linear``: sparsity, weight-scale range, static activation scale and the output
    error of int8 on ``batches`` (list them: they are run once more; ``observers`` from
    :func:`calibrate`, default min-max observers calibrated on the same batches)."""
    batches = list(batches)
    obs = observers if observers is not None else calibrate(model, batches)
    mods = dict(_linears(model))
    packed: dict[str, Any] = {}
    sums: dict[str, list[float]] = {name: [0.0, 0.0, 0.0] for name in mods}  # |ref|^2, |dyn-ref|^2, |st-ref|^2
    for name, m in mods.items():
        w2 = m.weight.detach().to(torch.float32).reshape(m.out_features, -1).numpy()
        sparse = block_density(w2, 8) <= MAX_INT8_BLOCK_DENSITY
        packed[name] = BSRInt8Matrix.from_dense(w2) if sparse else DenseInt8Matrix.from_dense(w2)

    def layer(name: str, m: torch.nn.Module, x: torch.Tensor) -> None:
        if name not in obs:
            raise ValueError(f"no observer for layer {name!r}; calibrate the same model")
        x2 = np.ascontiguousarray(x.reshape(-1, m.in_features).numpy())
        b = None if m.bias is None else m.bias.detach().to(torch.float32).numpy()
        w = m.weight.detach().to(torch.float32).numpy().astype(np.float64)
        ref = x2.astype(np.float64) @ w.T + (0 if b is None else b)
        dyn = linear(x2, packed[name], b).astype(np.float64)
        s = obs[name].scale()
        xq = np.clip(np.rint(x2 / s), -127, 127) * s if s > 0 else np.zeros_like(x2, dtype=np.float64)
        st = xq @ packed[name].to_dense().astype(np.float64).T + (0 if b is None else b)
        acc = sums[name]
        acc[0] += float(np.sum(ref**2))
        acc[1] += float(np.sum((dyn - ref) ** 2))
        acc[2] += float(np.sum((st - ref) ** 2))

    _with_inputs(model, batches, layer)
    out = []
    for name, m in mods.items():
        w2 = m.weight.detach().to(torch.float32).reshape(m.out_features, -1).numpy()
        scales = packed[name].scales
        live = scales[scales > 0]
        den = np.sqrt(sums[name][0]) or 1.0
        out.append(LayerQuantReport(
            name, (int(w2.shape[0]), int(w2.shape[1])), float(1 - np.count_nonzero(w2) / max(1, w2.size)),
            packed[name].label, float(live.min()) if live.size else 0.0, float(scales.max(initial=0.0)),
            obs[name].scale(), float(np.sqrt(sums[name][1]) / den), float(np.sqrt(sums[name][2]) / den),
        ))
    return QuantReport(out)
