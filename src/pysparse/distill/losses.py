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

For transformers, pairs may be block indices of the two models' stacks (a BERT
encoder's layers, see ``pysparse._stack``): ``{0: 1, 1: 3, 2: 5}`` matches a
3-layer student's layers to a 6-layer teacher's, the layer map
``fold.drop_layers`` returns. A block returning a tuple is read as its first
element (the hidden states), and with the batch's ``attention_mask`` the MSE is
taken over real tokens only (padding does not count).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import _stack
from .._batches import first_tensor
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
    """(width, rank) of a module's output when its type says so: 4 for (N, C, H, W)
    features (width C), 2 for (..., D) features (width D); a block without convolutions
    outputs the width of its last Linear / LayerNorm (a BERT layer: its output LayerNorm)."""
    if isinstance(module, nn.Linear):
        return module.out_features, 2
    if isinstance(module, nn.Embedding):
        return module.embedding_dim, 2
    if isinstance(module, nn.Conv2d):
        return module.out_channels, 4
    if isinstance(module, nn.BatchNorm2d):
        return module.num_features, 4
    if isinstance(module, nn.LayerNorm):
        return module.normalized_shape[-1], 2
    # A block (a transformer layer, an MLP block): the width of its last Linear / LayerNorm.
    last = [m for m in module.modules() if isinstance(m, (nn.Linear, nn.LayerNorm)) and m is not module]
    if last and not any(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules()):
        return _feature_width(last[-1])
    return None


def masked_mse(p: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """MSE over the (N, L, D) positions where ``mask`` (N, L) is nonzero; plain MSE otherwise."""
    if mask is None or p.dim() != 3 or tuple(mask.shape) != tuple(p.shape[:2]):
        return F.mse_loss(p, t)
    m = (mask != 0).to(p.dtype).unsqueeze(-1)
    count = m.sum() * p.shape[-1]
    return ((p - t).square() * m).sum() / count.clamp(min=1.0)


def _projection(s_width: int, t_width: int, ndim: int) -> nn.Module:
    if s_width == t_width:
        return nn.Identity()
    if ndim == 4:
        return nn.Conv2d(s_width, t_width, kernel_size=1, bias=False)
    return nn.Linear(s_width, t_width, bias=False)


def layer_pairs(
    student: nn.Module, teacher: nn.Module, pairs: Mapping[Any, Any] | Iterable[tuple[Any, Any]]
) -> list[tuple[str, str]]:
    """(student module name, teacher module name) pairs from names or block indices of
    the two models' stacks; ValueError for a name or index that does not exist."""
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, (Mapping, Iterable)):
        raise TypeError(f"pairs must be a dict or a list of (student, teacher) pairs, got {type(pairs).__name__}")
    items = list(pairs.items()) if isinstance(pairs, Mapping) else list(pairs)
    if not items:
        raise ValueError("pairs is empty: give at least one (student module name, teacher module name)")
    for item in items:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise TypeError(f"each pair must be (student module name, teacher module name), got {item!r}")
    s_names = _stack.resolve_blocks(student, [s for s, _ in items], "student")
    t_names = _stack.resolve_blocks(teacher, [t for _, t in items], "teacher")
    return list(zip(s_names, t_names))


class FeatureDistiller(nn.Module):
    """Hint (feature) distillation: MSE between chosen student and teacher activations.

    ``pairs`` maps student module names to teacher module names (as in
    ``model.named_modules()``), e.g. ``{"2": "4"}`` or ``[("layer1", "layer3")]``,
    or block indices of the two stacks (``{0: 1, 1: 3, 2: 5}``: the layer map of a
    student with fewer layers; ``fold.drop_layers`` returns one).
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
        items = layer_pairs(student, teacher, pairs)
        s_mods, t_mods = dict(student.named_modules()), dict(teacher.named_modules())
        self.pairs = items
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
            t = first_tensor(output)
            if t is None:
                raise TypeError(f"module {name!r} returned {type(output).__name__}; feature hints need a tensor output")
            store[name] = t

        return hook

    def _probe(self, student: nn.Module, teacher: nn.Module, x: Any) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        kwargs = dict(x) if isinstance(x, Mapping) else {}
        args = () if kwargs else tuple(x) if isinstance(x, (tuple, list)) else (x,)
        modes = student.training, teacher.training
        student.eval()
        teacher.eval()
        try:
            with torch.no_grad():
                student(*args, **kwargs)
                teacher(*args, **kwargs)
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

    def loss(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        """weight * mean over pairs of MSE(projection(student feature), teacher feature).

        ``mask``: the batch's (N, L) attention mask; (N, L, D) features then count only
        the positions where it is nonzero."""
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
                terms.append(masked_mse(p, t, mask))
            return self.weight * torch.stack(terms).mean()
        finally:
            self.clear()

    def forward(self, *outputs: Any, batch: Mapping[str, Any] | None = None) -> torch.Tensor:
        """The nn.Module spelling of loss(); as a ``distill.fit`` loss term it is called
        ``(student_out, teacher_out, labels, batch=...)`` and reads the batch's attention mask."""
        mask = batch.get("attention_mask") if isinstance(batch, Mapping) else None
        return self.loss(mask if isinstance(mask, torch.Tensor) else None)

    def remove(self) -> None:
        """Take the forward hooks off both models."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.clear()

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """The projection parameters to optimise with the student."""
        return (p for p in self.parameters() if p.requires_grad)
