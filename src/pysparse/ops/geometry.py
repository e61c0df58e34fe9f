"""Convolution geometry: output sizes and 'same' padding (the one copy ops, nn and export use)."""

from __future__ import annotations

from typing import Any

from .._checks import pair


def out_size(size: Any, k: int, s: int, p: int, d: int) -> Any:
    """One spatial output size of a convolution (works on torch's symbolic ints too)."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def output_hw(
    size: tuple[int, int], k: tuple[int, int], s: tuple[int, int], p: tuple[int, int], d: tuple[int, int]
) -> tuple[int, int]:
    """(Ho, Wo) from parsed (h, w) pairs."""
    return out_size(size[0], k[0], s[0], p[0], d[0]), out_size(size[1], k[1], s[1], p[1], d[1])


def conv_output_size(
    size: tuple[int, int], kernel_size: Any, stride: Any = 1, padding: Any = 0, dilation: Any = 1
) -> tuple[int, int]:
    """(Ho, Wo) of a 2-D convolution of an (H, W) image, like torch.nn.Conv2d."""
    return output_hw(
        size,
        pair(kernel_size, "kernel_size", 1),
        pair(stride, "stride", 1),
        pair(padding, "padding", 0),
        pair(dilation, "dilation", 1),
    )


def same_padding(kernel_size: Any, dilation: Any) -> tuple[int, int]:
    """The symmetric zero padding of padding='same' (stride 1); ValueError when it would be asymmetric."""
    k, d = pair(kernel_size, "kernel_size", 1), pair(dilation, "dilation", 1)
    total = [di * (ki - 1) for di, ki in zip(d, k)]
    if any(t % 2 for t in total):
        raise ValueError("padding='same' with an even receptive field pads asymmetrically, which is not supported")
    return total[0] // 2, total[1] // 2
