"""Importance criteria: which weights matter, as small callables.

A criterion is any callable ``(module, name) -> scores`` that returns a tensor
shaped like ``getattr(module, name)`` (the weight as the layer sees it, masks
applied); higher means more important. Patterns average the scores over each
group (a block, a channel), so a criterion never needs to know the pattern.

- ``"magnitude"``: |w| (L1 of a group).
- ``"l2"``: w^2, so a group's score is its mean square, i.e. its L2 norm
  normalised by the group size (edge blocks compare fairly with full ones).
- ``"taylor"``: first-order Taylor saliency |w * dL/dw|, summed over every
  backward pass since the masks last changed (Molchanov et al.).
- ``"fisher"``: w^2 * sum of (dL/dw)^2 over those backward passes: the
  diagonal empirical Fisher, i.e. an OBD/OBS-style second-order saliency.

- ``"bn_scale"``: |gamma| of the BatchNorms in a channel group (network slimming);
  only for graph channel pruning (``Pruner(..., pattern="channel", graph=True)``).
- ``Activation.calibrate(model, batches)``: |w| * ||x_j||_2, the weight times the L2
  norm of the input feature it multiplies over calibration batches (Wanda, Sun et al.
  2023). No gradients, one pass over a few batches; the strong one-shot choice for
  transformers, whose few large-activation features make |w| alone misjudge weights.
  Its scores carry each layer's activation scale, so rank them with ``scope="layer"``.

With graph channel pruning a group's score is the criterion summed over every
member of the group (output rows, input columns, depthwise rows), Torch-Pruning's
group importance.

Taylor and Fisher need gradients: the pruner hands their ``accumulate`` to each
weight's mask (``masks.py``), which records the statistic with a hook while the
model trains, so call ``loss.backward()`` at least once before the step that
prunes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Callable

import torch
from torch import nn

from .. import _batches
from .masks import mask_of

__all__ = ["Criterion", "Magnitude", "L2", "Taylor", "Fisher", "BNScale", "Activation", "CRITERIA",
           "get_criterion"]

Criterion = Callable[[nn.Module, str], torch.Tensor]


class Magnitude:
    """|w|: the classic magnitude criterion."""

    needs_grad = False

    def __call__(self, module: nn.Module, name: str) -> torch.Tensor:
        return getattr(module, name).detach().abs()

    def __repr__(self) -> str:
        return "Magnitude()"


class L2:
    """w^2: a group's mean is its squared L2 norm over its size."""

    needs_grad = False

    def __call__(self, module: nn.Module, name: str) -> torch.Tensor:
        return getattr(module, name).detach().square()

    def __repr__(self) -> str:
        return "L2()"


def _accumulated(module: nn.Module, name: str, what: str) -> torch.Tensor:
    """The gradient statistic the pruner's mask recorded for ``module.name``."""
    mask = mask_of(module, name)
    if mask is None or mask.track != what:
        raise ValueError(
            f"the {what} criterion needs gradients recorded by a pysparse Pruner built with "
            f"criterion={what!r}; use it through prune.Pruner(..., criterion={what!r})"
        )
    if mask.backward_passes == 0 or getattr(mask, "accumulated", None) is None:
        raise ValueError(
            f"the {what} criterion needs gradients, but no backward pass ran since the masks last "
            "changed; call loss.backward() (and optimizer.step()) before pruner.step()"
        )
    return mask.accumulated


class Taylor:
    """|w * dL/dw| summed over the backward passes since the last mask update."""

    needs_grad = True
    track = "taylor"

    @staticmethod
    def accumulate(w: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return (w * grad).abs()

    def __call__(self, module: nn.Module, name: str) -> torch.Tensor:
        return _accumulated(module, name, "taylor")

    def __repr__(self) -> str:
        return "Taylor()"


class Fisher:
    """w^2 * sum (dL/dw)^2: diagonal empirical Fisher (OBD-style) saliency."""

    needs_grad = True
    track = "fisher"

    @staticmethod
    def accumulate(w: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return grad.square()

    def __call__(self, module: nn.Module, name: str) -> torch.Tensor:
        acc = _accumulated(module, name, "fisher")
        return getattr(module, name).detach().square() * acc

    def __repr__(self) -> str:
        return "Fisher()"


class BNScale:
    """|gamma| of a channel group's BatchNorms (Liu et al.'s network slimming); graph channel pruning only."""

    needs_grad = False
    members = "bn"  # the group scorer sums this criterion over BatchNorm members only

    def __call__(self, module: nn.Module, name: str) -> torch.Tensor:
        return getattr(module, name).detach().abs()

    def __repr__(self) -> str:
        return "BNScale()"


class Activation:
    """|w| * ||x_j||_2: each weight times the L2 norm of its input feature over calibration batches
    (Wanda). Build it with :meth:`calibrate`; it scores the Linear and Conv2d layers it saw run.

    A conv's input feature is its input channel (norm over batch, height and width), shared by
    every tap of the kernel. Masks applied while calibrating are the model's own: calibrate the
    model as it will be pruned."""

    needs_grad = False

    def __init__(self, norms: dict[nn.Module, torch.Tensor]) -> None:
        self.norms = norms

    @classmethod
    def calibrate(cls, model: nn.Module, batches: Iterable[Any], *, modules: Iterable[nn.Module] | None = None,
                  progress: bool = True) -> Activation:
        """Run ``model`` on ``batches`` (dicts, (inputs, labels) or (inputs,), as ``distill.fit`` takes
        them) in eval mode without gradients and record, per input feature of every Linear and
        Conv2d (or of ``modules``), the L2 norm of what it received; padding tokens (where the
        batch's attention_mask is 0) do not count."""
        from tqdm.auto import tqdm

        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(batches, (torch.Tensor, str)) or not isinstance(batches, Iterable):
            raise TypeError(f"batches must be a DataLoader or a list of batches, got {type(batches).__name__}")
        layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))] if modules is None \
            else list(modules)
        inside = {id(m) for m in model.modules()}
        for m in layers:
            if not isinstance(m, (nn.Linear, nn.Conv2d)) or id(m) not in inside:
                raise ValueError(f"modules must be Linear or Conv2d layers of the model, got {type(m).__name__}")
        if not layers:
            raise ValueError("the model has no Linear or Conv2d layer to calibrate")
        sums: dict[nn.Module, torch.Tensor] = {}
        mask: list[torch.Tensor | None] = [None]

        def hook(module: nn.Module, args: tuple, _out: Any) -> None:
            x = args[0].detach()
            if isinstance(module, nn.Conv2d):
                sq = x.to(torch.float64).square().sum(dim=(0, 2, 3)) if x.dim() == 4 else \
                    x.to(torch.float64).square().sum(dim=(1, 2))
            else:
                sq = _batches.token_rows(x, mask[0]).square().sum(dim=0)
            sums[module] = sums[module] + sq if module in sums else sq

        handles = [m.register_forward_hook(hook) for m in layers]
        params = list(model.parameters())
        device = params[0].device if params else torch.device("cpu")
        was_training = model.training
        model.eval()
        seen = False
        try:
            with torch.no_grad():
                for batch in tqdm(batches, desc="activation norms", disable=not progress, leave=False):
                    b = _batches.moved(_batches.split_batch(batch, "Activation.calibrate"), device)
                    mask[0] = _batches.attention_mask(b)
                    _batches.run(model, b)
                    seen = True
        finally:
            model.train(was_training)
            for h in handles:
                h.remove()
        if not seen:
            raise ValueError("batches is empty: Activation.calibrate needs at least one batch")
        missing = [type(m).__name__ for m in layers if m not in sums]
        if len(missing) == len(layers):
            raise ValueError("no Linear or Conv2d layer ran on the batches; check the model's inputs")
        return cls({m: v.sqrt().to(torch.float32) for m, v in sums.items()})

    def __call__(self, module: nn.Module, name: str) -> torch.Tensor:
        norm = self.norms.get(module)
        if norm is None:
            raise ValueError(
                f"this {type(module).__name__} did not run while Activation.calibrate watched the model "
                "(a copy made after calibrating, or a layer the batches never reach); calibrate the "
                "model that is pruned, on batches that reach every pruned layer"
            )
        w = getattr(module, name).detach()
        norm = norm.to(w.device)
        if isinstance(module, nn.Conv2d) and w.dim() == 4:
            groups = module.groups
            per = norm.reshape(groups, -1).repeat_interleave(w.shape[0] // groups, dim=0)  # (out, in / groups)
            return w.abs() * per[:, :, None, None]
        if w.dim() != 2 or w.shape[1] != norm.numel():
            raise ValueError(f"Activation scores Linear and Conv2d weights; {name!r} has shape {tuple(w.shape)}")
        return w.abs() * norm[None, :]

    def __repr__(self) -> str:
        return f"Activation({len(self.norms)} layers)"


CRITERIA: dict[str, type] = {"magnitude": Magnitude, "l2": L2, "taylor": Taylor, "fisher": Fisher,
                             "bn_scale": BNScale}

# How each recorded statistic folds one backward pass in (used by the mask's hook).
ACCUMULATORS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "taylor": Taylor.accumulate,
    "fisher": Fisher.accumulate,
}


def get_criterion(spec: Any) -> Criterion:
    """A criterion from its name (see ``CRITERIA``) or any callable ``(module, name) -> scores``."""
    if isinstance(spec, str):
        try:
            return CRITERIA[spec.lower()]()
        except KeyError:
            raise ValueError(
                f"unknown criterion {spec!r}; use one of {sorted(CRITERIA)} "
                "or a callable (module, name) -> scores shaped like the weight"
            ) from None
    if callable(spec):
        return spec
    raise TypeError(
        f"criterion must be a name ({sorted(CRITERIA)}) or a callable (module, name) -> scores, "
        f"got {type(spec).__name__}"
    )


def needs_grad(criterion: Criterion) -> str | None:
    """'taylor' / 'fisher' when the criterion needs recorded gradients, else None."""
    track = getattr(criterion, "track", None)
    return track if getattr(criterion, "needs_grad", False) and track in ACCUMULATORS else None
