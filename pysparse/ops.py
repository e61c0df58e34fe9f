"""The Python face of the kernels: spmm, linear and conv2d for numpy arrays and torch tensors.

Everything here is numpy + ``_core`` only (no torch import): the torch-free
runtime calls the same functions.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np

from . import _core
from ._arrays import as_input, as_output
from .formats import SELLMatrix, SparseMatrixBase

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
            f"W must be a pysparse CSRMatrix, BSRMatrix, NMMatrix or SELLMatrix, got {type(w).__name__}; "
            "build one with pysparse.CSRMatrix.from_dense(W)"
        )
    return w._m


def _bias(bias: Any) -> Any:
    if bias is None:
        return None
    b, _ = as_input(bias, "bias")
    return b


def spmm(w: SparseMatrixBase, x: Any, *, bias: Any = None, threads: int | None = None) -> Any:
    """Y = W @ X (+ bias[:, None]). X is (K,) or (K, N) float32; Y follows X's kind.

    W is any pysparse matrix (CSRMatrix, BSRMatrix, NMMatrix, SELLMatrix)."""
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


# The direct ("shifted rows") convolution, stride 1, CSR / BSR (R, 1) weights.
#
# Pad the input into xpad (Cin, Hp, Wp) and flatten it. Weight column
# c = (ci * kh + a) * kw + b then reads xpad at offset(c) = ci * Hp * Wp +
# a * dh * Wp + b * dw, and the "wide" output
#     y_wide[co, j] = sum_p w_p * xpad_flat[offset_p + j],  j < Ho * Wp
# holds y[co, oh, ow] at j = oh * Wp + ow (ow < Wo; the Wp - Wo other columns
# of each row are garbage, cropped). That is the SpMM with ldx = 1 and the
# weight's columns replaced by offsets (_core.testing.spmm_shifted): every ISA's kernel
# runs it unchanged, each nonzero streams one contiguous run of xpad, and no
# im2col copy (Cin * kh * kw * Ho * Wo floats) is made.
#
# Several images side by side make one wider X: xpad (Cin, Hp, nb, Wp), so a
# padded row of every image forms one row of stride nb * Wp; the zero columns
# between images keep them apart. Offsets are monotone in c, so the offset
# matrix has sorted indices like any matrix; it is built once per (weight,
# geometry) and cached on the side (a few geometries per weight at most).
# _core.conv2d_shifted does the padding, the product and the crop in one call
# (the crop per thread, on rows still in its cache); _core.testing.spmm_shifted is the
# bare product.

# Padded images per call: at most this many bytes of xpad (every output row
# streams all of it, so it should stay in L2), and at least one image.
_SHIFTED_BYTES = 256 << 10
# Geometries (input size, images per call, ...) cached per weight.
_SHIFTED_CACHE_SIZE = 4
_shifted_cache: weakref.WeakKeyDictionary[SparseMatrixBase, dict[tuple[int, ...], _core.SparseMatrix]] = (
    weakref.WeakKeyDictionary()
)
_shifted_lock = threading.Lock()  # conv2d may run on several Python threads at once
# An offset must fit the matrix's column range (SparseMatrix: cols < 2**32).
_MAX_OFFSETS = (1 << 32) - 1
# The direct path multiplies every stored weight over Ho * Wp columns instead of
# Ho * Wo, and saves the im2col copy of K = Cin * kh * kw floats per output
# pixel. Per pixel it wins while (Wp - Wo) / Wo * stored / K stays below about
# this (measured on Zen 3, AVX2: a 256->256 7x7 conv on a 3x3 image in (8, 1)
# blocks, 292, ran 0.86x; 128->128 5x5 on 2x2 in (8, 1) blocks, 146, 1.9x).
_SHIFTED_MAX_WASTE = 200.0


def _shifted_fits(
    w: SparseMatrixBase, s: tuple[int, int], k: tuple[int, int], p: tuple[int, int], wp: int, wo: int
) -> bool:
    """Whether conv2d runs this weight as a direct convolution (else im2col); wp, wo: padded and output widths."""
    if s != (1, 1) or (k == (1, 1) and p == (0, 0)):  # strided: im2col; plain 1x1: already direct
        return False
    if w._m.layout not in ("bsr", "sell") or w.block[1] != 1:  # N:M, or blocks spanning columns
        return False
    return (wp - wo) / wo * w.nnz / w.shape[1] <= _SHIFTED_MAX_WASTE


def _shifted_matrix(w: SparseMatrixBase, c: int, k: tuple[int, int], d: tuple[int, int], hp: int, row: int) -> Any:
    """W with column (ci, a, b) replaced by offset ci * hp * row + a * dh * row + b * dw; None if too large."""
    key = (c, k[0], k[1], d[0], d[1], hp, row)
    with _shifted_lock:
        m = _shifted_cache.setdefault(w, {}).get(key)
    if m is not None:
        return m
    plane = hp * row
    cols = (c - 1) * plane + (k[0] - 1) * d[0] * row + (k[1] - 1) * d[1] + 1
    if cols > _MAX_OFFSETS:
        return None
    table = (
        np.arange(c, dtype=np.int64)[:, None, None] * plane
        + np.arange(k[0], dtype=np.int64)[None, :, None] * (d[0] * row)
        + np.arange(k[1], dtype=np.int64)[None, None, :] * d[1]
    ).reshape(-1)
    # A SELL weight runs the direct convolution in CSR (the shifted kernels are
    # CSR / BSR ones): a CSR copy serves only to build the offset matrix, which
    # is what gets cached.
    src = w._m.to_csr() if isinstance(w, SELLMatrix) else w._m
    m = _core.SparseMatrix.from_arrays(
        (src.shape[0], cols), src.block, src.indptr, table[src.indices], src.values
    )
    with _shifted_lock:
        cache = _shifted_cache.setdefault(w, {})
        while len(cache) >= _SHIFTED_CACHE_SIZE:  # the oldest geometry goes first
            cache.pop(next(iter(cache)))
        cache[key] = m
    return m


def _conv_shifted(
    xa: np.ndarray, w: SparseMatrixBase, bias: Any, k: tuple[int, int], p: tuple[int, int], d: tuple[int, int],
    threads: int,
) -> np.ndarray | None:
    """The direct convolution (stride 1) of xa (N, C, H, W); None when offsets would overflow."""
    n, c, h, wd = xa.shape
    hp, wp = h + 2 * p[0], wd + 2 * p[1]
    # Balanced chunks of images side by side: ceil(n / chunks) each, the last one
    # short by less than a chunk (its empty slots stay zero).
    chunks = -(-n // max(1, _SHIFTED_BYTES // (4 * c * hp * wp)))
    per_chunk = -(-n // chunks)
    m = _shifted_matrix(w, c, k, d, hp, per_chunk * wp)
    if m is None:
        return None
    return _core.conv2d_shifted(m, np.ascontiguousarray(xa), k, p, d, per_chunk, bias, threads)


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

    A 1x1, stride-1 convolution runs as W[Cout, Cin] @ X[Cin, H*W] per image. Other
    stride-1 convolutions with a CSR, SELL or BSR (R, 1) weight run directly on the
    padded image (each weight reads a shifted run of it; see ``_conv_shifted``; a
    SELL weight runs this path through its CSR view, :meth:`SELLMatrix.to_csr`,
    since SELL's layout only pays at batch 1); the rest gather the receptive fields
    (im2col, strided views) and then multiply, SELL weights included.
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
            "w must be a pysparse CSRMatrix/BSRMatrix/NMMatrix/SELLMatrix or a 2-D float32 numpy array, "
            f"got {type(w).__name__}"
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
    if n and sparse and _shifted_fits(w, s, k, p, wd + 2 * p[1], out_hw[1]):
        y = _conv_shifted(xa, w, b, k, p, d, t)
        if y is not None:
            return as_output(y, torch_in)
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
