"""Channel pruning ends in a smaller dense model with the masked model's outputs."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from pysparse import prune  # noqa: E402

nn = torch.nn


def convnet() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Sequential(nn.Conv2d(16, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Flatten(), nn.Linear(12 * 3 * 3, 40), nn.ReLU(), nn.Dropout(0.1), nn.Linear(40, 30), nn.GELU(),
        nn.Linear(30, 10),
    )


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_removal_gives_a_smaller_model_with_the_same_outputs(scope):
    model = convnet()
    pruner = prune.Pruner(model, sparsity=0.5, pattern="channel", scope=scope, exclude_last=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.randn(8, 3, 8, 8)
    y = torch.randint(0, 10, (8,))
    model.train()  # BatchNorm running stats and affine parameters move
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        pruner.step()
    model.eval()
    masked = model(x)
    dense_params = n_params(model)
    small = prune.remove_channels(copy.deepcopy(pruner.squash()))
    assert n_params(small) < 0.7 * dense_params
    torch.testing.assert_close(small(x), masked, rtol=1e-5, atol=1e-5)
    # Every removed channel shrank its BatchNorm and the next layer's inputs.
    assert small[0].out_channels == small[1].num_features == small[3][0].in_channels
    assert small[3][0].out_channels == small[3][1].num_features
    assert small[5].in_features == small[3][0].out_channels * 9
    assert small[5].out_features == small[8].in_features
    widths = [small[0].out_channels, small[3][0].out_channels, small[5].out_features, small[8].out_features]
    if scope == "layer":  # each layer lost half its channels
        assert widths == [8, 6, 20, 15]
    else:  # one ranking: some layers lose more than others, none is emptied
        assert all(w >= 1 for w in widths) and widths != [16, 12, 40, 30]
    assert small[10].out_features == 10  # the output layer keeps its outputs
    assert all(p.requires_grad for p in small.parameters())


def test_removal_of_a_linear_stack():
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Linear(20, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 4)
    )
    pruner = prune.Pruner(model, sparsity=0.6, pattern="channel", scope="layer", exclude_last=True)
    model.eval()
    x = torch.randn(5, 20)
    ref = model(x)
    small = prune.remove_channels(pruner.squash())
    assert small[0].out_features == 13 and small[3].out_features == 6
    torch.testing.assert_close(small(x), ref)


def test_nothing_to_remove_leaves_the_model_alone():
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    before = copy.deepcopy(model.state_dict())
    prune.remove_channels(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_removal_refuses_what_it_cannot_do():
    masked = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    prune.Pruner(masked, sparsity=0.5, pattern="channel")
    with pytest.raises(ValueError, match="squash"):
        prune.remove_channels(masked)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x) + x

    with pytest.raises(ValueError, match="nn.Sequential"):
        prune.remove_channels(nn.Sequential(nn.Linear(4, 4), Block()))
    with pytest.raises(ValueError, match="Sigmoid"):
        prune.remove_channels(nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2)))
    with pytest.raises(ValueError, match="grouped"):
        prune.remove_channels(nn.Sequential(nn.Conv2d(4, 4, 1, groups=2), nn.Conv2d(4, 2, 1)))
    with pytest.raises(ValueError, match="no Linear or Conv2d"):
        prune.remove_channels(nn.Sequential(nn.ReLU()))
    with pytest.raises(TypeError, match="nn.Module"):
        prune.remove_channels("model")


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_report_counts_the_flops_left_after_removal(scope):
    """A pruned channel also takes the next layer's inputs it fed: the report's kept
    FLOPs are those of the model remove_channels makes, layer by layer."""
    model = convnet()
    pruner = prune.Pruner(model, sparsity=0.5, pattern="channel", scope=scope, exclude_last=True)
    model.eval()
    model(torch.randn(2, 3, 8, 8))  # records the conv output sizes
    report = pruner.report()
    small = prune.remove_channels(copy.deepcopy(pruner.squash()))
    overstated = 0
    for row in report:
        positions = row.flops_dense // (2 * row.params)
        nonzero_after = int(torch.count_nonzero(small.get_submodule(row.name).weight))
        assert row.flops == 2 * nonzero_after * positions, row.name
        overstated += row.flops < 2 * row.nonzero * positions  # inputs cut, weights still nonzero
    assert overstated >= 2  # every layer after the first lost inputs
    assert report.flops < report.flops_dense


def test_report_without_a_stack_counts_every_nonzero():
    """Outside an nn.Sequential the next layer is not known: nothing is assumed cut."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(6, 8), nn.Linear(8, 3)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)) + x.sum(1, keepdim=True))  # a zero channel is not zero here

    torch.manual_seed(0)
    pruner = prune.Pruner(Net(), sparsity=0.5, pattern="channel", scope="layer")
    for row in pruner.report():
        assert row.flops == 2 * row.nonzero and row.nonzero < row.params
