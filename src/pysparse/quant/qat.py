"""Quantization-aware training: the int8 kernels' rounding in the forward, straight through in the backward.

``prepare_qat(model)`` makes every ``nn.Linear`` (or the ``modules`` given) compute
``linear(fq_x(x), fq_w(W), b)`` where ``fq_w`` is the int8 per-output-row quantization of
the weight and back (``pysparse.formats.quantize_rows``: scale = max|w_row| / 127, round half
to even; zeros stay zero, so a pruner's mask survives) and ``fq_x`` the kernels' dynamic
per-row quantization of the input (``pysparse.formats.int8``'s contract, per token). The
backward treats both roundings as the identity (straight-through estimator: the gradient
of ``w + (fq(w) - w).detach()`` is the gradient of ``w``), so the float weights keep learning
while the loss sees what the int8 model will compute. The weight is read through
``module.weight``, so a pruner's parametrization (mask) applies first.

It runs inside ``distill.fit`` beside the pruner (``fit(..., pruner=pruner, qat=qat)``):
``qat.step()`` after every optimizer step counts steps, and fake quantization is on from
step ``begin`` (e.g. once the gradual pruning schedule has ended). Afterwards
``qat.remove()`` restores the plain Linears (the float weights, now trained for int8), then
``pruner.squash()`` and ``ps.convert(model, dtype="int8")``: the converted int8 model
computes what the fake-quant forward computed, up to float32 summation order.
"""

from __future__ import annotations

import types
from typing import Any, Iterable

import torch
import torch.nn.functional as F

# Below this row maximum the kernels count an activation row as zero (formats.int8).
_TINY = 2.0**-100


def fake_quant_rows(w: torch.Tensor) -> torch.Tensor:
    """int8 per-row (last dim) symmetric quantization and back, straight-through gradient.

    Computed in float64 like ``quantize_rows``, so the rounding is the packed weight's."""
    w64 = w.detach().to(torch.float64)
    amax = w64.abs().amax(dim=-1, keepdim=True)
    scale = (amax.to(torch.float32) / 127.0).to(torch.float64)  # the float32 scale the format stores
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.clamp(torch.round(w64 / safe), -127, 127) * scale
    return w + (q.to(w.dtype) - w).detach()


def fake_quant_activations(x: torch.Tensor) -> torch.Tensor:
    """The kernels' dynamic per-row (last dim) activation quantization and back, straight through.

    ``q = clip(rint(x * (127 / max|x_row|)), -127, 127)``, value ``q * max / 127``; rows whose
    max is below 2**-100 are zero."""
    xd = x.detach().to(torch.float32)
    amax = xd.abs().amax(dim=-1, keepdim=True)
    live = amax >= _TINY
    safe = torch.where(live, amax, torch.ones_like(amax))
    q = torch.clamp(torch.round(xd * (127.0 / safe)), -127, 127)
    xq = torch.where(live, q * (safe / 127.0), torch.zeros_like(xd))
    return x + (xq.to(x.dtype) - x).detach()


def _qat_forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    qat: QAT = self._pysparse_qat
    if not qat.active:
        return F.linear(x, self.weight, self.bias)
    if qat.activations:
        x = fake_quant_activations(x)
    return F.linear(x, fake_quant_rows(self.weight), self.bias)


class QAT:
    """Fake-quant int8 on the given Linears; ``step()`` once per optimizer step (``distill.fit``
    does); active from step ``begin``; ``remove()`` puts the plain forwards back."""

    def __init__(self, model: torch.nn.Module, *, begin: int = 0, activations: bool = True,
                 modules: Iterable[torch.nn.Module] | None = None) -> None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(begin, bool) or not isinstance(begin, int) or begin < 0:
            raise ValueError(f"begin must be an int >= 0 (the optimizer step fake-quant starts at), got {begin!r}")
        mods = [m for m in model.modules() if isinstance(m, torch.nn.Linear)] if modules is None else list(modules)
        for m in mods:
            if not isinstance(m, torch.nn.Linear):
                raise TypeError(f"QAT quantizes nn.Linear layers (the int8 kernels' kind), got {type(m).__name__}")
            if hasattr(m, "_pysparse_qat"):
                raise ValueError("a Linear already has QAT attached; remove() it first")
        if not mods:
            raise ValueError("the model has no nn.Linear to quantize")
        self.begin = begin
        self.activations = bool(activations)
        self.modules_ = mods
        self.steps_ = 0
        for m in mods:
            m._pysparse_qat = self
            m.forward = types.MethodType(_qat_forward, m)

    @property
    def active(self) -> bool:
        return self.steps_ >= self.begin

    def step(self) -> bool:
        """Count one optimizer step; False: the weights did not change (nothing for ranks to sync)."""
        self.steps_ += 1
        return False

    def remove(self) -> None:
        """The plain Linears again (their float weights as trained)."""
        for m in self.modules_:
            if getattr(m, "_pysparse_qat", None) is self:
                del m._pysparse_qat
                del m.forward
        self.modules_ = []


def prepare_qat(model: torch.nn.Module, **kwargs: Any) -> QAT:
    """``QAT(model, **kwargs)``: fake-quant int8 on every Linear of ``model``."""
    return QAT(model, **kwargs)
