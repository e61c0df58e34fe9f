"""The dense-weight convolution (numpy matmul; grouped and depthwise included) and the
receptive-field view both conv paths gather from."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

# im2col scratch per chunk of images (bytes): big enough that the kernel sees
# wide X, small enough to stay near the caches and not to balloon memory at
# large batch.
IM2COL_BYTES = 8 << 20

Windows = Callable[[int, int], np.ndarray]


def windows(
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


def conv_dense(
    xa: np.ndarray, w: np.ndarray, bias: np.ndarray | None, direct: bool, win: Any, out_hw: tuple[int, int], groups: int
) -> np.ndarray:
    n, c = xa.shape[:2]
    cout, kg = w.shape
    pixels = out_hw[0] * out_hw[1]
    if groups == c and not direct:
        return _conv_depthwise(w, bias, win, n, c, cout, out_hw)
    wg = w.reshape(groups, cout // groups, kg)
    y = np.empty((n, cout, pixels), dtype=np.float32)
    chunk = n if direct else max(1, min(n, IM2COL_BYTES // max(1, 4 * kg * groups * pixels)))
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
    w: np.ndarray, bias: np.ndarray | None, win: Windows, n: int, c: int, cout: int, out_hw: tuple[int, int]
) -> np.ndarray:
    """groups == channels: one multiply-add pass over the image per kernel tap (no im2col)."""
    view = win(0, n)  # (N, C, kh, kw, Ho, Wo), a view
    kh, kw = view.shape[2:4]
    mult = cout // c
    wv = w.reshape(c, mult, kh, kw)
    y = np.zeros((n, c, mult, out_hw[0], out_hw[1]), dtype=np.float32)
    tmp = np.empty_like(y)
    for i in range(kh):
        for j in range(kw):
            np.multiply(view[:, :, None, i, j], wv[None, :, :, i, j, None, None], out=tmp)
            y += tmp
    y = y.reshape(n, cout, out_hw[0] * out_hw[1])
    if bias is not None:
        y += bias[:, None]
    return y
