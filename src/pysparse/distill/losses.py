"""Distillation losses: soft targets (KDLoss) and intermediate features (FeatureDistiller).

KDLoss is Hinton et al.'s loss with the T^2 factor on the soft term. Dividing
logits by T scales the soft term's gradient w.r.t. the student logits by about
1/T^2 once T is large (d/dz KL = (p_s - p_t) / T, and p_s - p_t itself shrinks
like 1/T); multiplying by T^2 keeps that gradient on the scale of the hard
(cross-entropy) term for every T, so alpha means what it says. Distiller's KD
left the factor out; tests/distill/test_distill.py checks the scale.

FeatureDistiller is hint training (FitNets): chosen intermediate activations of
the student are matched to the teacher's (MSE), through a learned projection
(Linear on the last dim, or a 1x1 Conv2d for (N, C, H, W) features) where the
widths differ. The projections are parameters to train with the student.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import is_number, number

__all__ = ["KDLoss", "FeatureDistiller"]


def _check_logits(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> None:
    if not isinstance(student_logits, torch.Tensor) or not isinstance(teacher_logits, torch.Tensor):
        raise TypeError(
            "KDLoss takes tensors of logits (student, teacher), got "
            f"{type(student_logits).__name__} and {type(teacher_logits).__name__}"
        )
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} "
            "must have the same shape: both models must output the same classes"
        )
    if student_logits.dim() < 2:
        raise ValueError(
            f"logits must be (batch, classes[, ...]), got shape {tuple(student_logits.shape)}"
        )


class KDLoss(nn.Module):
    """alpha * T^2 * KL(p_teacher || p_student) + (1 - alpha) * CE(student, labels), batch mean.

    p = softmax(logits / T) over dim 1. ``temperature`` > 0; ``alpha`` in [0, 1]:
    1 is soft targets only (labels may be None), 0 is plain cross entropy.
    Call as ``loss(student_logits, teacher_logits, labels)``; the teacher logits
    are treated as constants (detached).
    """

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9) -> None:
        super().__init__()
        for name, v in (("temperature", temperature), ("alpha", alpha)):
            if not is_number(v):
                raise TypeError(f"{name} must be a number, got {type(v).__name__}")
        if not temperature > 0 or temperature == float("inf"):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1] (1 = soft targets only, 0 = labels only), got {alpha}")
        self.temperature = float(temperature)
        self.alpha = float(alpha)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, alpha={self.alpha}"

    def soft(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """T^2 * KL(p_teacher || p_student), mean over the batch (the soft term alone)."""
        _check_logits(student_logits, teacher_logits)
        t = self.temperature
        log_ps = F.log_softmax(student_logits / t, dim=1)
        log_pt = F.log_softmax(teacher_logits.detach() / t, dim=1)
        kl = F.kl_div(log_ps, log_pt, reduction="sum", log_target=True) / student_logits.shape[0]
        return t * t * kl

    def forward(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        _check_logits(student_logits, teacher_logits)
        if self.alpha < 1.0 and labels is None:
            raise ValueError(
                f"labels are needed when alpha < 1 (alpha={self.alpha}); pass alpha=1.0 for soft targets only"
            )
        total = student_logits.new_zeros(())
        if self.alpha > 0.0:
            total = total + self.alpha * self.soft(student_logits, teacher_logits)
        if self.alpha < 1.0:
            total = total + (1.0 - self.alpha) * F.cross_entropy(student_logits, labels)
        return total


def _feature_width(module: nn.Module) -> tuple[int, int] | None:
    """(width, rank) of a module's output when its type says so unambiguously:
    4 for (N, C, H, W) features (width C), 2 for (..., D) features (width D)."""
    if isinstance(module, nn.Linear):
        return module.out_features, 2
    if isinstance(module, nn.Embedding):
        return module.embedding_dim, 2
    if isinstance(module, nn.Conv2d):
        return module.out_channels, 4
    if isinstance(module, nn.BatchNorm2d):
        return module.num_features, 4
    return None


def _projection(s_width: int, t_width: int, ndim: int) -> nn.Module:
    if s_width == t_width:
        return nn.Identity()
    if ndim == 4:
        return nn.Conv2d(s_width, t_width, kernel_size=1, bias=False)
    return nn.Linear(s_width, t_width, bias=False)


class FeatureDistiller(nn.Module):
    """Hint (feature) distillation: MSE between chosen student and teacher activations.

    ``pairs`` maps student module names to teacher module names (as in
    ``model.named_modules()``), e.g. ``{"2": "4"}`` or ``[("layer1", "layer3")]``.
    Forward hooks capture each module's output; after both models have run on
    the same batch, :meth:`loss` returns ``weight * mean over pairs of MSE``
    and forgets the captured activations.

    Where the feature widths differ, a learned projection maps the student's
    feature to the teacher's width: a bias-free Linear on the last dim for
    (N, D) / (N, L, D) features, a 1x1 Conv2d for (N, C, H, W) features (so a
    3-D feature is read as (N, L, D); Conv1d outputs are not supported). Train
    its :meth:`parameters` with the student (``distill.fit`` does).

    Widths come from the module types (Linear, Conv2d, BatchNorm2d, Embedding); for
    anything else (e.g. a ReLU) pass ``example_input``, one batch both models
    accept, and the widths and ranks are measured on it.
    Call :meth:`remove` to take the hooks off.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        pairs: Mapping[str, str] | Iterable[tuple[str, str]],
        weight: float = 1.0,
        example_input: Any = None,
    ) -> None:
        super().__init__()
        if not isinstance(student, nn.Module) or not isinstance(teacher, nn.Module):
            raise TypeError("student and teacher must be torch.nn.Module instances")
        number(weight, "weight")
        items = list(pairs.items()) if isinstance(pairs, Mapping) else list(pairs)
        if not items:
            raise ValueError("pairs is empty: give at least one (student module name, teacher module name)")
        s_mods, t_mods = dict(student.named_modules()), dict(teacher.named_modules())
        for item in items:
            if not (isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(n, str) for n in item)):
                raise TypeError(f"each pair must be (student module name, teacher module name), got {item!r}")
            s_name, t_name = item
            for name, mods, who in ((s_name, s_mods, "student"), (t_name, t_mods, "teacher")):
                if name not in mods:
                    some = ", ".join(repr(n) for n in list(mods)[1:8])
                    raise ValueError(f"{who} has no module named {name!r}; names look like: {some}")
        self.pairs = [(s, t) for s, t in items]
        self.weight = float(weight)
        self._student_feats: dict[str, torch.Tensor] = {}
        self._teacher_feats: dict[str, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        for s_name, _ in self.pairs:
            self._handles.append(s_mods[s_name].register_forward_hook(self._saver(self._student_feats, s_name)))
        for _, t_name in self.pairs:
            self._handles.append(t_mods[t_name].register_forward_hook(self._saver(self._teacher_feats, t_name)))
        try:
            projections = self._build(student, teacher, s_mods, t_mods, example_input)
        except BaseException:
            self.remove()  # a failed constructor leaves no hooks behind
            raise
        self.projections = nn.ModuleList(projections)

    def _build(
        self,
        student: nn.Module,
        teacher: nn.Module,
        s_mods: dict[str, nn.Module],
        t_mods: dict[str, nn.Module],
        example_input: Any,
    ) -> list[nn.Module]:
        shapes = self._probe(student, teacher, example_input) if example_input is not None else None
        projections = []
        for i, (s_name, t_name) in enumerate(self.pairs):
            if shapes is not None:
                (s_w, s_nd), (t_w, t_nd) = shapes[i]
            else:
                s_info, t_info = _feature_width(s_mods[s_name]), _feature_width(t_mods[t_name])
                if s_info is None or t_info is None:
                    who = s_name if s_info is None else t_name
                    raise ValueError(
                        f"cannot tell the output width of module {who!r} from its type; "
                        "pass example_input= (one batch) so FeatureDistiller can measure it"
                    )
                (s_w, s_nd), (t_w, t_nd) = s_info, t_info
            if s_nd != t_nd:
                raise ValueError(
                    f"student {s_name!r} outputs {s_nd}-D features but teacher {t_name!r} outputs {t_nd}-D "
                    "(rank 4 is (N, C, H, W)); pair modules whose outputs have the same rank"
                )
            projections.append(_projection(s_w, t_w, s_nd))
        return projections

    @staticmethod
    def _saver(store: dict[str, torch.Tensor], name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"module {name!r} returned {type(output).__name__}; feature hints need a tensor output")
            store[name] = output

        return hook

    def _probe(self, student: nn.Module, teacher: nn.Module, x: Any) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        args = tuple(x) if isinstance(x, (tuple, list)) else (x,)
        modes = student.training, teacher.training
        student.eval()
        teacher.eval()
        try:
            with torch.no_grad():
                student(*args)
                teacher(*args)
        finally:
            student.train(modes[0])
            teacher.train(modes[1])
        out = []
        for s_name, t_name in self.pairs:
            got = []
            for name, store in ((s_name, self._student_feats), (t_name, self._teacher_feats)):
                if name not in store:
                    raise ValueError(f"module {name!r} did not run on example_input; pick a module on the forward path")
                f = store[name]
                if f.dim() < 2:
                    raise ValueError(
                        f"module {name!r} outputs shape {tuple(f.shape)}; features must be at least (N, D)"
                    )
                got.append((f.shape[1] if f.dim() == 4 else f.shape[-1], f.dim()))
            out.append((got[0], got[1]))
        self.clear()
        return out

    def clear(self) -> None:
        """Forget the captured activations (done by loss())."""
        self._student_feats.clear()
        self._teacher_feats.clear()

    def loss(self) -> torch.Tensor:
        """weight * mean over pairs of MSE(projection(student feature), teacher feature)."""
        try:
            terms = []
            for (s_name, t_name), proj in zip(self.pairs, self.projections):
                if s_name not in self._student_feats or t_name not in self._teacher_feats:
                    raise RuntimeError(
                        f"no activation captured for pair ({s_name!r}, {t_name!r}): run the student and the "
                        "teacher on the batch before calling loss()"
                    )
                s, t = self._student_feats[s_name], self._teacher_feats[t_name].detach()
                p = proj(s)
                if p.shape != t.shape:
                    raise ValueError(
                        f"projected student feature {s_name!r} has shape {tuple(p.shape)} but teacher feature "
                        f"{t_name!r} has {tuple(t.shape)}; pair modules with the same spatial size"
                    )
                terms.append(F.mse_loss(p, t))
            return self.weight * torch.stack(terms).mean()
        finally:
            self.clear()

    def forward(self) -> torch.Tensor:  # the nn.Module spelling of loss()
        return self.loss()

    def remove(self) -> None:
        """Take the forward hooks off both models."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.clear()

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """The projection parameters to optimise with the student."""
        return (p for p in self.parameters() if p.requires_grad)
