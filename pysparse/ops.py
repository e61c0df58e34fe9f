"""The Python face of the kernels: spmm, linear and conv2d for numpy arrays and torch tensors.

Everything here is numpy + ``_core`` only (no torch import): the torch-free
runtime calls the same functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._arrays import as_input, as_output
from .formats import SparseMatrixBase

__all__ = ["spmm", "linear", "conv2d"]


def _threads(threads: int | None) -> int:
    if threads is None:
        return 0
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")
    return threads


def _matrix(w: Any) -> _core.SparseMatrix:
    if not isinstance(w, SparseMatrixBase):
        raise TypeError(
            f"W must be a pysparse CSRMatrix, BSRMatrix or NMMatrix, got {type(w).__name__}; "
            "build one with pysparse.CSRMatrix.from_dense(W)"
        )
    return w._m


def _bias(bias: Any) -> Any:
    if bias is None:
        return None
    b, _ = as_input(bias, "bias")
    return b


def spmm(w: SparseMatrixBase, x: Any, *, bias: Any = None, threads: int | None = None) -> Any:
    """Y = W @ X (+ bias[:, None]). X is (K,) or (K, N) float32; Y follows X's kind."""
    m = _matrix(w)
    xa, torch_in = as_input(x, "x")
    return as_output(_core.spmm(m, xa, _bias(bias), _threads(threads)), torch_in)


def linear(x: Any, w: SparseMatrixBase, bias: Any = None, *, threads: int | None = None) -> Any:
    """y = x @ W.T + bias, like torch.nn.functional.linear; x is (K,) or (batch, K) float32."""
    m = _matrix(w)
    xa, torch_in = as_input(x, "x")
    return as_output(_core.linear(xa, m, _bias(bias), _threads(threads)), torch_in)


# im2col scratch per chunk of images (bytes): big enough that the kernel sees
# wide X, small enough to stay near the caches and not to balloon memory at
# large batch.
_IM2COL_BYTES = 8 << 20
# A sparse 1x1 conv runs per image (X is a zero-copy view) once an image has at
# least this many pixels; below, images are gathered into one wide X.
_PER_IMAGE_PIXELS = 256


def _pair(v: Any, what: str, minimum: int) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        pair = (int(v), int(v))
    else:
        try:
            items = tuple(v)
        except TypeError:
            raise TypeError(f"{what} must be an int or a pair of ints, got {v!r}") from None
        if len(items) != 2 or not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in items):
            raise TypeError(f"{what} must be an int or a pair of ints, got {v!r}")
        pair = (int(items[0]), int(items[1]))
    if min(pair) < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {v!r}")
    return pair


def conv_output_size(
    size: tuple[int, int], kernel_size: Any, stride: Any = 1, padding: Any = 0, dilation: Any = 1
) -> tuple[int, int]:
    """(Ho, Wo) of a 2-D convolution of an (H, W) image, like torch.nn.Conv2d."""
    k = _pair(kernel_size, "kernel_size", 1)
    s = _pair(stride, "stride", 1)
    p = _pair(padding, "padding", 0)
    d = _pair(dilation, "dilation", 1)
    h, w = ((size[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(2))
    return h, w


def _windows(
    x: np.ndarray, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int], d: tuple[int, int], out: tuple[int, int]
) -> np.ndarray:
    """A read-only strided view (N, C, kh, kw, Ho, Wo) of x's receptive fields: no copy
    beyond the zero padding."""
    if p != (0, 0):
        x = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    sn, sc, sh, sw = x.strides
    return np.lib.stride_tricks.as_strided(
        x,
        shape=(x.shape[0], x.shape[1], k[0], k[1], out[0], out[1]),
        strides=(sn, sc, sh * d[0], sw * d[1], sh * s[0], sw * s[1]),
        writeable=False,
    )


def _conv_sparse(
    xa: np.ndarray, w: SparseMatrixBase, bias: Any, direct: bool, win: Any, out_hw: tuple[int, int], threads: int
) -> np.ndarray:
    n, c = xa.shape[:2]
    cout, kdim = w.shape
    pixels = out_hw[0] * out_hw[1]
    m = w._m
    if n == 1:  # the kernel's output is the result: no copy
        cols = xa[0].reshape(c, pixels) if direct else win(0, 1).reshape(kdim, pixels)
        return _core.spmm(m, cols, bias, threads).reshape(1, cout, pixels)
    y = np.empty((n, cout, pixels), dtype=np.float32)
    if direct and pixels >= _PER_IMAGE_PIXELS:
        # 1x1, stride 1: W[Cout, Cin] @ X[Cin, H*W] per image, X a view of the input.
        for i in range(n):
            y[i] = _core.spmm(m, xa[i].reshape(c, pixels), bias, threads)
        return y
    if not direct and pixels >= _PER_IMAGE_PIXELS:
        for i in range(n):
            y[i] = _core.spmm(m, win(i, i + 1).reshape(kdim, pixels), bias, threads)
        return y
    # Small images: gather a chunk of them into one wide X (K, chunk * pixels).
    chunk = max(1, min(n, _IM2COL_BYTES // max(1, 4 * kdim * pixels)))
    for i in range(0, n, chunk):
        j = min(n, i + chunk)
        if direct:
            cols = xa[i:j].reshape(j - i, c, pixels).transpose(1, 0, 2).reshape(c, (j - i) * pixels)
        else:
            cols = win(i, j).transpose(1, 2, 3, 0, 4, 5).reshape(kdim, (j - i) * pixels)
        yc = _core.spmm(m, cols, bias, threads)
        y[i:j] = yc.reshape(cout, j - i, pixels).transpose(1, 0, 2)
    return y


def _conv_dense(
    xa: np.ndarray, w: np.ndarray, bias: np.ndarray | None, direct: bool, win: Any, out_hw: tuple[int, int], groups: int
) -> np.ndarray:
    n, c = xa.shape[:2]
    cout, kg = w.shape
    pixels = out_hw[0] * out_hw[1]
    if groups == c and not direct:
        return _conv_depthwise(w, bias, win, n, c, cout, out_hw)
    wg = w.reshape(groups, cout // groups, kg)
    y = np.empty((n, cout, pixels), dtype=np.float32)
    chunk = n if direct else max(1, min(n, _IM2COL_BYTES // max(1, 4 * kg * groups * pixels)))
    for i in range(0, n, chunk):
        j = min(n, i + chunk)
        if direct:
            cols = xa[i:j].reshape(j - i, groups, kg, pixels)
        else:
            cols = win(i, j).reshape(j - i, groups, kg, pixels)  # rows ordered (c, kh, kw) like w
        # (g, Cout/g, Kg) @ (n, g, Kg, P) -> (n, g, Cout/g, P)
        np.matmul(wg, cols, out=y[i:j].reshape(j - i, groups, cout // groups, pixels))
    if bias is not None:
        y += bias[:, None]
    return y


def _conv_depthwise(
    w: np.ndarray, bias: np.ndarray | None, win: Any, n: int, c: int, cout: int, out_hw: tuple[int, int]
) -> np.ndarray:
    """groups == channels: one multiply-add pass over the image per kernel tap (no im2col)."""
    windows = win(0, n)  # (N, C, kh, kw, Ho, Wo), a view
    kh, kw = windows.shape[2:4]
    mult = cout // c
    wv = w.reshape(c, mult, kh, kw)
    y = np.zeros((n, c, mult, out_hw[0], out_hw[1]), dtype=np.float32)
    tmp = np.empty_like(y)
    for i in range(kh):
        for j in range(kw):
            np.multiply(windows[:, :, None, i, j], wv[None, :, :, i, j, None, None], out=tmp)
            y += tmp
    y = y.reshape(n, cout, out_hw[0] * out_hw[1])
    if bias is not None:
        y += bias[:, None]
    return y


def conv2d(
    x: Any,
    w: Any,
    bias: Any = None,
    *,
    kernel_size: Any,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    threads: int | None = None,
) -> Any:
    """A 2-D convolution like torch.nn.functional.conv2d (zero padding), torch-free.

    ``x`` is (N, Cin, H, W) float32, numpy or torch; the output (N, Cout, Ho, Wo)
    follows x's kind. ``w`` is the weight flattened like ``conv.weight.reshape(Cout, -1)``,
    i.e. (Cout, Cin/groups * kh * kw) with columns ordered (cin, kh, kw): either a
    pysparse sparse matrix (groups must be 1) or a 2-D float32 numpy array (dense,
    any groups, depthwise included). ``kernel_size``, ``stride``, ``padding`` and
    ``dilation`` are ints or (h, w) pairs. ``threads`` applies to the sparse kernels;
    dense weights run through numpy's matmul.

    A 1x1, stride-1 convolution runs as W[Cout, Cin] @ X[Cin, H*W] per image; a k x k
    one gathers the receptive fields (im2col, strided views) and then multiplies.
    """
    t = _threads(threads)
    xa, torch_in = as_input(x, "x")
    if xa.dtype != np.float32:
        raise TypeError(f"x must be float32, got {xa.dtype}; convert it with x.astype(numpy.float32) / x.float()")
    if xa.ndim != 4:
        raise ValueError(f"x must be 4-D (N, C, H, W), got shape {xa.shape}; add a batch axis with x[None]")
    k = _pair(kernel_size, "kernel_size", 1)
    s = _pair(stride, "stride", 1)
    p = _pair(padding, "padding", 0)
    d = _pair(dilation, "dilation", 1)
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    groups = int(groups)
    n, c, h, wd = xa.shape
    sparse = isinstance(w, SparseMatrixBase)
    if sparse:
        if groups != 1:
            raise ValueError(
                "grouped / depthwise convolutions need a dense weight (a 2-D float32 numpy array); "
                f"got a {type(w).__name__} with groups={groups}"
            )
    elif isinstance(w, np.ndarray):
        if w.dtype != np.float32:
            raise TypeError(f"w must be float32, got {w.dtype}; use w.astype(numpy.float32)")
        if w.ndim != 2:
            raise ValueError(
                f"w must be 2-D (Cout, Cin/groups*kh*kw) like conv.weight.reshape(Cout, -1), got {w.shape}"
            )
    else:
        raise TypeError(
            f"w must be a pysparse CSRMatrix/BSRMatrix/NMMatrix or a 2-D float32 numpy array, got {type(w).__name__}"
        )
    cout, kdim = w.shape
    if c % groups or cout % groups:
        raise ValueError(f"groups={groups} must divide both input channels ({c}) and output channels ({cout})")
    if kdim != c // groups * k[0] * k[1]:
        raise ValueError(
            f"channel mismatch: w is ({cout}, {kdim}) but x has {c} channels, groups={groups} and a {k[0]}x{k[1]} "
            f"kernel, so w must be ({cout}, {c // groups * k[0] * k[1]})"
        )
    out_hw = conv_output_size((h, wd), k, s, p, d)
    if min(out_hw) < 1:
        raise ValueError(
            f"input {h}x{wd} is too small for a {k[0]}x{k[1]} kernel (dilation {d}, padding {p}): output {out_hw}"
        )
    b = None
    if bias is not None:
        b, _ = as_input(bias, "bias")
        if b.dtype != np.float32 or b.shape != (cout,):
            raise ValueError(f"bias must be float32 of shape ({cout},), got {b.dtype} {b.shape}")
    direct = k == (1, 1) and s == (1, 1) and p == (0, 0)
    if direct:
        xa = np.ascontiguousarray(xa)
        win = None
    else:
        windows = _windows(xa, k, s, p, d, out_hw)

        def win(i: int, j: int) -> np.ndarray:
            return windows[i:j]

    if n == 0:
        y = np.zeros((0, cout, out_hw[0] * out_hw[1]), dtype=np.float32)
    elif sparse:
        y = _conv_sparse(xa, w, b, direct, win, out_hw, t)
    else:
        y = _conv_dense(xa, w, b, direct, win, out_hw, groups)
    return as_output(y.reshape(n, cout, out_hw[0], out_hw[1]), torch_in)
