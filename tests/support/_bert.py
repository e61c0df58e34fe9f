"""Tiny random BERT encoders and the ops their files use (shared by test_bert and test_runtime)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# The runtime ops a BERT file uses beyond the float ops test_runtime covers one by one
# (their inputs are token ids and masks); test_bert asserts its files contain every one.
TRANSFORMER_OPS = frozenset(
    {"embedding", "position_embedding", "attention_mask", "attention", "masked_mean", "l2_normalize"}
)
VOCAB = 120
MAX_POSITIONS = 40


def tiny_bert(seed=0, **overrides):
    import torch
    import transformers

    torch.manual_seed(seed)
    kw = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
              max_position_embeddings=MAX_POSITIONS, type_vocab_size=2, hidden_dropout_prob=0.1,
              attention_probs_dropout_prob=0.1)
    kw.update(overrides)
    return transformers.BertModel(transformers.BertConfig(**kw)).eval()


def batch(rng, b, s, pad=True):
    """(input_ids, attention_mask, token_type_ids) int64, later samples padded shorter."""
    import numpy as np

    ids = rng.integers(0, VOCAB, (b, s)).astype(np.int64)
    mask = np.ones((b, s), np.int64)
    if pad:
        for i in range(1, b):
            mask[i, max(1, s - 3 * i):] = 0
    ids[mask == 0] = 0
    tt = np.zeros((b, s), np.int64)
    tt[:, s // 2:] = 1
    return ids, mask, tt
