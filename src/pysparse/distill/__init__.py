"""Knowledge distillation for pruned students (needs torch).

- :class:`KDLoss`: alpha * T^2 * KL(p_teacher || p_student) + (1 - alpha) * CE.
- :class:`FeatureDistiller`: hint losses on intermediate activations, with
  learned projections where widths differ, and a layer map (block indices) for a
  student with fewer layers.
- Representation losses (``representation``): :class:`EmbeddingLoss` on the
  mean-pooled sentence embedding (cosine and/or MSE), :class:`AttentionLoss`
  (MiniLM-style KL on attention distributions); :func:`mean_pool` and
  :func:`sentence_embedding` as sentence-transformers computes them.
- :func:`fit`: the training loop: frozen teacher, pruner stepped after every
  optimizer step, dict / tuple batches, labels optional, several loss terms,
  tqdm progress, per-epoch history that prints as the run's report; data
  parallel under ``torchrun`` (gloo).

The recipe for a pretrained transformer (bench/bench_minilm_distill.py runs it on
all-MiniLM-L6-v2)::

    student = copy.deepcopy(teacher)
    pruner = prune.Pruner(student, 0.8, pattern=(8, 1), criterion="fisher",
                          schedule=prune.gradual(begin=0, end=steps * 2 // 3, every=steps // 30),
                          max_layer_sparsity=0.95)        # default set: the encoder's Linears
    history = distill.fit(student, teacher, tokenized_batches, 1, pruner=pruner, max_steps=steps,
                          loss=[distill.EmbeddingLoss(cosine=1.0),
                                distill.FeatureDistiller(student, teacher, {i: i for i in range(6)})])
    print(history)                                        # losses, sparsity per layer
"""

from __future__ import annotations

from .losses import FeatureDistiller, KDLoss
from .representation import AttentionLoss, EmbeddingLoss, mean_pool, sentence_embedding
from .trainer import History, fit, layer_sparsity, measured_sparsity

__all__ = [
    "AttentionLoss",
    "EmbeddingLoss",
    "FeatureDistiller",
    "History",
    "KDLoss",
    "fit",
    "layer_sparsity",
    "mean_pool",
    "measured_sparsity",
    "sentence_embedding",
]
