"""pysparse.fold: batch-norm folding and Linear merging are exact rewrites in eval mode."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from pysparse.fold import fold, fold_batchnorm, merge_linear  # noqa: E402

# float32 outputs of two equal computations done in different orders.
FOLD_RTOL = 1e-5
FOLD_ATOL = 1e-5


def randomise_bn(model: nn.Module, gen: torch.Generator) -> nn.Module:
    """Give every batch norm non-trivial running statistics and affine parameters."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen))
            m.running_var.copy_(torch.rand(n, generator=gen) * 2 + 0.1)
            if m.affine:
                with torch.no_grad():
                    m.weight.copy_(torch.randn(n, generator=gen))
                    m.bias.copy_(torch.randn(n, generator=gen))
    return model.eval()


def assert_same(a: nn.Module, b: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert ya.shape == yb.shape
    torch.testing.assert_close(yb, ya, rtol=FOLD_RTOL, atol=FOLD_ATOL)


def count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.fixture
def gen():
    torch.manual_seed(0)
    return torch.Generator().manual_seed(1234)


def conv_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # with bias
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),  # depthwise, no bias
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(8, 6, 1, groups=2, bias=False), nn.BatchNorm2d(6, affine=False)),  # nested, grouped
        nn.Flatten(),
        nn.Linear(6 * 5 * 5, 12),
        nn.BatchNorm1d(12),
        nn.Linear(12, 4),
    )


def test_conv_net_folds_all_batchnorms(gen):
    model = randomise_bn(conv_net(), gen)
    before = copy.deepcopy(model.state_dict())
    folded = fold_batchnorm(model)
    assert count(folded, nn.modules.batchnorm._BatchNorm) == 0
    assert count(model, nn.modules.batchnorm._BatchNorm) == 4  # the input is untouched
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert folded[3].bias is not None  # a bias appears where there was none
    assert_same(model, folded, torch.randn(5, 3, 5, 5, generator=gen))


def test_inplace_returns_the_same_object(gen):
    model = randomise_bn(conv_net(), gen)
    ref = copy.deepcopy(model)
    out = fold_batchnorm(model, inplace=True)
    assert out is model
    assert count(model, nn.modules.batchnorm._BatchNorm) == 0
    assert_same(ref, model, torch.randn(2, 3, 5, 5, generator=gen))


class Branchy(nn.Module):
    """Not a Sequential: pairs only fx finds, plus one that must not fold."""

    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(4, 6, 3, padding=1)
        self.bn_a = nn.BatchNorm2d(6)
        self.conv_b = nn.Conv2d(4, 6, 1, bias=False)
        self.bn_b = nn.BatchNorm2d(6)
        self.conv_c = nn.Conv2d(6, 6, 1)
        self.bn_c = nn.BatchNorm2d(6)

    def forward(self, x):
        y = self.bn_a(self.conv_a(x)) + self.bn_b(self.conv_b(x))
        z = self.conv_c(y)
        return self.bn_c(z) + z  # conv_c's output has a second user: no fold


def test_fx_finds_pairs_outside_sequential(gen):
    model = randomise_bn(Branchy(), gen)
    folded = fold_batchnorm(model)
    assert isinstance(folded.bn_a, nn.Identity) and isinstance(folded.bn_b, nn.Identity)
    assert isinstance(folded.bn_c, nn.BatchNorm2d)
    assert_same(model, folded, torch.randn(3, 4, 6, 6, generator=gen))


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7))

    def forward(self, x):
        y = self.body(x)
        if y.sum() > 0:  # data-dependent control flow: torch.fx cannot trace this
            y = y * 2
        return self.head(y.mean((2, 3)))


def test_sequential_fallback_when_fx_cannot_trace(gen):
    model = randomise_bn(Untraceable(), gen)
    with pytest.raises(Exception):
        torch.fx.symbolic_trace(model)
    folded = fold_batchnorm(model)
    assert count(folded, nn.modules.batchnorm._BatchNorm) == 0
    assert_same(model, folded, torch.randn(4, 3, 6, 6, generator=gen))


def test_conv1d_and_conv3d(gen):
    m1 = randomise_bn(nn.Sequential(nn.Conv1d(3, 4, 3), nn.BatchNorm1d(4)), gen)
    m3 = randomise_bn(nn.Sequential(nn.Conv3d(2, 3, 2), nn.BatchNorm3d(3)), gen)
    assert_same(m1, fold_batchnorm(m1), torch.randn(2, 3, 9, generator=gen))
    assert_same(m3, fold_batchnorm(m3), torch.randn(2, 2, 4, 4, 4, generator=gen))


def test_pruned_zeros_stay_zero(gen):
    model = randomise_bn(nn.Sequential(nn.Linear(16, 8), nn.BatchNorm1d(8)), gen)
    with torch.no_grad():
        model[0].weight[:, ::2] = 0.0
    folded = fold_batchnorm(model)
    assert torch.equal(folded[0].weight == 0, model[0].weight == 0)


def test_batchnorm_in_training_mode_is_refused(gen):
    model = randomise_bn(conv_net(), gen).train()
    with pytest.raises(ValueError, match="training mode.*model.eval"):
        fold_batchnorm(model)


def test_batchnorm_without_running_stats_is_refused():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3, track_running_stats=False)).eval()
    with pytest.raises(ValueError, match="track_running_stats"):
        fold_batchnorm(model)


class Mask(nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w):
        return w * self.mask


@pytest.mark.parametrize("how", ["parametrize", "torch.nn.utils.prune"])
def test_masked_layer_is_refused(gen, how):
    import torch.nn.utils.parametrize
    import torch.nn.utils.prune

    model = randomise_bn(nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)), gen)
    if how == "parametrize":
        torch.nn.utils.parametrize.register_parametrization(model[0], "weight", Mask(torch.ones(4, 6)))
    else:
        torch.nn.utils.prune.l1_unstructured(model[0], "weight", amount=0.5)
    with pytest.raises(ValueError, match="squash"):
        fold_batchnorm(model)
    with pytest.raises(ValueError, match="squash"):
        merge_linear(model)


def test_shared_layer_is_left_alone(gen):
    lin = nn.Linear(5, 5)
    model = randomise_bn(nn.Sequential(lin, nn.BatchNorm1d(5), nn.ReLU(), lin), gen)
    folded = fold_batchnorm(model)
    assert isinstance(folded[1], nn.BatchNorm1d)
    assert_same(model, folded, torch.randn(3, 5, generator=gen))


@pytest.mark.parametrize("bad", [None, 3, "model"])
def test_not_a_module(bad):
    for fn in (fold_batchnorm, merge_linear, fold):
        with pytest.raises(TypeError, match="torch.nn.Module"):
            fn(bad)


def test_merge_mlp_chain(gen):
    model = nn.Sequential(
        nn.Linear(10, 8),
        nn.Dropout(0.5),
        nn.Linear(8, 6, bias=False),
        nn.Identity(),
        nn.Linear(6, 4),
        nn.ReLU(),
        nn.Linear(4, 3),
    ).eval()
    merged = merge_linear(model)
    linears = [m for m in merged.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(10, 4), (4, 3)]
    assert count(model, nn.Linear) == 4  # the input is untouched
    assert_same(model, merged, torch.randn(7, 10, generator=gen))


def test_merge_without_any_bias(gen):
    model = nn.Sequential(nn.Linear(6, 5, bias=False), nn.Linear(5, 4, bias=False)).eval()
    merged = merge_linear(model)
    assert merged[0].bias is None and isinstance(merged[1], nn.Identity)
    assert_same(model, merged, torch.randn(3, 6, generator=gen))


def test_bottleneck_is_not_merged_unless_asked(gen):
    model = nn.Sequential(nn.Linear(40, 4), nn.Linear(4, 40)).eval()  # 320 weights vs 1600 merged
    kept = merge_linear(model)
    assert count(kept, nn.Linear) == 2
    forced = merge_linear(model, only_if_smaller=False)
    assert count(forced, nn.Linear) == 1
    assert_same(model, forced, torch.randn(3, 40, generator=gen))


def test_sparse_layers_are_not_densified(gen):
    model = nn.Sequential(nn.Linear(32, 32), nn.Linear(32, 32)).eval()
    with torch.no_grad():
        for lin in model:
            lin.weight.mul_((torch.rand(32, 32, generator=gen) < 0.1).float())  # ~90% sparse
    assert count(merge_linear(model), nn.Linear) == 2


def test_dropout_in_training_mode_is_refused():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1), nn.Linear(4, 4))
    with pytest.raises(ValueError, match="training mode.*model.eval"):
        merge_linear(model)


def test_fold_does_both(gen):
    model = randomise_bn(
        nn.Sequential(
            nn.Linear(12, 10), nn.BatchNorm1d(10), nn.Linear(10, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)
        ),
        gen,
    )
    folded = fold(model)
    assert count(folded, nn.modules.batchnorm._BatchNorm) == 0
    assert [(m.in_features, m.out_features) for m in folded.modules() if isinstance(m, nn.Linear)] == [(12, 8), (8, 3)]
    assert_same(model, folded, torch.randn(6, 12, generator=gen))
    assert fold(model, inplace=True) is model
