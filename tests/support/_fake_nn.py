"""A minimal stand-in for pysparse.nn.SparseLinear / SparseConv2d (tests only).

It has the documented attributes (weight: a pysparse matrix or a dense float32
array shaped (out, in) / (Cout, Cin/groups*kh*kw), bias, format, sizes) and a
plain dense torch forward, which is all pysparse.save needs to see. The save
side recognises the real modules by the same class names.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

import pysparse as ps


def magnitude_prune(w: np.ndarray, sparsity: float, pattern: str = "unstructured") -> np.ndarray:
    """Zero the smallest weights: unstructured, '(8,1)' blocks of rows, or N:M along rows."""
    w = w.copy()
    if pattern == "nm":  # 2:4
        g = w.reshape(w.shape[0], -1, 4)
        drop = np.argsort(np.abs(g), axis=2)[:, :, :2]
        np.put_along_axis(g, drop, 0.0, axis=2)
        return g.reshape(w.shape)
    if pattern == "bsr":
        rows = -(-w.shape[0] // 8) * 8
        pad = np.zeros((rows, w.shape[1]), dtype=w.dtype)
        pad[: w.shape[0]] = w
        score = np.abs(pad).reshape(rows // 8, 8, -1).sum(1)
        cut = np.quantile(score, sparsity)
        keep = np.repeat(score > cut, 8, axis=0)[: w.shape[0]]
        w[~keep] = 0.0
        return w
    cut = np.quantile(np.abs(w), sparsity)
    w[np.abs(w) <= cut] = 0.0
    return w


def pack(w: np.ndarray, fmt: str):
    if fmt == "csr":
        return ps.CSRMatrix.from_dense(w)
    if fmt == "sell":
        return ps.SELLMatrix.from_dense(w)
    if fmt == "bsr":
        return ps.BSRMatrix.from_dense(w, block=(8, 1))
    if fmt == "nm":
        return ps.NMMatrix.from_dense(w, "2:4")
    return np.ascontiguousarray(w, dtype=np.float32)


def _dense(w) -> torch.Tensor:
    return torch.from_numpy(w.to_dense() if isinstance(w, ps.SparseMatrixBase) else w)


class SparseLinear(torch.nn.Module):
    def __init__(self, lin: torch.nn.Linear, fmt: str, sparsity: float = 0.9) -> None:
        super().__init__()
        pattern = {"nm": "nm", "bsr": "bsr"}.get(fmt, "unstructured")
        w = lin.weight.detach().numpy().astype(np.float32)
        if fmt != "dense":
            w = magnitude_prune(w, sparsity, pattern)
        self.weight = pack(w, fmt)
        self.register_buffer("bias", None if lin.bias is None else lin.bias.detach().clone())
        self.in_features, self.out_features, self.format = lin.in_features, lin.out_features, fmt

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, _dense(self.weight), self.bias)


class SparseConv2d(torch.nn.Module):
    def __init__(self, conv: torch.nn.Conv2d, fmt: str, sparsity: float = 0.9) -> None:
        super().__init__()
        pattern = {"nm": "nm", "bsr": "bsr"}.get(fmt, "unstructured")
        w = conv.weight.detach().numpy().astype(np.float32).reshape(conv.out_channels, -1)
        if fmt != "dense":
            w = magnitude_prune(w, sparsity, pattern)
        self.weight = pack(w, fmt)
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())
        for k in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups"):
            setattr(self, k, getattr(conv, k))
        self.format = fmt

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = _dense(self.weight).reshape(self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


def sparsify(model: torch.nn.Module, fmt: str, sparsity: float = 0.9, *, skip_grouped: bool = True) -> torch.nn.Module:
    """Swap every Linear / Conv2d child (recursively) for a stand-in in format ``fmt``."""
    for name, child in model.named_children():
        if isinstance(child, torch.nn.Linear):
            setattr(model, name, SparseLinear(child, fmt, sparsity))
        elif isinstance(child, torch.nn.Conv2d):
            grouped = child.groups > 1
            setattr(model, name, SparseConv2d(child, "dense" if grouped and skip_grouped else fmt, sparsity))
        else:
            sparsify(child, fmt, sparsity, skip_grouped=skip_grouped)
    return model
