"""The batches the training side takes, split one way: (positional inputs, keyword inputs, labels).

``distill.fit``, ``fold.layer_similarity`` and the distillation losses share this, so a
batch means the same thing everywhere:

- a dict (what a Hugging Face tokenizer returns): keyword inputs, ``model(**batch)``;
  a ``"labels"`` entry, if any, is taken out as the labels;
- ``(inputs, labels)``: inputs a tensor, a tuple of tensors (``model(*inputs)``) or a
  dict (``model(**inputs)``); labels may be None (teacher-only losses);
- ``(inputs,)``: no labels.

Needs torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["Batch", "first_tensor", "split_batch", "to_device", "moved", "run", "attention_mask", "token_rows"]


class Batch:
    """One batch, split: ``args`` (tuple), ``kwargs`` (dict), ``labels`` (or None)."""

    __slots__ = ("args", "kwargs", "labels")

    def __init__(self, args: tuple, kwargs: dict[str, Any], labels: Any) -> None:
        self.args, self.kwargs, self.labels = args, kwargs, labels

    def size(self) -> int:
        """The number of samples (the first dimension of the first tensor input; 1 if none)."""
        for x in (*self.args, *self.kwargs.values()):
            if isinstance(x, torch.Tensor) and x.dim() > 0:
                return int(x.shape[0])
        return 1


def split_batch(batch: Any, who: str = "fit") -> Batch:
    """A :class:`Batch` from a dict, ``(inputs, labels)`` or ``(inputs,)``; TypeError otherwise."""
    if isinstance(batch, Mapping):
        kwargs = dict(batch)
        labels = kwargs.pop("labels", None)
        if not kwargs:
            raise TypeError(f"{who} got a dict batch with no inputs (only 'labels'); add input_ids etc.")
        return Batch((), kwargs, labels)
    if not isinstance(batch, (tuple, list)) or len(batch) not in (1, 2):
        raise TypeError(
            f"{who} expects each batch to be a dict of model inputs (input_ids, attention_mask, ...), "
            f"(inputs, labels) or (inputs,), got {type(batch).__name__}"
            + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
        )
    inputs, labels = (batch[0], batch[1]) if len(batch) == 2 else (batch[0], None)
    if isinstance(inputs, Mapping):
        return Batch((), dict(inputs), labels)
    return Batch(tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,), {}, labels)


def to_device(x: Any, device: torch.device) -> Any:
    return x.to(device) if isinstance(x, torch.Tensor) else x


def moved(b: Batch, device: torch.device) -> Batch:
    """The batch with every tensor on ``device``."""
    return Batch(
        tuple(to_device(x, device) for x in b.args),
        {k: to_device(v, device) for k, v in b.kwargs.items()},
        to_device(b.labels, device),
    )


def run(model: torch.nn.Module, b: Batch) -> Any:
    """``model(*args, **kwargs)``."""
    return model(*b.args, **b.kwargs)


def attention_mask(b: Batch | None) -> torch.Tensor | None:
    """The batch's ``attention_mask`` (keyword input), or None."""
    if b is None:
        return None
    m = b.kwargs.get("attention_mask")
    return m if isinstance(m, torch.Tensor) else None


def first_tensor(output: Any) -> torch.Tensor | None:
    """The tensor a module returned, or the first element of a tuple / model output."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


def token_rows(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(tokens, features) float64 rows of a (batch, seq, features) state, the padding left out
    (``mask``: the batch's attention_mask, (batch, seq)); other shapes: every row of the last dim."""
    x = x.detach().to(torch.float64)
    if x.dim() == 3 and mask is not None and tuple(mask.shape) == tuple(x.shape[:2]):
        return x[mask != 0]
    return x.reshape(-1, x.shape[-1]) if x.dim() >= 2 else x.reshape(1, -1)
