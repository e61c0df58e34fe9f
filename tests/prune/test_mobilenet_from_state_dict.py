"""bench/models/mobilenet_v2.py's ``from_state_dict``: the benchmark workers build the channel-pruned
MobileNetV2 (bench_peers.py's ``channels_half``) from nothing but its state dict, so the widths it
reads must give back the pruned model exactly, and the standard checkpoint must still load."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import bench_cnn_quality as cnnq  # noqa: E402
from models import mobilenet_v2 as mnv2  # noqa: E402


def tiny(num_classes: int = 10) -> torch.nn.Module:
    torch.manual_seed(0)
    m = mnv2.MobileNetV2(num_classes=num_classes, width=0.5)
    with torch.no_grad():  # BatchNorm statistics that are not all 0 / 1, so a wrong channel shows
        for b in m.modules():
            if isinstance(b, torch.nn.BatchNorm2d):
                b.running_mean.uniform_(-0.5, 0.5)
                b.running_var.uniform_(0.5, 2.0)
                b.weight.uniform_(0.5, 1.5)
                b.bias.uniform_(-0.2, 0.2)
    return m.eval()


def test_a_channel_pruned_model_round_trips_through_its_state_dict():
    dense = tiny()
    small = cnnq.channels_removed(dense, 0.4)
    sd = small.state_dict()
    widths = mnv2.channels_of(sd)
    standard = mnv2.channels_of(dense.state_dict())
    assert widths.last < standard.last and all(h < h0 for (h, _), (h0, _) in zip(widths.blocks[1:], standard.blocks[1:]))
    built = mnv2.from_state_dict(sd)
    assert not built.training
    assert list(built.state_dict()) == list(dense.state_dict()) and set(sd) == set(dense.state_dict())  # the names
    assert [b.use_res_connect for b in built.features[1:-1]] == [b.use_res_connect for b in dense.features[1:-1]]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(built(x), small(x), rtol=0, atol=0)
        assert (small(x) - dense(x)).abs().max() > 1e-3  # the pruning changed something: the check can fail


def test_widths_follow_the_architecture_not_the_equality_of_widths():
    # a pruned stream can make a block's input and output widths equal by chance: still no residual add
    sd = tiny().state_dict()
    w = mnv2.channels_of(sd)
    blocks = list(w.blocks)
    blocks[0] = (w.stem, w.stem)  # block 1 (no expansion, stride 1): 16 -> 16 channels, as wide as its input
    m = mnv2.MobileNetV2(num_classes=10, channels=w._replace(blocks=tuple(blocks)))
    assert not m.features[1].use_res_connect and m.features[3].use_res_connect
    with pytest.raises(ValueError, match="17 blocks"):
        mnv2.MobileNetV2(channels=w._replace(blocks=w.blocks[:-1]))
    with pytest.raises(RuntimeError, match="size mismatch"):  # strict: a width read wrong does not load
        bad = dict(sd, **{"classifier.1.weight": sd["classifier.1.weight"][:, :-1]})
        mnv2.from_state_dict(bad)


def test_the_standard_checkpoint_still_loads_strictly_both_ways():
    try:
        path = mnv2.checkpoint_path()
    except FileNotFoundError:
        pytest.skip("the ImageNet MobileNetV2 checkpoint is not installed")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    assert mnv2.channels_of(sd) == mnv2.channels_of(mnv2.MobileNetV2().state_dict())
    m = mnv2.pretrained()
    built = mnv2.from_state_dict(sd)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(built(x), m(x), rtol=0, atol=0)
