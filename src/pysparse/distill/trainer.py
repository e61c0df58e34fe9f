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

import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import count, number
from .losses import FeatureDistiller, KDLoss

__all__ = ["fit", "measured_sparsity"]

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


def _split_batch(batch: Any) -> tuple[tuple[Any, ...], torch.Tensor]:
    if isinstance(batch, Mapping):
        raise TypeError("fit expects batches of (inputs, labels), got a dict; wrap the loader to yield tuples")
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise TypeError(
            f"fit expects each batch to be (inputs, labels), got {type(batch).__name__}"
            + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
        )
    inputs, labels = batch
    return (tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)), labels


def _to(x: Any, device: torch.device) -> Any:
    return x.to(device) if isinstance(x, torch.Tensor) else x


def _correct(out: torch.Tensor, labels: torch.Tensor) -> int | None:
    """Number of argmax hits, or None when the output/labels are not (N, C) / (N,) classes."""
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
    if loss is not None and not callable(loss):
        raise TypeError("loss must be callable as loss(student_out, teacher_out, labels)")
    if teacher is not None:
        if teacher is student:
            raise ValueError("student and teacher are the same module; distil into a copy (copy.deepcopy(teacher))")
        shared = {id(p) for p in teacher.parameters()} & {id(p) for p in student.parameters()}
        if shared:
            raise ValueError(
                f"student and teacher share {len(shared)} parameter tensors; the teacher must stay frozen, "
                "so give the student its own copy (copy.deepcopy)"
            )


def _features(features: Any, student: nn.Module, teacher: nn.Module | None, example: tuple) -> FeatureDistiller | None:
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
                inputs, labels = _split_batch(batch)
                out = model(*(_to(x, device) for x in inputs))
                c = _correct(out, _to(labels, device))
                if c is None:
                    return None
                correct += c
                count += labels.shape[0]
                seen = True
    finally:
        model.train(was_training)
    if not seen:
        raise ValueError("val_loader yielded no batches")
    correct, count = _allsum([correct, count])
    return correct / count if count else None


def fit(
    student: nn.Module,
    teacher: nn.Module | None,
    train_loader: Iterable,
    epochs: int,
    pruner: Any = None,
    val_loader: Iterable | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    progress: bool = True,
    loss: LossFn | None = None,
    features: FeatureDistiller | dict[str, str] | list[tuple[str, str]] | None = None,
    *,
    lr: float = 1e-3,
) -> list[dict[str, Any]]:
    """Train ``student`` against a frozen ``teacher`` for ``epochs`` passes over ``train_loader``.

    - ``train_loader`` yields ``(inputs, labels)``; inputs is a tensor or a
      tuple of tensors (passed as ``model(*inputs)``). Batches are moved to the
      student's device.
    - ``teacher`` runs in eval mode, with gradients off, under ``torch.no_grad``;
      its mode and ``requires_grad`` flags are restored afterwards. ``None``
      trains the student alone (cross entropy, or ``loss(out, None, labels)``):
      the no-distillation baseline at equal steps.
    - ``loss(student_out, teacher_out, labels)``: default ``KDLoss()``
      (T = 4, alpha = 0.9).
    - ``features``: hint distillation on intermediate activations, a
      :class:`FeatureDistiller` or the pairs to build one with (its loss is
      added; its projections are trained with the student). Pairs build a
      distiller for this call only (hooks removed at the end); pass your own
      FeatureDistiller to keep its trained projections.
    - ``pruner``: any object with ``.step()``, called after every optimizer
      step (``pysparse.prune.Pruner``).
    - ``optimizer``: default ``Adam(lr=lr)`` over the student's and the
      projections' parameters. A given optimizer must hold the projections too.
    - ``progress``: tqdm bars (rank 0 only when distributed).

    Returns the history, one dict per epoch: ``epoch``, ``loss`` (mean training
    loss), ``train_acc`` (argmax accuracy on the training batches, None when the
    outputs are not class logits), ``val_acc`` (when ``val_loader``),
    ``sparsity`` (measured zeros over Linear/Conv weights), ``steps`` (optimizer
    steps so far) and ``time`` (seconds for the epoch). The student is trained
    in place (the same object, in train mode).

    Under ``torch.distributed`` (e.g. ``torchrun``, gloo backend), see the module
    docstring: the student is wrapped in DistributedDataParallel for the loop.
    """
    from tqdm.auto import tqdm

    _check_args(student, teacher, epochs, pruner, optimizer, loss)
    number(lr, "lr", strict=True)
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

    params = list(student.parameters())
    if not params:
        raise ValueError("student has no parameters to train")
    device = params[0].device
    if loss is None:
        loss = KDLoss() if teacher is not None else (lambda out, _t, labels: F.cross_entropy(out, labels))

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
    history: list[dict[str, Any]] = []
    try:
        if features is not None and not isinstance(features, FeatureDistiller):
            first = next(iter(train_loader), None)
            if first is None:
                raise ValueError("train_loader is empty: it yields no batches")
            example = tuple(_to(x, device) for x in _split_batch(first)[0])
            built_distiller = True
        else:
            example = ()
        distiller = _features(features, student, teacher, example)
        if distiller is not None:
            distiller.to(device)
        extra = list(distiller.trainable_parameters()) if distiller is not None else []
        if optimizer is None:
            optimizer = torch.optim.Adam(params + extra, lr=lr)
        elif extra:
            held = {id(p) for g in optimizer.param_groups for p in g["params"]}
            if any(id(p) not in held for p in extra):
                raise ValueError(
                    "the optimizer does not hold the feature projections' parameters: build it over "
                    "list(student.parameters()) + list(distiller.parameters())"
                )

        model: nn.Module = student
        if distributed and not isinstance(student, nn.parallel.DistributedDataParallel):
            model = nn.parallel.DistributedDataParallel(student)
        if distributed:
            for p in extra:  # the projections live outside DDP: same start, averaged gradients
                torch.distributed.broadcast(p.data, src=0)

        student.train()
        steps = 0
        for epoch in range(epochs):
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
                inputs, labels = _split_batch(batch)
                inputs = tuple(_to(x, device) for x in inputs)
                labels = _to(labels, device)
                t_out = None
                if teacher is not None:
                    with torch.no_grad():
                        t_out = teacher(*inputs)
                out = model(*inputs)
                if t_out is not None and isinstance(out, torch.Tensor) and out.shape != t_out.shape:
                    raise ValueError(
                        f"student output {tuple(out.shape)} and teacher output {tuple(t_out.shape)} differ in shape; "
                        "they must predict the same classes"
                    )
                value = loss(out, t_out, labels)
                if distiller is not None:
                    value = value + distiller.loss()
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
                if pruner is not None:
                    changed = pruner.step()
                    if distributed and changed is not False:
                        _sync_from_rank0(student)
                b = labels.shape[0] if isinstance(labels, torch.Tensor) and labels.dim() > 0 else 1
                loss_sum += float(value.detach()) * b
                n_seen += b
                if correct is not None:
                    c = _correct(out.detach(), labels) if isinstance(out, torch.Tensor) else None
                    correct = None if c is None else correct + c
                bar.set_postfix(loss=f"{loss_sum / n_seen:.4f}", refresh=False)
            bar.close()
            if n_seen == 0:
                raise ValueError(f"train_loader yielded no batches in epoch {epoch + 1}")
            loss_sum, n_total, c_total = _allsum([loss_sum, n_seen, -1.0 if correct is None else correct])
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "loss": loss_sum / n_total,
                "train_acc": None if correct is None else c_total / n_total,
            }
            if val_loader is not None:
                row["val_acc"] = _evaluate(student, val_loader, device)
            row["sparsity"] = measured_sparsity(student)
            row["steps"] = steps
            row["time"] = time.perf_counter() - t0
            history.append(row)
            if progress and rank == 0:
                shown = ", ".join(
                    f"{k} {v:.4f}" for k, v in row.items() if isinstance(v, float) and k != "time" and math.isfinite(v)
                )
                tqdm.write(f"epoch {epoch + 1}/{epochs}: {shown} ({row['time']:.1f} s)")
    finally:
        if teacher_state is not None:
            was_training, flags = teacher_state
            teacher.train(was_training)
            for p, flag in flags:
                p.requires_grad_(flag)
        if built_distiller and distiller is not None:
            distiller.remove()
    return history
