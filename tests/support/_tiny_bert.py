"""Tiny randomly initialised BERT models and tokenised-looking batches for the fast tests."""

from __future__ import annotations

import torch
import transformers

VOCAB = 64


def tiny_bert(layers: int = 4, seed: int = 0, hidden: int = 32, init: float = 0.1) -> transformers.BertModel:
    """A BertModel (hidden 32, 4 heads, FFN 64) in eval mode; ``init`` large enough that the
    layers really transform their input (at BERT's 0.02 every random layer is near identity)."""
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers,
                                     num_attention_heads=4, intermediate_size=2 * hidden,
                                     max_position_embeddings=32, initializer_range=init,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return transformers.BertModel(config).eval()


def dict_batch(seed: int, n: int = 6, length: int = 9) -> dict[str, torch.Tensor]:
    """input_ids / attention_mask / token_type_ids as a tokenizer pads them: real tokens first,
    at least 2 per row, the rest padding (id 0, mask 0)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (n, length), generator=g)
    real = torch.randint(2, length + 1, (n,), generator=g)
    real[0] = length  # one full row
    mask = (torch.arange(length)[None, :] < real[:, None]).long()
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}

