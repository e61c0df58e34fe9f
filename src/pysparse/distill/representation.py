"""Distillation losses for representation models (sentence embeddings, hidden states, attention).

Each is a self-contained callable with the signature ``distill.fit`` calls a loss with,
``loss(student_out, teacher_out, labels, batch=...)``, where ``batch`` is the batch's
keyword inputs (``input_ids``, ``attention_mask``, ...), so labels may be None:

- :func:`mean_pool`: sentence-transformers' pooling, the mean of the token states over
  the real tokens: ``sum(h * m) / max(sum(m), 1e-9)`` with ``m`` the attention mask.
- :class:`EmbeddingLoss`: on the pooled (and by default L2-normalised) sentence
  embedding, ``cosine * mean(1 - cos(s, t)) + mse * MSE(s, t)``.
- hidden states: :class:`~pysparse.distill.FeatureDistiller` with a layer map.
- :class:`AttentionLoss`: MiniLM's (Wang et al. 2020) KL divergence between the
  teacher's and the student's self-attention distributions, per head, over real
  query tokens and keys. It recomputes the distributions from the hooked query and
  key projections, so it works whatever attention kernel the model runs (SDPA
  never returns the probabilities).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .losses import first_tensor, layer_pairs

__all__ = ["mean_pool", "sentence_embedding", "EmbeddingLoss", "AttentionLoss"]


def _mask_for(tokens: torch.Tensor, batch: Mapping[str, Any] | None, who: str) -> torch.Tensor:
    mask = batch.get("attention_mask") if isinstance(batch, Mapping) else None
    if not isinstance(mask, torch.Tensor):
        raise ValueError(
            f"{who} pools (batch, tokens, features) outputs over the attention mask, but the batch has no "
            "'attention_mask': give dict batches as the tokenizer returns them (padding=True), or pass "
            "pool=False for outputs that already are one vector per sample"
        )
    return mask


def mean_pool(tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(N, L, D) token states, (N, L) mask -> (N, D): the mean over the real tokens
    (exactly sentence-transformers' Pooling(mode='mean'))."""
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 3:
        raise ValueError(f"mean_pool takes (batch, tokens, features) states, got {getattr(tokens, 'shape', tokens)!r}")
    if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != tuple(tokens.shape[:2]):
        raise ValueError(
            f"attention_mask must be (batch, tokens) = {tuple(tokens.shape[:2])}, "
            f"got {tuple(getattr(attention_mask, 'shape', ()))}"
        )
    m = attention_mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * m).sum(1) / m.sum(1).clamp(min=1e-9)


def sentence_embedding(output: Any, batch: Mapping[str, Any] | None, normalize: bool = True,
                       pool: bool = True, who: str = "sentence_embedding") -> torch.Tensor:
    """The (N, D) sentence embedding of a model's output (a tensor, a tuple or a
    transformers output: its first element, ``last_hidden_state``): mean-pooled over the
    batch's attention mask when it is (N, L, D) and ``pool``, then L2-normalised."""
    tokens = first_tensor(output)
    if tokens is None:
        raise TypeError(f"{who}: the model returned {type(output).__name__}, not a tensor or a tuple of them")
    if tokens.dim() == 3 and pool:
        e = mean_pool(tokens, _mask_for(tokens, batch, who))
    elif tokens.dim() == 2:
        e = tokens
    else:
        raise ValueError(f"{who}: outputs of shape {tuple(tokens.shape)} are not (N, D) or (N, L, D) states")
    return F.normalize(e, dim=1) if normalize else e


def _weight(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or math.isinf(value):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


class EmbeddingLoss(nn.Module):
    """``cosine * mean(1 - cos(s, t)) + mse * MSE(s, t)`` on the sentence embeddings.

    s, t: the student's and the teacher's outputs mean-pooled over the batch's
    ``attention_mask`` (for (N, L, D) token states; (N, D) outputs are used as
    they are), L2-normalised when ``normalize`` (as all-MiniLM-L6-v2 ends). MSE is
    the mean over all N * D elements. The teacher's side is detached."""

    def __init__(self, cosine: float = 1.0, mse: float = 0.0, normalize: bool = True, pool: bool = True) -> None:
        super().__init__()
        self.cosine = _weight(cosine, "cosine")
        self.mse = _weight(mse, "mse")
        if self.cosine == 0 and self.mse == 0:
            raise ValueError("EmbeddingLoss with cosine=0 and mse=0 is no loss; give one of them a weight > 0")
        self.normalize = bool(normalize)
        self.pool = bool(pool)

    def extra_repr(self) -> str:
        return f"cosine={self.cosine}, mse={self.mse}, normalize={self.normalize}"

    def forward(self, student_out: Any, teacher_out: Any, labels: Any = None,
                batch: Mapping[str, Any] | None = None) -> torch.Tensor:
        if teacher_out is None:
            raise ValueError("EmbeddingLoss compares with the teacher's output: give distill.fit a teacher")
        s = sentence_embedding(student_out, batch, self.normalize, self.pool, "EmbeddingLoss")
        with torch.no_grad():
            t = sentence_embedding(teacher_out, batch, self.normalize, self.pool, "EmbeddingLoss")
        if s.shape != t.shape:
            raise ValueError(
                f"student embeddings {tuple(s.shape)} and teacher embeddings {tuple(t.shape)} differ in shape; "
                "the student must embed into the teacher's width"
            )
        total = s.new_zeros(())
        if self.cosine:
            total = total + self.cosine * (1.0 - F.cosine_similarity(s, t, dim=1)).mean()
        if self.mse:
            total = total + self.mse * F.mse_loss(s, t)
        return total


class AttentionLoss(nn.Module):
    """MiniLM's attention transfer: mean over mapped layers, heads and real query tokens of
    KL(A_teacher || A_student), A = softmax(q k^T / sqrt(d_head)) over the real keys.

    ``pairs``: the layer map, as for FeatureDistiller (block indices like ``{0: 1, 1: 3}``
    or block names); each block must hold the query and key projections at ``query`` and
    ``key`` (BERT's ``attention.self.query`` / ``.key``, the defaults). ``heads``: the
    number of attention heads (default: the block's ``attention.self.num_attention_heads``);
    student and teacher need the same. Forward hooks record the projections; call
    :meth:`remove` to take them off. Needs the batch's attention mask (padding keys are
    masked out, padding queries do not count)."""

    def __init__(self, student: nn.Module, teacher: nn.Module, pairs: Mapping[Any, Any] | Iterable[tuple[Any, Any]],
                 weight: float = 1.0, heads: int | None = None, query: str = "attention.self.query",
                 key: str = "attention.self.key") -> None:
        super().__init__()
        self.weight = _weight(weight, "weight")
        self.pairs = layer_pairs(student, teacher, pairs)
        self._store: dict[tuple[int, str], torch.Tensor] = {}
        self._handles: list[Any] = []
        self._heads: list[tuple[int, int]] = []
        try:
            for s_name, t_name in self.pairs:
                hs = []
                for side, model, block in ((0, student, s_name), (1, teacher, t_name)):
                    for part in (query, key):
                        name = f"{block}.{part}"
                        try:
                            m = model.get_submodule(name)
                        except AttributeError:
                            raise ValueError(
                                f"AttentionLoss: block {block!r} has no {part!r}; it needs the blocks' query and key "
                                "projections (query=, key= name them inside a block)"
                            ) from None
                        self._handles.append(m.register_forward_hook(self._saver((side, name))))
                    hs.append(self._count_heads(model, block, heads, query))
                if hs[0] != hs[1]:
                    raise ValueError(
                        f"student block {s_name!r} has {hs[0]} heads and teacher block {t_name!r} {hs[1]}; "
                        "attention transfer needs the same number of heads"
                    )
                self._heads.append((hs[0], hs[1]))
        except BaseException:
            self.remove()
            raise
        self.query, self.key = query, key

    @staticmethod
    def _count_heads(model: nn.Module, block: str, heads: int | None, query: str) -> int:
        if heads is not None:
            if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
                raise ValueError(f"heads must be an int >= 1, got {heads!r}")
            return heads
        parent = query.rpartition(".")[0]
        owner = model.get_submodule(f"{block}.{parent}" if parent else block)
        n = getattr(owner, "num_attention_heads", None)
        if not isinstance(n, int):
            raise ValueError(f"cannot tell the number of heads of block {block!r}; pass heads=")
        return n

    def _saver(self, key: tuple[int, str]) -> Any:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            self._store[key] = output

        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._store.clear()

    @staticmethod
    def log_attention(q: torch.Tensor, k: torch.Tensor, heads: int, mask: torch.Tensor) -> torch.Tensor:
        """(N, H, L, L) log attention distributions from (N, L, H*d) projections, padding keys masked."""
        n, length, width = q.shape
        d = width // heads
        qh = q.reshape(n, length, heads, d).transpose(1, 2)
        kh = k.reshape(n, length, heads, d).transpose(1, 2)
        scores = qh @ kh.transpose(-1, -2) / math.sqrt(d)
        keep = (mask != 0)[:, None, None, :]
        scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
        return F.log_softmax(scores, dim=-1)

    def forward(self, student_out: Any = None, teacher_out: Any = None, labels: Any = None,
                batch: Mapping[str, Any] | None = None) -> torch.Tensor:
        try:
            mask = batch.get("attention_mask") if isinstance(batch, Mapping) else None
            if not isinstance(mask, torch.Tensor):
                raise ValueError(
                    "AttentionLoss needs the batch's 'attention_mask' (dict batches as the tokenizer returns them)"
                )
            terms = []
            for (s_name, t_name), (heads, _) in zip(self.pairs, self._heads):
                got = []
                for side, block in ((0, s_name), (1, t_name)):
                    q, k = (self._store.get((side, f"{block}.{part}")) for part in (self.query, self.key))
                    if q is None or k is None:
                        raise RuntimeError(
                            f"no query/key captured for block {block!r}: run the student and the teacher on the "
                            "batch before the loss"
                        )
                    got.append(self.log_attention(q, k, heads, mask))
                log_s, log_t = got[0], got[1].detach()
                keep = (mask != 0)[:, None, None, :]
                kl = (log_t.exp() * (log_t - log_s)).masked_fill(~keep, 0.0).sum(-1)  # (N, H, L) per query
                real = (mask != 0).to(kl.dtype)[:, None, :]
                terms.append((kl * real).sum() / (real.sum() * heads).clamp(min=1.0))
            return self.weight * torch.stack(terms).mean()
        finally:
            self._store.clear()
