"""bench/bench_minilm_distill.py's code path on a tiny random BertModel, so the ladder cannot rot:
text cleaning and sentence splitting, a pruned + distilled rung, a depth-folded rung, the quality
figures (against hand-made embeddings) and the results file."""

from __future__ import annotations

import argparse
import bz2
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import bench_minilm_distill as bench  # noqa: E402

from _one_thread import one_torch_thread  # noqa: E402, F401  (autouse)
from _tiny_bert import tiny_bert  # noqa: E402

WORDS = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "in", "park", "bank", "rates", "rose", "fell"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *WORDS]) + "\n")
    return transformers.BertTokenizer(str(vocab))


def test_wiki_markup_is_stripped_and_sentences_split():
    xml = ("<page><text xml:space=\"preserve\">{{Infobox|x={{y}}}} '''Anarchism''' is a [[political philosophy|"
           "philosophy]] that rejects all forms of rule.&lt;ref&gt;cite&lt;/ref&gt; It was named in the year "
           "1840 by a French writer.\n== History ==\n* a list item that is long enough to count here</text></page>"
           "<page><text>#REDIRECT [[Elsewhere]]</text></page>")
    (doc,) = bench.wiki_articles(bz2.compress(xml.encode()))
    assert bench.sentences(doc) == ["Anarchism is a philosophy that rejects all forms of rule.",
                                    "It was named in the year 1840 by a French writer."]


def test_quality_figures_against_hand_made_embeddings():
    rng = np.random.default_rng(0)
    e = rng.standard_normal((30, 8))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    lee = rng.standard_normal((5, 8))
    lee /= np.linalg.norm(lee, axis=1, keepdims=True)
    sim = (lee @ lee.T)[np.triu_indices(5, 1)]
    human = 2 * sim + 0.1  # a perfect linear (and monotone) match
    q = bench.quality({"lee": lee, "retrieval": e}, {"retrieval": e}, human)
    assert q["lee_pearson"] == pytest.approx(1.0) and q["lee_spearman"] == pytest.approx(1.0)
    assert q["cos_mean"] == pytest.approx(1.0) and q["top1"] == 1.0 and q["top10"] == 1.0
    flipped = bench.quality({"lee": lee, "retrieval": -e}, {"retrieval": e}, -human)
    assert flipped["cos_mean"] == pytest.approx(-1.0) and flipped["lee_pearson"] == pytest.approx(-1.0)
    assert bench._ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [2.5, 0.0, 2.5, 1.0]


@pytest.mark.parametrize("rung, attention, schedule, no_dropout", [("50% 4x1", 0.0, "constant", False),
                                                                   ("6->3 layers + 80% 4x1", 0.5, "cosine", True)])
def test_a_rung_on_a_tiny_bert(tokenizer, tmp_path, rung, attention, schedule, no_dropout):
    teacher = tiny_bert(4, hidden=32)
    teacher.resize_token_embeddings(len(tokenizer))
    for m in teacher.modules():  # the tiny config has none; the real MiniLM has 0.1
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.1
    rng = np.random.default_rng(0)
    text = [" ".join(rng.choice(WORDS, size=rng.integers(4, 9))) + " ." for _ in range(300)]
    data = {"train": text[:256], "retrieval": text[256:296], "lee": text[296:300],
            "human": rng.random(6)}
    args = argparse.Namespace(steps=4, batch=8, lr=1e-3, hidden_weight=bench.HIDDEN_WEIGHT, prune_end=0.7,
                              lr_schedule=schedule, warmup=1, attention_weight=attention,
                              no_dropout=no_dropout)
    spec = bench.RUNGS[rung]
    student, info = bench.run_rung(rung, spec, teacher, tokenizer, data, args)
    assert info["layers"] == 4 - spec.get("drop", 0) and info["steps"] == 4
    assert ("attention" in info["losses"]) == (attention > 0)
    rates = {m.p for m in student.modules() if isinstance(m, torch.nn.Dropout)}
    assert rates == {0.1}  # restored after training, dropout off or not
    assert info["encoder_sparsity"] == pytest.approx(spec["sparsity"], abs=0.02)
    assert info["layer_sparsity_min_max"][1] <= bench.layer_cap(spec["sparsity"]) + 1e-9
    _, ref = bench.evaluate(teacher, tokenizer, data, None)
    info["quality"], _ = bench.evaluate(student, tokenizer, data, ref)
    assert set(info["quality"]) == set(bench.COLUMNS) and -1 <= info["quality"]["cos_mean"] < 1
    meta = {"when": "now", "machine": "m", "versions": "v", "load": "0", "data": "d", "budget": "b"}
    bench.write_results(tmp_path / "r", meta, {"teacher": {"quality": bench.quality(ref, ref, data["human"])},
                                               rung: info})
    md = (tmp_path / "r.md").read_text()
    assert f"| {rung} |" in md and "encoder.layer.0.attention.self.query" in md


@pytest.mark.parametrize("rung", ["50% 4x1 one-shot (no training)",
                                  "80% 4x1 one-shot, activation criterion (no training)"])
def test_a_one_shot_rung_on_a_tiny_bert(tokenizer, rung):
    teacher = tiny_bert(2, hidden=32)
    teacher.resize_token_embeddings(len(tokenizer))
    rng = np.random.default_rng(0)
    text = [" ".join(rng.choice(WORDS, size=rng.integers(4, 9))) + " ." for _ in range(600)]
    data = {"train": text[:512], "retrieval": text[512:596], "lee": text[596:600], "human": rng.random(6)}
    args = argparse.Namespace(steps=4, batch=8)
    spec = bench.RUNGS[rung]
    student, info = bench.run_rung(rung, spec, teacher, tokenizer, data, args)
    assert info["steps"] == 0 and info["encoder_sparsity"] == pytest.approx(spec["sparsity"], abs=0.02)
    assert all(not p.requires_grad or p.grad is None for p in student.parameters())  # no training ran
    changed = [n for n, p in student.named_parameters() if not torch.equal(p, dict(teacher.named_parameters())[n])]
    assert changed and all(n.startswith("encoder.") and n.endswith(".weight") for n in changed)
