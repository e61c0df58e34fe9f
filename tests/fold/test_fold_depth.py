"""fold.layer_similarity / fold.drop_layers: ranking blocks by how little they change their
input, dropping them, and distilling the shortened model from the full one."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
nn = torch.nn

from pysparse import distill, fold  # noqa: E402

from _one_thread import one_torch_thread  # noqa: E402, F401  (autouse)
from _tiny_bert import dict_batch, tiny_bert  # noqa: E402


class Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.f = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width))

    def forward(self, x):
        return x + self.f(x)


def make_identity(model, i: int) -> None:
    """Zero the residual branches of BERT layer i: with fresh LayerNorms (gamma 1, beta 0) it
    then maps its (already normalised) input to itself."""
    layer = model.encoder.layer[i]
    with torch.no_grad():
        for lin in (layer.attention.output.dense, layer.output.dense):
            lin.weight.zero_()
            lin.bias.zero_()


def np_cka(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(0), y - y.mean(0)
    return float(np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def test_identity_bert_layer_ranks_most_redundant():
    model = tiny_bert(4)
    make_identity(model, 2)
    batches = [dict_batch(s) for s in range(3)]
    sim = fold.layer_similarity(model, batches, progress=False)
    assert sim.names == [f"encoder.layer.{i}" for i in range(4)]
    assert sim.ranking()[0] == "encoder.layer.2"
    assert sim.cos[2] > 0.9999 and max(sim.cos[i] for i in (0, 1, 3)) < 0.99
    assert sim.tokens == sum(int(b["attention_mask"].sum()) for b in batches)  # padding left out
    text = str(sim)
    assert "cos(in, out)" in text and "encoder.layer.2" in text

    # Cosine and CKA against a direct computation on the real tokens of all batches.
    states = []
    with torch.no_grad():
        for b in batches:
            hs = model(**b, output_hidden_states=True).hidden_states
            m = b["attention_mask"].numpy() != 0
            states.append([h.double().numpy()[m] for h in hs])
    reps = [np.concatenate([s[i] for s in states]) for i in range(5)]
    for i in range(4):
        a, c = reps[i], reps[i + 1]
        cos = (a * c).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(c, axis=1))
        assert sim.cos[i] == pytest.approx(cos.mean(), rel=1e-5)
    assert sim.cka[1][3] == pytest.approx(np_cka(reps[1], reps[3]), rel=1e-6)
    assert sim.cka[0][0] == pytest.approx(1.0)


def test_plain_sequential_identity_block():
    torch.manual_seed(0)
    model = nn.Sequential(Residual(8), Residual(8), nn.Identity(), Residual(8))
    x = torch.randn(32, 8)
    sim = fold.layer_similarity(model, [(x,)], progress=False)
    assert sim.names == ["0", "1", "2", "3"] and sim.ranking()[0] == "2" and sim.cos[2] == pytest.approx(1.0)
    student, layer_map = fold.drop_layers(model, 1, similarity=sim)
    assert isinstance(student, nn.Sequential) and len(student) == 3 and len(model) == 4
    assert layer_map == {"0": "0", "1": "2", "2": "3"}
    torch.testing.assert_close(student(x), model(x))  # the dropped block was the identity


def test_drop_layers_layer_map_then_distillation_lowers_the_loss():
    teacher = tiny_bert(4, seed=3)
    batches = [dict_batch(s, n=8) for s in range(4)]
    student, layer_map = fold.drop_layers(teacher, [1, "encoder.layer.2"])
    assert len(student.encoder.layer) == 2 and student.config.num_hidden_layers == 2
    assert teacher.config.num_hidden_layers == 4 and len(teacher.encoder.layer) == 4  # a copy
    assert layer_map == {"encoder.layer.0": "encoder.layer.2", "encoder.layer.1": "encoder.layer.3"}
    assert [m.attention.self.layer_idx for m in student.encoder.layer] == [0, 1]
    assert torch.equal(student.encoder.layer[1].output.dense.weight, teacher.encoder.layer[3].output.dense.weight)

    def held_out_loss():
        b = dict_batch(99, n=8)
        with torch.no_grad():
            return float(distill.EmbeddingLoss(mse=1.0)(student(**b), teacher(**b), None, batch=b))

    before = held_out_loss()
    hints = distill.FeatureDistiller(student, teacher, layer_map, weight=0.1)
    distill.fit(student, teacher, batches, 6, loss=[distill.EmbeddingLoss(mse=1.0), hints], lr=2e-3,
                progress=False)
    hints.remove()
    after = held_out_loss()
    assert after < 0.7 * before


def test_drop_n_measures_when_given_batches():
    model = tiny_bert(3)
    make_identity(model, 0)
    student, layer_map = fold.drop_layers(model, 1, [dict_batch(0)], progress=False)
    assert layer_map == {"encoder.layer.0": "encoder.layer.1", "encoder.layer.1": "encoder.layer.2"}
    assert torch.equal(student.encoder.layer[0].attention.self.query.weight,
                       model.encoder.layer[1].attention.self.query.weight)


def test_bad_input_says_what_to_do():
    model = tiny_bert(2)
    with pytest.raises(ValueError, match="at least one must stay"):
        fold.drop_layers(model, 2, [dict_batch(0)])
    with pytest.raises(ValueError, match="cannot drop every block"):
        fold.drop_layers(model, [0, 1])
    with pytest.raises(ValueError, match="pass batches="):
        fold.drop_layers(model, 1)
    with pytest.raises(ValueError, match="block 7 does not exist"):
        fold.drop_layers(model, [7])
    with pytest.raises(ValueError, match="is not a block of the stack"):
        fold.drop_layers(model, ["pooler.dense"])
    with pytest.raises(ValueError, match="n must be >= 1"):
        fold.drop_layers(model, 0, [dict_batch(0)])
    with pytest.raises(ValueError, match="no stack of blocks"):
        fold.layer_similarity(nn.Linear(3, 3), [(torch.zeros(2, 3),)])
    with pytest.raises(ValueError, match="yielded nothing"):
        fold.layer_similarity(model, [], progress=False)
    widen = nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 6))
    sim = fold.layer_similarity(widen, [(torch.randn(5, 4),)], progress=False)
    assert np.isnan(sim.cos[0]) and sim.ranking()[-1] == "0"  # changes shape: never dropped first
    with pytest.raises(ValueError, match="only 1 blocks keep"):
        fold.drop_layers(nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 8), nn.Linear(8, 8)), 2,
                         [(torch.randn(5, 4),)], progress=False)
