"""distill on transformers: dict batches, labels None, the representation losses against
hand-computed values (float64 numpy), masked mean pooling, layer maps."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
nn = torch.nn

from pysparse import distill  # noqa: E402

from _one_thread import one_torch_thread  # noqa: E402, F401  (autouse)
from _tiny_bert import dict_batch, tiny_bert  # noqa: E402

F64_RTOL = 1e-10


def np_pool(tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over each row's real tokens, one sample at a time."""
    return np.stack([tokens[i][mask[i] != 0].mean(0) for i in range(len(tokens))])


def np_normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_mean_pool_is_the_direct_formula_with_padding(rng):
    tokens = rng.standard_normal((5, 7, 3))
    mask = np.ones((5, 7), np.int64)
    mask[1, 3:] = 0
    mask[4, 1:] = 0
    tokens[mask == 0] = 1e6  # padding states must not leak into the mean
    got = distill.mean_pool(torch.from_numpy(tokens), torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(got, np_pool(tokens, mask), rtol=F64_RTOL, atol=0)


def test_sentence_embedding_of_a_bert_output_normalises():
    model, batch = tiny_bert(2), dict_batch(1)
    with torch.no_grad():
        out = model(**batch)
    e = distill.sentence_embedding(out, batch)
    want = np_normalize(np_pool(out.last_hidden_state.double().numpy(), batch["attention_mask"].numpy()))
    np.testing.assert_allclose(e.double().numpy(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cosine, mse", [(1.0, 0.0), (0.0, 2.0), (0.5, 3.0)])
def test_embedding_loss_against_hand_computed(rng, cosine, mse):
    s, t = rng.standard_normal((2, 4, 6, 5))
    mask = np.ones((4, 6), np.int64)
    mask[2, 2:] = 0
    ps, pt = np_normalize(np_pool(s, mask)), np_normalize(np_pool(t, mask))
    want = cosine * (1 - (ps * pt).sum(1)).mean() + mse * ((ps - pt) ** 2).mean()
    batch = {"attention_mask": torch.from_numpy(mask)}
    got = distill.EmbeddingLoss(cosine, mse)(torch.from_numpy(s), torch.from_numpy(t), None, batch=batch)
    assert got.dtype == torch.float64
    assert abs(float(got) - want) <= F64_RTOL * abs(want)


def test_embedding_loss_unnormalised_mse_of_vectors(rng):
    s, t = rng.standard_normal((2, 4, 5))  # (N, D): already one vector per sample, no pooling
    want = ((s - t) ** 2).mean()
    got = distill.EmbeddingLoss(cosine=0, mse=1, normalize=False)(torch.from_numpy(s), torch.from_numpy(t))
    assert abs(float(got) - want) <= F64_RTOL * want


def np_log_attention(q, k, heads, mask):
    n, length, width = q.shape
    d = width // heads
    out = np.zeros((n, heads, length, length))
    for b in range(n):
        for h in range(heads):
            qh, kh = q[b, :, h * d:(h + 1) * d], k[b, :, h * d:(h + 1) * d]
            z = qh @ kh.T / np.sqrt(d)
            z[:, mask[b] == 0] = -np.inf
            z = z - z.max(1, keepdims=True)
            out[b, h] = z - np.log(np.exp(z).sum(1, keepdims=True))
    return out


def test_attention_loss_against_hand_computed():
    teacher, student = tiny_bert(4, seed=1).double(), tiny_bert(2, seed=2).double()
    batch = dict_batch(3)
    loss = distill.AttentionLoss(student, teacher, {0: 1, 1: 3})
    records = {}

    def keep(name):
        return lambda m, i, o: records.__setitem__(name, o.detach().numpy())

    hooks = [model.get_submodule(f"encoder.layer.{i}.attention.self.{p}").register_forward_hook(keep((who, i, p)))
             for who, model, layers in (("s", student, (0, 1)), ("t", teacher, (1, 3))) for i in layers
             for p in ("query", "key")]
    with torch.no_grad():
        student(**batch)
        teacher(**batch)
    got = float(loss(None, None, None, batch=batch))
    for h in hooks:
        h.remove()
    loss.remove()
    mask = batch["attention_mask"].numpy()
    terms = []
    for si, ti in ((0, 1), (1, 3)):
        ls = np_log_attention(records[("s", si, "query")], records[("s", si, "key")], 4, mask)
        lt = np_log_attention(records[("t", ti, "query")], records[("t", ti, "key")], 4, mask)
        keys = np.broadcast_to(mask[:, None, None, :] != 0, lt.shape)
        kl = np.zeros(lt.shape)
        kl[keys] = np.exp(lt[keys]) * (lt[keys] - ls[keys])  # padding keys have probability 0
        kl = kl.sum(-1)  # (N, H, L)
        real = mask[:, None, :] != 0
        terms.append((kl * real).sum() / (real.sum() * 4))
    want = float(np.mean(terms))
    assert want > 0
    assert abs(got - want) <= 1e-9 * want


def test_feature_distiller_layer_map_and_masked_mse():
    teacher, student = tiny_bert(4, seed=1).double(), tiny_bert(2, seed=2).double()
    batch = dict_batch(4)
    hints = distill.FeatureDistiller(student, teacher, {0: 1, 1: -1})
    assert hints.pairs == [("encoder.layer.0", "encoder.layer.1"), ("encoder.layer.1", "encoder.layer.3")]
    assert all(isinstance(p, nn.Identity) for p in hints.projections)  # same width: no projection
    with torch.no_grad():
        s_states = student(**batch, output_hidden_states=True).hidden_states
        t_states = teacher(**batch, output_hidden_states=True).hidden_states
    got = float(hints(None, None, None, batch=batch))
    hints.remove()
    m = batch["attention_mask"].numpy() != 0
    want = np.mean([((s_states[si + 1].numpy() - t_states[ti + 1].numpy())[m] ** 2).mean()
                    for si, ti in ((0, 1), (1, 3))])
    assert abs(got - want) <= F64_RTOL * want


def test_fit_takes_dict_batches_with_labels_none():
    teacher = tiny_bert(2, seed=1)
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        for p in student.encoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batches = [dict_batch(s) for s in range(3)]
    seen = []

    def spy(out, t_out, labels, batch):
        seen.append((labels, sorted(batch)))
        return distill.EmbeddingLoss(mse=1.0)(out, t_out, labels, batch=batch)

    history = distill.fit(student, teacher, batches, 2, loss={"embedding": spy}, lr=1e-3, progress=False)
    assert seen[0] == (None, ["attention_mask", "input_ids", "token_type_ids"])
    assert len(seen) == history[-1]["steps"] == 6
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[0]["train_acc"] is None


class KwargsClassifier(nn.Module):
    """Embedding bag over the real tokens + Linear: a classifier called with keyword inputs."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.emb = nn.Embedding(64, 8)
        self.head = nn.Linear(8, classes)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        return self.head(distill.mean_pool(self.emb(input_ids), attention_mask))


def test_fit_dict_batches_labels_entry_and_tuple_batches_without_labels():
    torch.manual_seed(0)
    teacher, student = KwargsClassifier(), KwargsClassifier()
    batches = [{**dict_batch(s), "labels": torch.tensor([0, 1, 2, 0, 1, 2])} for s in range(3)]
    history = distill.fit(student, teacher, batches, 2, progress=False)  # KDLoss alpha 0.9 uses the labels
    assert history[-1]["train_acc"] is not None and history[-1]["steps"] == 6
    # A KDLoss given explicitly (an nn.Module: its forward takes no batch=), alone and in a list.
    for loss in (distill.KDLoss(2.0, 0.5), [distill.KDLoss(2.0, 0.5), distill.KDLoss(1.0, 1.0)]):
        got = distill.fit(student, teacher, batches, 1, loss=loss, progress=False)
        assert got[-1]["steps"] == 3 and ("losses" in got[-1]) == isinstance(loss, list)
    # (inputs,) and (inputs, None): no labels, a loss on the teacher's outputs only.
    x = torch.randn(8, 4)
    t, s = nn.Linear(4, 2), nn.Linear(4, 2)
    got = distill.fit(s, t, [(x,), ((x,), None)], 30, loss=lambda o, to, y: ((o - to) ** 2).mean(), lr=3e-2,
                      progress=False)
    assert got[-1]["loss"] < 0.2 * got[0]["loss"]


def test_several_loss_terms_are_reported_and_printed():
    teacher = tiny_bert(4, seed=1)
    student = tiny_bert(2, seed=2)
    batches = [dict_batch(s) for s in range(2)]
    hints = distill.FeatureDistiller(student, teacher, {0: 1, 1: 3})
    attn = distill.AttentionLoss(student, teacher, {0: 1, 1: 3})
    history = distill.fit(student, teacher, batches, 1, loss=[distill.EmbeddingLoss(), hints, attn],
                          evaluate=lambda m: {"figure": 0.5}, progress=False)
    row = history[0]
    assert list(row["losses"]) == ["EmbeddingLoss", "FeatureDistiller", "AttentionLoss"]
    assert row["loss"] == pytest.approx(sum(row["losses"].values()), rel=1e-6)
    assert row["quality"] == {"figure": 0.5}
    text = str(history)
    assert "EmbeddingLoss" in text and "figure" in text and "encoder.layer.1.output.dense" in text
    assert [n for n, _ in history.layers_][:2] == ["encoder.layer.0.attention.self.query",
                                                   "encoder.layer.0.attention.self.key"]
    attn.remove()
    hints.remove()


def test_bad_input_says_what_to_do():
    teacher, student = tiny_bert(4, seed=1), tiny_bert(2, seed=2)
    with pytest.raises(ValueError, match="block 5 does not exist; the stack has 2 blocks"):
        distill.FeatureDistiller(student, teacher, {5: 1})
    with pytest.raises(ValueError, match="teacher: block 4 does not exist"):
        distill.AttentionLoss(student, teacher, {0: 4})
    with pytest.raises(ValueError, match="no module named 'encoder.layer.9'"):
        distill.FeatureDistiller(student, teacher, {"encoder.layer.9": "encoder.layer.0"})
    batch = dict_batch(0)
    no_mask = [((batch["input_ids"],), None)]  # token states but no attention_mask to pool over
    with pytest.raises(ValueError, match="no 'attention_mask'"):
        distill.fit(student, teacher, no_mask, 1, loss=distill.EmbeddingLoss(), progress=False)
    with pytest.raises(ValueError, match="EmbeddingLoss"):
        distill.fit(student, teacher, [batch], 1, progress=False)  # default KDLoss on a BertModel output
    with pytest.raises(ValueError, match="cosine=0 and mse=0"):
        distill.EmbeddingLoss(0, 0)
    with pytest.raises(TypeError, match="dict of model inputs"):
        distill.fit(student, teacher, [batch["input_ids"]], 1, progress=False)
    assert not any(m._forward_hooks for m in student.modules())  # nothing left hooked
