"""prune.Activation (Wanda): |w| times the L2 norm of each input feature over calibration batches."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tqdm")

from pysparse import prune  # noqa: E402

nn = torch.nn


def test_linear_scores_are_weight_times_input_norm(rng):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    xs = [torch.from_numpy(rng.standard_normal((4, 6)).astype(np.float32)) for _ in range(3)]
    crit = prune.Activation.calibrate(model, [(x,) for x in xs], progress=False)
    x = torch.cat(xs).double()
    norm0 = x.square().sum(0).sqrt().float()
    torch.testing.assert_close(crit(model[0], "weight"), model[0].weight.detach().abs() * norm0[None, :])
    h = torch.relu(model[0](torch.cat(xs))).double()
    torch.testing.assert_close(crit(model[2], "weight"), model[2].weight.detach().abs() * h.square().sum(0).sqrt().float()[None, :])
    assert model.training  # put back as it was
    assert "2 layers" in repr(crit)


def test_a_large_activation_feature_keeps_its_small_weights(rng):
    """The case |w| gets wrong: input 0 carries 100x the activation of the others, its weights are
    small. Magnitude prunes them; the activation criterion keeps them (and the output closer)."""
    torch.manual_seed(1)
    x = torch.from_numpy(rng.standard_normal((64, 16)).astype(np.float32))
    x[:, 0] *= 100.0
    batches = [(x[i : i + 16],) for i in range(0, 64, 16)]
    results = {}
    for name in ("magnitude", "activation"):
        model = nn.Sequential(nn.Linear(16, 8))
        with torch.no_grad():
            model[0].weight[:, 0] = 0.05 * torch.sign(model[0].weight[:, 0])
            model[0].weight[:, 1:] = model[0].weight[:, 1:].sign() * (0.2 + model[0].weight[:, 1:].abs())
        ref = model(x).detach()
        crit = prune.Activation.calibrate(model, batches, progress=False) if name == "activation" else name
        prune.Pruner(model, sparsity=0.5, criterion=crit, scope="layer").squash()
        results[name] = (model[0].weight[:, 0].count_nonzero().item(), (model(x).detach() - ref).norm().item())
    assert results["magnitude"][0] == 0 and results["activation"][0] == 8
    assert results["activation"][1] < 0.5 * results["magnitude"][1]


def test_padding_tokens_do_not_count():
    from _bert import tiny_bert

    model = tiny_bert(seed=2)
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    padded = prune.Activation.calibrate(model, [{"input_ids": ids, "attention_mask": mask}], progress=False)
    alone = prune.Activation.calibrate(
        model, [{"input_ids": ids[:1]}, {"input_ids": ids[1:, :2]}], progress=False)
    q = model.encoder.layer[0].attention.self.query  # input: the embeddings, per token
    torch.testing.assert_close(padded.norms[q], alone.norms[q])
    unmasked = prune.Activation.calibrate(model, [{"input_ids": ids}], progress=False)
    assert not torch.allclose(unmasked.norms[q], alone.norms[q])


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_conv_scores_use_each_input_channel_norm(rng, groups):
    conv = nn.Conv2d(4, 8, 3, padding=1, groups=groups)
    x = torch.from_numpy(rng.standard_normal((2, 4, 5, 5)).astype(np.float32))
    crit = prune.Activation.calibrate(conv, [(x,)], progress=False)
    norm = x.double().square().sum(dim=(0, 2, 3)).sqrt().float()  # (in channels,)
    w = conv.weight.detach()
    want = torch.empty_like(w)
    per_group_out, per_group_in = 8 // groups, 4 // groups
    for o in range(8):
        g = o // per_group_out
        want[o] = w[o].abs() * norm[g * per_group_in : (g + 1) * per_group_in][:, None, None]
    torch.testing.assert_close(crit(conv, "weight"), want)


def test_blocks_and_gradual_pruning_take_it(rng):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    xs = [(torch.randn(8, 16),) for _ in range(2)]
    crit = prune.Activation.calibrate(model, xs, progress=False)
    pruner = prune.Pruner(model, sparsity=0.75, pattern=(4, 1), criterion=crit, scope="layer")
    pruner.squash()
    w = model[0].weight.detach()
    assert (w == 0).float().mean().item() == pytest.approx(0.75)
    blocks = (w.reshape(8, 4, 16) != 0).any(dim=1)  # every (4, 1) block all kept or all gone
    assert ((w.reshape(8, 4, 16) != 0).sum(dim=1) == blocks * 4).all()


def test_bad_input():
    model = nn.Sequential(nn.Linear(4, 2))
    x = (torch.randn(3, 4),)
    with pytest.raises(ValueError, match="batches is empty"):
        prune.Activation.calibrate(model, [], progress=False)
    with pytest.raises(TypeError, match="batches must be"):
        prune.Activation.calibrate(model, torch.randn(3, 4), progress=False)
    with pytest.raises(TypeError, match="model must be"):
        prune.Activation.calibrate("model", [x], progress=False)
    with pytest.raises(ValueError, match="no Linear or Conv2d layer to calibrate"):
        prune.Activation.calibrate(nn.Sequential(nn.ReLU()), [x], progress=False)
    with pytest.raises(ValueError, match="layers of the model"):
        prune.Activation.calibrate(model, [x], modules=[nn.Linear(4, 2)], progress=False)
    crit = prune.Activation.calibrate(model, [x], progress=False)
    with pytest.raises(ValueError, match="did not run while Activation.calibrate"):
        prune.Pruner(copy.deepcopy(model), sparsity=0.5, criterion=crit).squash()
    unused = nn.Sequential(nn.Linear(4, 2), nn.Linear(2, 2))
    unused.forward = lambda t: unused[0](t)  # the second layer never runs
    with pytest.raises(ValueError, match="never reach"):
        prune.Pruner(unused, sparsity=0.5, criterion=prune.Activation.calibrate(unused, [x], progress=False)).squash()
