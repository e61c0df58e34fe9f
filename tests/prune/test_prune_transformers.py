"""prune.Pruner on a transformers BertModel: the default layer set (the encoder's Linears,
never the embeddings nor the pooler), kernel patterns, global scope with per-layer caps, and
the gradual Fisher schedule stepped inside distill.fit on dict batches."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
nn = torch.nn

from pysparse import distill, prune  # noqa: E402

from _one_thread import one_torch_thread  # noqa: E402, F401  (autouse)
from _tiny_bert import dict_batch, tiny_bert  # noqa: E402

PER_LAYER = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
             "intermediate.dense", "output.dense")


def test_default_set_is_the_encoder_linears():
    model = tiny_bert(3)
    before = copy.deepcopy(model.state_dict())
    pruner = prune.Pruner(model, sparsity=0.5, pattern=(4, 1))
    assert list(pruner.layers_) == [f"encoder.layer.{i}.{n}" for i in range(3) for n in PER_LAYER]
    model = pruner.squash()
    for name, value in model.state_dict().items():
        if name.startswith("embeddings.") or name.startswith("pooler."):
            assert torch.equal(value, before[name]), f"{name} changed"
    assert float((model.encoder.layer[0].intermediate.dense.weight == 0).float().mean()) > 0.2
    assert float((model.pooler.dense.weight == 0).float().mean()) == 0.0
    # Asked for by name, the pooler is pruned too.
    p2 = prune.Pruner(tiny_bert(2), sparsity=0.5, modules=["pooler.dense"])
    assert list(p2.layers_) == ["pooler.dense"]


@pytest.mark.parametrize("pattern", ["unstructured", (4, 1), (8, 1), (16, 1), "2:4"])
def test_kernel_patterns_on_bert(pattern):
    model = tiny_bert(2)
    prune.Pruner(model, sparsity=0.5, pattern=pattern, scope="layer").squash()
    w = model.encoder.layer[1].attention.self.value.weight  # (32 out, 32 in)
    assert float((w == 0).float().mean()) == pytest.approx(0.5, abs=0.02)
    if isinstance(pattern, tuple):  # whole R x 1 blocks die together
        blocks = (w == 0).reshape(32 // pattern[0], pattern[0], 32)
        assert bool((blocks.all(1) | (~blocks).all(1)).all())
    if pattern == "2:4":
        assert int((w.reshape(32, 8, 4) != 0).sum(-1).max()) <= 2


def test_global_scope_respects_the_per_layer_cap():
    model = tiny_bert(2)
    with torch.no_grad():  # one layer of tiny weights: a global magnitude ranking would empty it
        model.encoder.layer[0].attention.self.query.weight.mul_(1e-3)
    uncapped = prune.Pruner(copy.deepcopy(model), sparsity=0.6, max_layer_sparsity=1.0).report()
    capped = prune.Pruner(model, sparsity=0.6, max_layer_sparsity=0.7).report()
    rows = {r.name: r for r in capped}
    assert {r.name: r for r in uncapped}["encoder.layer.0.attention.self.query"].sparsity > 0.99
    assert max(r.sparsity for r in capped) <= 0.7 + 1e-9
    assert rows["encoder.layer.0.attention.self.query"].sparsity == pytest.approx(0.7, abs=1e-3)
    assert capped.sparsity == pytest.approx(0.6, abs=0.01)  # the rest made up the difference


def test_gradual_fisher_inside_fit_on_dict_batches():
    teacher = tiny_bert(2, seed=1)
    student = copy.deepcopy(teacher)
    steps = 12
    pruner = prune.Pruner(student, sparsity=0.6, pattern=(4, 1), criterion="fisher",
                          schedule=prune.gradual(begin=1, end=9, every=2), max_layer_sparsity=0.8)
    batches = [dict_batch(s) for s in range(4)]
    history = distill.fit(student, teacher, batches, 3, pruner=pruner, loss=distill.EmbeddingLoss(mse=1.0),
                          lr=1e-3, max_steps=steps, progress=False)
    assert history[-1]["steps"] == steps and pruner.step_ == steps
    report = pruner.report()
    assert report.sparsity == pytest.approx(0.6, abs=0.01)
    assert max(r.sparsity for r in report) <= 0.8 + 1e-9
    assert "encoder.layer.1.output.dense" in str(history)


def test_no_prunable_linear_says_what_to_do():
    with pytest.raises(ValueError, match="no layer to prune.*modules="):
        prune.Pruner(nn.Sequential(nn.ReLU(), nn.Tanh()), sparsity=0.5)
    with pytest.raises(ValueError, match="no layer to prune"):
        prune.Pruner(nn.Embedding(10, 4), sparsity=0.5)
