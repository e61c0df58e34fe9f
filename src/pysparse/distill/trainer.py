"""distill.fit: train a (pruned) student against a frozen teacher, the pruner stepping inside.

One loop, like an optimiser's: forward the batch through the teacher (no_grad,
eval mode) and the student, loss, backward, optimizer step, ``pruner.step()``.
Every epoch ends with a row of history: mean loss, train accuracy, validation
accuracy, the *measured* sparsity of the student's Linear/Conv weights, time.

Data parallel: run the script under ``torchrun --nproc_per_node=N`` and call
``torch.distributed.init_process_group("gloo")`` before ``fit``. fit then wraps
the student in DistributedDataParallel (gradients averaged over processes,
weights broadcast from rank 0 at the start), keeps feature-projection weights in
step the same way, copies rank 0's weights, masks and buffers to every rank
after each pruner step that may have changed them (``step()`` returning
anything but False), so the ranks prune alike, sums the history's counts over
all ranks, and shows progress on rank 0 only. Give the training loader a
``torch.utils.data.DistributedSampler`` so each process sees its own share of
the data (fit warns if it does not, and calls ``set_epoch`` on it every epoch).
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._batches import moved, run, split_batch
from .._checks import count, number
from .._table import render
from .losses import FeatureDistiller, KDLoss

__all__ = ["History", "fit", "layer_sparsity", "measured_sparsity"]

# torch's dropout layers by their public names (their common base class is private)
_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)

LossFn = Callable[[torch.Tensor, "torch.Tensor | None", torch.Tensor], torch.Tensor]


def measured_sparsity(model: nn.Module) -> float:
    """Fraction of exact zeros over the weights of every Linear and Conv layer of ``model``."""
    zeros = total = 0
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)):
            w = m.weight.detach()
            zeros += int((w == 0).sum())
            total += w.numel()
    return zeros / total if total else 0.0


def _wants_batch(fn: Any) -> bool:
    """Whether a loss takes the batch's keyword inputs (a ``batch`` parameter or ``**kwargs``;
    for an nn.Module, of its forward: Module.__call__ itself takes **kwargs)."""
    try:
        params = inspect.signature(fn.forward if isinstance(fn, nn.Module) else fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "batch" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _loss_terms(loss: Any, teacher: nn.Module | None) -> list[tuple[str, Callable[..., torch.Tensor], bool]]:
    """[(name, loss, takes the batch)] from one loss, a list of them or a {name: loss} dict."""
    if loss is None:
        fn = KDLoss() if teacher is not None else (lambda out, _t, labels: _cross_entropy(out, labels))
        return [("kd" if teacher is not None else "ce", fn, False)]
    if isinstance(loss, Mapping):
        items = list(loss.items())
    elif isinstance(loss, (list, tuple)):
        items = []
        for fn in loss:
            base = fn.__name__ if inspect.isfunction(fn) else type(fn).__name__
            name, k = base, 2
            while name in {n for n, _ in items}:
                name, k = f"{base}{k}", k + 1
            items.append((name, fn))
    else:
        return [("loss", loss, _wants_batch(loss))]
    if not items:
        raise ValueError("loss is an empty list: give at least one loss")
    for name, fn in items:
        if not callable(fn):
            raise TypeError(f"loss term {name!r} is not callable as loss(student_out, teacher_out, labels)")
    return [(str(name), fn, _wants_batch(fn)) for name, fn in items]


def _cross_entropy(out: Any, labels: Any) -> torch.Tensor:
    if labels is None:
        raise ValueError("training without a teacher needs labels; give (inputs, labels) batches or a loss=")
    return F.cross_entropy(out, labels)


class History(list):
    """What ``distill.fit`` returns: the list of per-epoch rows, plus the run's report.

    ``layers_``: [(layer name, measured sparsity)] of the student's Linear / Conv
    layers at the end; ``str(history)`` is the report: one line per epoch (losses,
    sparsity, quality figures when ``evaluate=`` gave some), then the per-layer
    sparsity. It is a list, so code that indexes rows keeps working."""

    layers_: list[tuple[str, float]]

    def __init__(self) -> None:
        super().__init__()
        self.layers_ = []

    def __str__(self) -> str:
        keys: list[str] = []
        extra: list[str] = []
        for row in self:
            for k, v in row.items():
                if k not in ("epoch", "losses", "quality") and (v is None or isinstance(v, (int, float))):
                    if k not in keys:
                        keys.append(k)
            for group in ("losses", "quality"):
                for k in row.get(group) or {}:
                    if k not in extra:
                        extra.append(k)

        def cell(v: Any) -> str:
            return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)

        rows = []
        for row in self:
            more = {**(row.get("losses") or {}), **(row.get("quality") or {})}
            rows.append([row["epoch"], *(cell(row.get(k)) for k in keys), *(cell(more.get(k)) for k in extra)])
        lines = render(["epoch", *keys, *extra], rows)
        if self.layers_:
            lines += ["", *render(["layer", "sparsity"], [[n, f"{v:.3f}"] for n, v in self.layers_])]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return list.__repr__(self)


def layer_sparsity(model: nn.Module) -> list[tuple[str, float]]:
    """[(name, fraction of exact zeros)] of every Linear and Conv layer's weight, in model order."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)):
            w = m.weight.detach()
            out.append((name, float((w == 0).sum()) / max(w.numel(), 1)))
    return out


def _correct(out: Any, labels: Any) -> int | None:
    """Number of argmax hits, or None when the output/labels are not (N, C) / (N,) classes."""
    if not isinstance(out, torch.Tensor) or not isinstance(labels, torch.Tensor):
        return None
    if out.dim() != 2 or labels.dim() != 1 or labels.dtype.is_floating_point or out.shape[0] != labels.shape[0]:
        return None
    return int((out.argmax(1) == labels).sum())


def _dist_ready() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _allsum(values: list[float]) -> list[float]:
    """Sum a few numbers over all ranks (a no-op when not distributed)."""
    if not _dist_ready():
        return values
    t = torch.tensor(values, dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return t.tolist()


def _sync_from_rank0(module: nn.Module) -> None:
    """Make every rank's weights, masks and buffers rank 0's.

    A pruner decides on each rank; one that reads local state can decide
    differently, and the ranks would drift apart. Rank 0's decision wins.
    (``prune.Pruner`` averages its Taylor / Fisher statistics over the ranks
    before deciding, so its ranks agree already; this keeps any pruner safe.)
    """
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            torch.distributed.broadcast(t.data, src=0)


def _total_steps(epochs: int, n_batches: int | None, max_steps: int | None) -> int | None:
    """The optimizer steps the run will take, when they are known before it starts."""
    total = None if n_batches is None else epochs * n_batches
    if max_steps is not None:
        total = max_steps if total is None else min(total, max_steps)
    return total


def _lr_factor(schedule: Any, warmup: int, total: int | None) -> Callable[[int], float] | None:
    """The LambdaLR factor for ``fit``'s ``lr_schedule``/``warmup``; None when the rate stays constant."""
    names = ("constant", "linear", "cosine")
    if isinstance(schedule, str):
        if schedule not in names:
            raise ValueError(f"lr_schedule must be one of {names} or a callable (step, total_steps) -> factor, "
                             f"got {schedule!r}")
        if schedule == "constant" and warmup == 0:
            return None
    elif not callable(schedule):
        raise TypeError(f"lr_schedule must be one of {names} or a callable (step, total_steps) -> factor, "
                        f"got {type(schedule).__name__}")
    if total is None and (warmup or schedule != "constant"):
        raise ValueError(
            "lr_schedule/warmup need the run's length: pass max_steps, or a train_loader with len()")
    if total is not None and warmup >= total and schedule != "constant":
        raise ValueError(f"warmup ({warmup} steps) must be shorter than the run ({total} steps) for a decaying "
                         "lr_schedule")
    span = None if total is None else max(1, total - warmup)

    def factor(step: int) -> float:  # step: optimizer steps taken so far (LambdaLR's epoch counter)
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        t = step - warmup
        if schedule == "linear":
            return max(0.0, 1.0 - t / span)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(t, span) / span))
        f = schedule(t, span)
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f) or f < 0:
            raise ValueError(f"lr_schedule({t}, {span}) returned {f!r}; it must return a finite factor >= 0")
        return float(f)

    return factor


def _check_args(student: Any, teacher: Any, epochs: Any, pruner: Any, optimizer: Any, loss: Any) -> None:
    if not isinstance(student, nn.Module):
        raise TypeError(f"student must be a torch.nn.Module, got {type(student).__name__}")
    if teacher is not None and not isinstance(teacher, nn.Module):
        raise TypeError(f"teacher must be a torch.nn.Module or None (plain training), got {type(teacher).__name__}")
    count(epochs, "epochs", 1)
    if pruner is not None and not callable(getattr(pruner, "step", None)):
        raise TypeError(f"pruner must have a .step() method (e.g. pysparse.prune.Pruner), got {type(pruner).__name__}")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}")
    if loss is not None and not callable(loss) and not isinstance(loss, (list, tuple, Mapping)):
        raise TypeError(
            "loss must be callable as loss(student_out, teacher_out, labels), or a list / {name: loss} dict of them"
        )
    if teacher is not None:
        if teacher is student:
            raise ValueError("student and teacher are the same module; distil into a copy (copy.deepcopy(teacher))")
        shared = {id(p) for p in teacher.parameters()} & {id(p) for p in student.parameters()}
        if shared:
            raise ValueError(
                f"student and teacher share {len(shared)} parameter tensors; the teacher must stay frozen, "
                "so give the student its own copy (copy.deepcopy)"
            )


def _features(features: Any, student: nn.Module, teacher: nn.Module | None, example: Any) -> FeatureDistiller | None:
    if features is None:
        return None
    if teacher is None:
        raise ValueError("features= needs a teacher to match against")
    if isinstance(features, FeatureDistiller):
        return features
    return FeatureDistiller(student, teacher, features, example_input=example)


def _evaluate(model: nn.Module, loader: Iterable, device: torch.device) -> float | None:
    was_training = model.training
    model.eval()
    correct = count = 0
    seen = False
    try:
        with torch.no_grad():
            for batch in loader:
                b = moved(split_batch(batch), device)
                c = _correct(run(model, b), b.labels)
                if c is None:
                    return None
                correct += c
                count += b.size()
                seen = True
    finally:
        model.train(was_training)
    if not seen:
        raise ValueError("val_loader yielded no batches")
    correct, count = _allsum([correct, count])
    return correct / count if count else None


def _quality(evaluate: Callable[[nn.Module], Mapping[str, float]], student: nn.Module) -> dict[str, float]:
    was_training = student.training
    student.eval()
    try:
        with torch.no_grad():
            got = evaluate(student)
    finally:
        student.train(was_training)
    if not isinstance(got, Mapping):
        raise TypeError(f"evaluate must return a {{name: figure}} dict, got {type(got).__name__}")
    return {str(k): float(v) for k, v in got.items()}


def fit(
    student: nn.Module,
    teacher: nn.Module | None,
    train_loader: Iterable,
    epochs: int,
    pruner: Any = None,
    val_loader: Iterable | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    progress: bool = True,
    loss: LossFn | list[LossFn] | dict[str, LossFn] | None = None,
    features: FeatureDistiller | dict[str, str] | list[tuple[str, str]] | None = None,
    *,
    lr: float = 1e-3,
    max_steps: int | None = None,
    evaluate: Callable[[nn.Module], Mapping[str, float]] | None = None,
    qat: Any = None,
    lr_schedule: str | Callable[[int, int], float] = "constant",
    warmup: int = 0,
    dropout: bool = True,
) -> History:
    """Train ``student`` against a frozen ``teacher`` for ``epochs`` passes over ``train_loader``.

    - ``train_loader`` yields ``(inputs, labels)``, ``(inputs,)`` or dicts:
      inputs is a tensor or a tuple of tensors (``model(*inputs)``) or a dict
      (``model(**inputs)``); a dict batch (what a tokenizer returns: input_ids,
      attention_mask, token_type_ids) is the keyword inputs, its ``"labels"``
      entry if any the labels. Labels may be None (teacher-only losses).
      Batches are moved to the student's device.
    - ``teacher`` runs in eval mode, with gradients off, under ``torch.no_grad``;
      its mode and ``requires_grad`` flags are restored afterwards. ``None``
      trains the student alone (cross entropy, or ``loss(out, None, labels)``):
      the no-distillation baseline at equal steps.
    - ``loss(student_out, teacher_out, labels)``: default ``KDLoss()``
      (T = 4, alpha = 0.9). The outputs are whatever the models return (a
      transformers output too); a loss with a ``batch`` parameter also gets
      ``batch=`` the batch's keyword inputs (so ``EmbeddingLoss`` pools over its
      attention mask). A list or ``{name: loss}`` dict of losses is summed, and
      each term's mean is reported in the history's ``losses``.
    - ``features``: hint distillation on intermediate activations, a
      :class:`FeatureDistiller` or the pairs to build one with (its loss is
      added; its projections are trained with the student). Pairs build a
      distiller for this call only (hooks removed at the end); pass your own
      FeatureDistiller to keep its trained projections.
    - ``pruner``: any object with ``.step()``, called after every optimizer
      step (``pysparse.prune.Pruner``).
    - ``qat``: quantization-aware training (``pysparse.quant.prepare_qat(student)``): its
      ``.step()`` is called after the pruner's, every optimizer step; prune + quantize +
      distill in one loop.
    - ``optimizer``: default ``Adam(lr=lr)`` over the student's and the
      projections' parameters. A given optimizer must hold the projections too.
    - ``lr_schedule``: the learning rate over the run, as a factor of each param
      group's initial rate: ``"constant"`` (the default), ``"linear"`` (down to 0
      at the last step) or ``"cosine"`` (half a cosine down to 0), or a callable
      ``(step, total_steps) -> factor``. ``warmup``: that many first steps ramp
      linearly from 1/warmup of the rate up to it (then the schedule runs over the
      remaining steps). A decaying schedule needs the run's length: ``max_steps``
      or a ``train_loader`` with ``len()``. Recovery after gradual pruning is
      where a decay pays: the last masks are fixed while the rate falls.
    - ``dropout``: False trains the student with every dropout layer's rate set
      to 0 (restored afterwards). The teacher runs without dropout, so a student
      that must reproduce its outputs (embeddings, hidden states) fits a noisy
      copy of its own forward while dropout stays on; dropout's regularisation
      is worth keeping when the student learns labels.
    - ``progress``: tqdm bars (rank 0 only when distributed).
    - ``max_steps``: stop after this many optimizer steps (the budget; the last
      epoch ends early).
    - ``evaluate``: called with the student (in eval mode, no grad) after each
      epoch; its ``{name: figure}`` goes into the row's ``quality``.

    Returns the history, one dict per epoch: ``epoch``, ``loss`` (mean training
    loss), ``train_acc`` (argmax accuracy on the training batches, None when the
    outputs are not class logits), ``val_acc`` (when ``val_loader``),
    ``sparsity`` (measured zeros over Linear/Conv weights), ``steps`` (optimizer
    steps so far) and ``time`` (seconds for the epoch), plus ``losses`` (per
    term) with several loss terms and ``quality`` with ``evaluate``. It is a
    :class:`History`: ``str()`` of it is the run's report (with the per-layer
    sparsity at the end). The student is trained in place (the same object, in
    train mode).

    Under ``torch.distributed`` (e.g. ``torchrun``, gloo backend), see the module
    docstring: the student is wrapped in DistributedDataParallel for the loop.
    """
    from tqdm.auto import tqdm

    _check_args(student, teacher, epochs, pruner, optimizer, loss)
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"max_steps must be None or an int >= 1, got {max_steps!r}")
    if qat is not None and not callable(getattr(qat, "step", None)):
        raise TypeError(f"qat must have a .step() method (pysparse.quant.prepare_qat), got {type(qat).__name__}")
    if evaluate is not None and not callable(evaluate):
        raise TypeError("evaluate must be a callable (student) -> {name: figure}")
    number(lr, "lr", strict=True)
    count(warmup, "warmup")
    if not isinstance(dropout, bool):
        raise TypeError(f"dropout must be True or False, got {dropout!r}")
    for name, data in (("train_loader", train_loader), ("val_loader", val_loader)):
        if data is None and name == "val_loader":
            continue
        if not isinstance(data, Iterable) or isinstance(data, (torch.Tensor, str)):
            raise TypeError(f"{name} must be a DataLoader (or a list of batches), got {type(data).__name__}")
        if iter(data) is data:
            raise TypeError(
                f"{name} is a one-shot iterator ({type(data).__name__}), which a second pass would find empty; "
                "pass a DataLoader or a list of batches"
            )
    try:
        n_batches: int | None = len(train_loader)  # type: ignore[arg-type]
    except TypeError:
        n_batches = None
    if n_batches == 0:
        raise ValueError("train_loader is empty: it yields no batches (check the data set and batch_size/drop_last)")
    total_steps = _total_steps(epochs, n_batches, max_steps)
    factor = _lr_factor(lr_schedule, warmup, total_steps)

    params = list(student.parameters())
    if not params:
        raise ValueError("student has no parameters to train")
    device = params[0].device
    terms = _loss_terms(loss, teacher)

    distributed = _dist_ready()
    rank = torch.distributed.get_rank() if distributed else 0
    if distributed:
        sampler = getattr(train_loader, "sampler", None)
        if not isinstance(sampler, torch.utils.data.distributed.DistributedSampler):
            warnings.warn(
                "torch.distributed is initialised but train_loader does not use a DistributedSampler: every "
                "process trains on the whole data set; pass sampler=DistributedSampler(dataset) to the DataLoader",
                UserWarning,
                stacklevel=2,
            )

    teacher_state = None
    if teacher is not None:
        teacher_state = (teacher.training, [(p, p.requires_grad) for p in teacher.parameters()])
        teacher.eval()
        teacher.requires_grad_(False)

    distiller: FeatureDistiller | None = None
    built_distiller = False
    history = History()
    rates: list[tuple[nn.Module, float]] = []
    try:
        if not dropout:  # nn.Dropout*, AlphaDropout; HF attention reads its dropout module's p too
            rates = [(m, m.p) for m in student.modules() if isinstance(m, _DROPOUTS)]
            for m, _ in rates:
                m.p = 0.0
        if features is not None and not isinstance(features, FeatureDistiller):
            first = next(iter(train_loader), None)
            if first is None:
                raise ValueError("train_loader is empty: it yields no batches")
            fb = moved(split_batch(first), device)
            example = fb.kwargs if fb.kwargs else fb.args
            built_distiller = True
        else:
            example = ()
        distiller = _features(features, student, teacher, example)
        if distiller is not None:
            distiller.to(device)
            terms.append(("features", distiller, True))
        extra = list(distiller.trainable_parameters()) if distiller is not None else []
        for _, fn, _ in terms:  # feature distillers passed as loss terms train their projections too
            if isinstance(fn, FeatureDistiller) and fn is not distiller:
                fn.to(device)
                extra += [p for p in fn.trainable_parameters() if all(p is not q for q in extra)]
        if optimizer is None:
            optimizer = torch.optim.Adam(params + extra, lr=lr)
        elif extra:
            held = {id(p) for g in optimizer.param_groups for p in g["params"]}
            if any(id(p) not in held for p in extra):
                raise ValueError(
                    "the optimizer does not hold the feature projections' parameters: build it over "
                    "list(student.parameters()) + list(distiller.parameters())"
                )

        schedule = None
        if factor is not None:
            schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

        model: nn.Module = student
        if distributed and not isinstance(student, nn.parallel.DistributedDataParallel):
            model = nn.parallel.DistributedDataParallel(student)
        if distributed:
            for p in extra:  # the projections live outside DDP: same start, averaged gradients
                torch.distributed.broadcast(p.data, src=0)

        student.train()
        steps = 0
        report_terms = len(terms) > 1
        for epoch in range(epochs):
            if max_steps is not None and steps >= max_steps:
                break
            term_sums = [0.0] * len(terms)
            sampler = getattr(train_loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            t0 = time.perf_counter()
            loss_sum = 0.0
            n_seen = 0
            correct: int | None = 0
            bar = tqdm(
                train_loader,
                total=n_batches,
                desc=f"epoch {epoch + 1}/{epochs}",
                disable=not progress or rank != 0,
                leave=False,
            )
            for batch in bar:
                b = moved(split_batch(batch), device)
                labels = b.labels
                t_out = None
                if teacher is not None:
                    with torch.no_grad():
                        t_out = run(teacher, b)
                out = run(model, b)
                if (isinstance(out, torch.Tensor) and isinstance(t_out, torch.Tensor)
                        and out.shape != t_out.shape):
                    raise ValueError(
                        f"student output {tuple(out.shape)} and teacher output {tuple(t_out.shape)} differ in shape; "
                        "they must predict the same classes"
                    )
                if loss is None and teacher is not None and not isinstance(out, torch.Tensor):
                    raise ValueError(
                        f"the models return {type(out).__name__}, not logits, so the default KDLoss does not apply; "
                        "pass loss=distill.EmbeddingLoss() (sentence embeddings) or your own loss"
                    )
                parts = [fn(out, t_out, labels, batch=b.kwargs) if wants else fn(out, t_out, labels)
                         for _, fn, wants in terms]
                value = parts[0] if len(parts) == 1 else torch.stack([torch.as_tensor(v).reshape(()) for v in parts]).sum()
                if not torch.isfinite(value):
                    raise FloatingPointError(
                        f"loss became {float(value)} at epoch {epoch + 1}, step {steps + 1}: lower lr or check the data"
                    )
                optimizer.zero_grad(set_to_none=True)
                value.backward()
                if distributed and extra:
                    world = torch.distributed.get_world_size()
                    for p in extra:
                        if p.grad is not None:
                            torch.distributed.all_reduce(p.grad)
                            p.grad /= world
                optimizer.step()
                steps += 1
                if schedule is not None:
                    schedule.step()
                if pruner is not None:
                    changed = pruner.step()
                    if distributed and changed is not False:
                        _sync_from_rank0(student)
                if qat is not None:
                    qat.step()
                n = b.size()
                loss_sum += float(value.detach()) * n
                for i, v in enumerate(parts):
                    term_sums[i] += float(torch.as_tensor(v).detach()) * n
                n_seen += n
                if correct is not None:
                    c = _correct(out.detach(), labels) if isinstance(out, torch.Tensor) else None
                    correct = None if c is None else correct + c
                bar.set_postfix(loss=f"{loss_sum / n_seen:.4f}", refresh=False)
                if max_steps is not None and steps >= max_steps:
                    break
            bar.close()
            if n_seen == 0:
                raise ValueError(f"train_loader yielded no batches in epoch {epoch + 1}")
            loss_sum, n_total, c_total, *term_sums = _allsum(
                [loss_sum, n_seen, -1.0 if correct is None else correct, *term_sums]
            )
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "loss": loss_sum / n_total,
                "train_acc": None if correct is None else c_total / n_total,
            }
            if report_terms:
                row["losses"] = {name: v / n_total for (name, _, _), v in zip(terms, term_sums)}
            if val_loader is not None:
                row["val_acc"] = _evaluate(student, val_loader, device)
            if evaluate is not None:
                row["quality"] = _quality(evaluate, student)
            row["sparsity"] = measured_sparsity(student)
            row["steps"] = steps
            row["time"] = time.perf_counter() - t0
            history.append(row)
            if progress and rank == 0:
                shown = ", ".join(
                    f"{k} {v:.4f}" for k, v in row.items() if isinstance(v, float) and k != "time" and math.isfinite(v)
                )
                tqdm.write(f"epoch {epoch + 1}/{epochs}: {shown} ({row['time']:.1f} s)")
        history.layers_ = layer_sparsity(student)
    finally:
        for m, p in rates:
            m.p = p
        if teacher_state is not None:
            was_training, flags = teacher_state
            teacher.train(was_training)
            for p, flag in flags:
                p.requires_grad_(flag)
        if built_distiller and distiller is not None:
            distiller.remove()
    return history
