"""2-D convolution with a pysparse (or dense numpy) weight: ``conv2d`` and its prepared ``Conv2dPlan``.

A plan validates the weight and the attributes and picks the path once
(1x1 | shifted | depthwise | im2col); a call then checks only x. ``conv2d`` is the checked
one-shot function: it builds a plan and runs it. Keep a plan (``SparseConv2d`` and
the runtime do) to convolve many inputs: it also keeps the direct path's offset
matrices, one per input geometry.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .. import _checks, _core
from .._arrays import as_input, as_output
from ..formats import SparseMatrixBase
from .dense import IM2COL_BYTES, conv_dense, windows
from .geometry import output_hw

# A sparse 1x1 conv runs per image (X is a zero-copy view) once an image has at
# least this many pixels; below, images are gathered into one wide X.
PER_IMAGE_PIXELS = 256

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
# matrix has sorted indices like any matrix; the plan builds it once per
# geometry and keeps the last few. _core.conv2d_shifted does the padding, the
# product and the crop in one call (the crop per thread, on rows still in its
# cache); _core.testing.spmm_shifted is the bare product.

# Padded images per call: at most this many bytes of xpad (every output row
# streams all of it, so it should stay in L2), and at least one image.
SHIFTED_BYTES = 256 << 10
# Geometries (input size, images per call) a plan keeps offset matrices for.
SHIFTED_CACHE_SIZE = 4
# An offset must fit the matrix's column range (SparseMatrix: cols < 2**32).
MAX_OFFSETS = (1 << 32) - 1
# The direct path multiplies every stored weight over Ho * Wp columns instead of
# Ho * Wo, and saves the im2col copy of K = Cin * kh * kw floats per output
# pixel. Per pixel it wins while (Wp - Wo) / Wo * stored / K stays below about
# this (measured on Zen 3, AVX2: a 256->256 7x7 conv on a 3x3 image in (8, 1)
# blocks, 292, ran 0.86x; 128->128 5x5 on 2x2 in (8, 1) blocks, 146, 1.9x).
SHIFTED_MAX_WASTE = 200.0

# The C++ depthwise kernel (_core.dwconv2d: groups == channels, dense weight,
# dilation 1) takes kernel sizes, strides and paddings up to these; past them
# the numpy path runs.
DWCONV_MAX_KERNEL, DWCONV_MAX_STRIDE, DWCONV_MAX_PADDING = 16, 16, 64
# The C++ direct convolution (_core.conv2d_direct: dense weight, groups 1, dilation 1, not a plain
# 1x1) takes a network's stem: at most this many input channels (an image's), where an im2col copies
# Cin * kh * kw rows per output pixel for a product of only Cout rows (MobileNetV2's 3x3 stride-2
# stem, 3 -> 32 at 224x224: numpy's im2col + BLAS 3 ms on one thread); the same size limits as the
# depthwise kernel.
DIRECT_MAX_CHANNELS = 4
# What a plan may fuse after the convolution (the depthwise kernel does it in
# its epilogue; the other paths in numpy, in place).
ACTIVATIONS = ("none", "relu", "relu6")

_WEIGHT_TYPES = "a pysparse CSRMatrix/BSRMatrix/NMMatrix/SELLMatrix or a 2-D float32 numpy array"


def check_x(x: Any) -> tuple[np.ndarray, bool]:
    """x as a 4-D float32 numpy array (any strides) and whether it came from torch."""
    xa, torch_in = as_input(x, "x")
    if xa.dtype != np.float32:
        raise TypeError(f"x must be float32, got {xa.dtype}; convert it with x.astype(numpy.float32) / x.float()")
    if xa.ndim != 4:
        raise ValueError(f"x must be 4-D (N, C, H, W), got shape {xa.shape}; add a batch axis with x[None]")
    return xa, torch_in


class Conv2dPlan:
    """A convolution like torch.nn.functional.conv2d (zero padding) prepared for one weight.

    ``Conv2dPlan(w, bias, kernel_size=, stride=, padding=, dilation=, groups=, threads=)``
    takes the arguments of :func:`conv2d` except x, checks them and picks the path;
    ``plan(x)`` convolves x (N, Cin, H, W) float32, numpy or torch (any strides), and
    checks only x. ``plan(x, bias)`` uses ``bias`` instead of the plan's for that call.
    """

    def __init__(
        self,
        w: Any,
        bias: Any = None,
        *,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        threads: int | None = None,
        activation: str = "none",
    ) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r:.40}")
        self.activation = activation
        self.threads = _checks.threads(threads)
        self.kernel_size = k = _checks.pair(kernel_size, "kernel_size", 1)
        self.stride = s = _checks.pair(stride, "stride", 1)
        self.padding = p = _checks.pair(padding, "padding", 0)
        self.dilation = _checks.pair(dilation, "dilation", 1)
        self.groups = groups = _checks.positive_int(groups, "groups")
        self.sparse = isinstance(w, SparseMatrixBase)
        if self.sparse:
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
            raise TypeError(f"w must be {_WEIGHT_TYPES}, got {type(w).__name__}")
        self.weight = w
        cout, kdim = (int(v) for v in w.shape)
        if kdim % (k[0] * k[1]):
            raise ValueError(
                f"channel mismatch: w is ({cout}, {kdim}), which is not (Cout, Cin/groups*{k[0]}*{k[1]}) "
                f"for a {k[0]}x{k[1]} kernel"
            )
        if cout % groups:
            raise ValueError(f"groups={groups} must divide the output channels ({cout})")
        self.out_channels = cout
        self.in_channels = kdim // (k[0] * k[1]) * groups
        self.bias = self.check_bias(bias)
        self.direct = k == (1, 1) and s == (1, 1) and p == (0, 0)  # 1x1: W @ X[Cin, H*W] per image
        # Stride 1 with CSR / SELL / BSR (R, 1) weights may run the direct (shifted) convolution.
        self.shifted = (
            self.sparse and s == (1, 1) and not self.direct and w.shifted_conv and w.block[1] == 1
        )
        # groups == Cin == Cout with a dense weight, dilation 1: the C++ depthwise kernel.
        self.depthwise = (
            not self.sparse and groups == self.in_channels == cout and self.dilation == (1, 1)
            and max(k) <= DWCONV_MAX_KERNEL and max(s) <= DWCONV_MAX_STRIDE and max(p) <= DWCONV_MAX_PADDING
        )
        self._dw_weight = np.ascontiguousarray(w.reshape(cout, k[0], k[1])) if self.depthwise else None
        # groups 1, few input channels, dense weight, dilation 1: the C++ direct kernel.
        self.stem = (
            not self.sparse and groups == 1 and not self.direct and self.in_channels <= DIRECT_MAX_CHANNELS
            and self.dilation == (1, 1)
            and max(k) <= DWCONV_MAX_KERNEL and max(s) <= DWCONV_MAX_STRIDE and max(p) <= DWCONV_MAX_PADDING
        )
        self._stem_weight = (
            np.ascontiguousarray(w.reshape(cout, self.in_channels, k[0], k[1])) if self.stem else None
        )
        self._waste_per_col = w.nnz / kdim if self.shifted and kdim else 0.0
        self._offsets: dict[tuple[int, int, int], Any] = {}
        self._lock = threading.Lock()  # a plan may run on several Python threads at once

    # copy / deepcopy / pickling: the lock is made anew and the offset matrices rebuilt on use.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_lock"]
        state["_offsets"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # plans pickled before the depthwise path and the fused activation
        state = {"activation": "none", "depthwise": False, "_dw_weight": None, "stem": False, "_stem_weight": None,
                 **state}
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def attrs(self) -> tuple[Any, ...]:
        """(kernel_size, stride, padding, dilation, groups, threads) as parsed (threads 0: the default)."""
        return self.kernel_size, self.stride, self.padding, self.dilation, self.groups, self.threads

    def check_bias(self, bias: Any) -> np.ndarray | None:
        """bias as the float32 (Cout,) numpy array the kernels take (None stays None)."""
        if bias is None:
            return None
        b, _ = as_input(bias, "bias")
        if b.dtype != np.float32 or b.shape != (self.out_channels,):
            raise ValueError(f"bias must be float32 of shape ({self.out_channels},), got {b.dtype} {b.shape}")
        return b

    @property
    def path(self) -> str:
        """The path the plan picked from its attributes: '1x1', 'shifted' (stride-1 CSR / SELL /
        BSR (R, 1): direct on the padded image when the shape does not waste too much), 'depthwise'
        (dense, groups == channels, dilation 1: the C++ kernel), 'direct' (dense, groups 1, at most
        DIRECT_MAX_CHANNELS input channels, dilation 1: the C++ direct kernel of network stems) or 'im2col'."""
        if self.depthwise:
            return "depthwise"
        if self.stem:
            return "direct"
        return "1x1" if self.direct else "shifted" if self.shifted else "im2col"

    def __call__(self, x: Any, bias: Any = None) -> Any:
        xa, torch_in = check_x(x)
        return as_output(self.run(xa, self.bias if bias is None else self.check_bias(bias)), torch_in)

    def run(self, xa: np.ndarray, bias: np.ndarray | None, residual: np.ndarray | None = None) -> np.ndarray:
        """The convolution of a checked 4-D float32 numpy x (see check_x), with a checked bias,
        then the plan's activation, then + residual (float32 of the output's shape, C-contiguous;
        the caller checks it). The sparse kernels apply activation and residual in their
        epilogue (csrc/epilogue.h); the other paths in place on the fresh output."""
        if self.depthwise and xa.shape[1:2] == (self.in_channels,):
            # the kernel checks the geometry (ValueError: input too small) and fuses bias + activation
            y = _core.dwconv2d(xa, self._dw_weight, bias, self.stride, self.padding, self.activation, self.threads)
            if residual is not None:
                np.add(y, residual, out=y)
            return y
        if self.stem and xa.shape[1:2] == (self.in_channels,):
            y = _core.conv2d_direct(xa, self._stem_weight, bias, self.stride, self.padding, self.activation,
                                    self.threads)
            if residual is not None:
                np.add(y, residual, out=y)
            return y
        y, done = self._run(xa, bias, residual)
        if done:
            return y
        if self.activation != "none":  # in place; NaN stays NaN as in torch
            np.maximum(y, 0.0, out=y)
            if self.activation == "relu6":
                np.minimum(y, 6.0, out=y)
        if residual is not None:
            np.add(y, residual, out=y)
        return y

    def _run(
        self, xa: np.ndarray, bias: np.ndarray | None, residual: np.ndarray | None = None
    ) -> tuple[np.ndarray, bool]:
        """(y, whether the epilogue, activation and residual, is already applied)."""
        n, c, h, wd = xa.shape
        k, s, p, d = self.kernel_size, self.stride, self.padding, self.dilation
        if c != self.in_channels:
            cout, kdim = self.weight.shape
            g = self.groups
            raise ValueError(
                f"channel mismatch: w is ({cout}, {kdim}) but x has {c} channels, groups={g} and a {k[0]}x{k[1]} "
                f"kernel, so w must be ({cout}, {c // g * k[0] * k[1]})"
            )
        out_hw = output_hw((h, wd), k, s, p, d)
        if min(out_hw) < 1:
            raise ValueError(
                f"input {h}x{wd} is too small for a {k[0]}x{k[1]} kernel (dilation {d}, padding {p}): output {out_hw}"
            )
        cout = self.out_channels
        if n and self.shifted and self._shifted_fits(wd + 2 * p[1], out_hw[1]):
            y = _conv_shifted(xa, self, bias, residual)
            if y is not None:
                return y, True
        if self.direct:
            xa = np.ascontiguousarray(xa)
            win = None
        else:
            view = windows(xa, k, s, p, d, out_hw)

            def win(i: int, j: int) -> np.ndarray:
                return view[i:j]

        done = False
        if n == 0:
            y = np.zeros((0, cout, out_hw[0] * out_hw[1]), dtype=np.float32)
        elif self.sparse:
            if n == 1:  # one product: the epilogue in the kernel
                y = _conv_sparse(xa, self.weight, bias, self.direct, win, out_hw, self.threads, self.activation,
                                 residual)
                done = True
            else:
                y = _conv_sparse(xa, self.weight, bias, self.direct, win, out_hw, self.threads)
        else:
            y = conv_dense(xa, self.weight, bias, self.direct, win, out_hw, self.groups)
        return y.reshape(n, cout, out_hw[0], out_hw[1]), done

    def _shifted_fits(self, wp: int, wo: int) -> bool:
        """Whether this input width runs direct (else im2col); wp, wo: padded and output widths."""
        return (wp - wo) / wo * self._waste_per_col <= SHIFTED_MAX_WASTE

    def offset_matrix(self, c: int, hp: int, row: int) -> Any:
        """W with column (ci, a, b) replaced by offset ci * hp * row + a * dh * row + b * dw
        (built once per geometry, the last SHIFTED_CACHE_SIZE kept); None if too large."""
        key = (c, hp, row)
        with self._lock:
            m = self._offsets.get(key)
        if m is not None:
            return m
        k, d = self.kernel_size, self.dilation
        plane = hp * row
        cols = (c - 1) * plane + (k[0] - 1) * d[0] * row + (k[1] - 1) * d[1] + 1
        if cols > MAX_OFFSETS:
            return None
        table = (
            np.arange(c, dtype=np.int64)[:, None, None] * plane
            + np.arange(k[0], dtype=np.int64)[None, :, None] * (d[0] * row)
            + np.arange(k[1], dtype=np.int64)[None, None, :] * d[1]
        ).reshape(-1)
        src = self.weight.shifted_source()  # a SELL weight runs this path in CSR
        m = _core.SparseMatrix.from_arrays(
            (src.shape[0], cols), src.block, src.indptr, table[src.indices], src.values
        )
        with self._lock:
            while len(self._offsets) >= SHIFTED_CACHE_SIZE:  # the oldest geometry goes first
                self._offsets.pop(next(iter(self._offsets)))
            self._offsets[key] = m
        return m

    @property
    def offset_matrices(self) -> dict[tuple[int, int, int], Any]:
        """The offset matrices kept, by (channels, padded height, padded row width)."""
        with self._lock:
            return dict(self._offsets)


def _conv_shifted(xa: np.ndarray, plan: Conv2dPlan, bias: Any, residual: Any = None) -> np.ndarray | None:
    """The direct convolution (stride 1) of xa (N, C, H, W); None when offsets would overflow."""
    n, c, h, wd = xa.shape
    p = plan.padding
    hp, wp = h + 2 * p[0], wd + 2 * p[1]
    # Balanced chunks of images side by side: ceil(n / chunks) each, the last one
    # short by less than a chunk (its empty slots stay zero).
    chunks = -(-n // max(1, SHIFTED_BYTES // (4 * c * hp * wp)))
    per_chunk = -(-n // chunks)
    m = plan.offset_matrix(c, hp, per_chunk * wp)
    if m is None:
        return None
    return _core.conv2d_shifted(
        m, np.ascontiguousarray(xa), plan.kernel_size, p, plan.dilation, per_chunk, bias, plan.threads,
        activation=plan.activation, residual=residual,
    )


def _conv_sparse(
    xa: np.ndarray, w: SparseMatrixBase, bias: Any, direct: bool, win: Any, out_hw: tuple[int, int], threads: int,
    activation: str = "none", residual: Any = None,
) -> np.ndarray:
    """The product; ``activation`` and ``residual`` only for one image (n == 1)."""
    n, c = xa.shape[:2]
    cout, kdim = w.shape
    pixels = out_hw[0] * out_hw[1]
    m = w._m
    if n == 1:  # the kernel's output is the result: no copy
        cols = xa[0].reshape(c, pixels) if direct else win(0, 1).reshape(kdim, pixels)
        r = None if residual is None else residual.reshape(cout, pixels)
        return _core.spmm(m, cols, bias, threads, activation=activation, residual=r).reshape(1, cout, pixels)
    y = np.empty((n, cout, pixels), dtype=np.float32)
    if direct and pixels >= PER_IMAGE_PIXELS:
        # 1x1, stride 1: W[Cout, Cin] @ X[Cin, H*W] per image, X a view of the input.
        for i in range(n):
            y[i] = _core.spmm(m, xa[i].reshape(c, pixels), bias, threads)
        return y
    if not direct and pixels >= PER_IMAGE_PIXELS:
        for i in range(n):
            y[i] = _core.spmm(m, win(i, i + 1).reshape(kdim, pixels), bias, threads)
        return y
    # Small images: gather a chunk of them into one wide X (K, chunk * pixels).
    chunk = max(1, min(n, IM2COL_BYTES // max(1, 4 * kdim * pixels)))
    for i in range(0, n, chunk):
        j = min(n, i + chunk)
        if direct:
            cols = xa[i:j].reshape(j - i, c, pixels).transpose(1, 0, 2).reshape(c, (j - i) * pixels)
        else:
            cols = win(i, j).transpose(1, 2, 3, 0, 4, 5).reshape(kdim, (j - i) * pixels)
        yc = _core.spmm(m, cols, bias, threads)
        y[i:j] = yc.reshape(cout, j - i, pixels).transpose(1, 0, 2)
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

    Each call runs a :class:`Conv2dPlan`; to convolve many inputs with one weight,
    build the plan once and call it (this function keeps the last plan of each sparse
    weight, so repeated calls do not rebuild the direct path's offset matrices).
    """
    xa, torch_in = check_x(x)
    if not isinstance(w, SparseMatrixBase):
        plan = Conv2dPlan(
            w, bias, kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation, groups=groups,
            threads=threads,
        )
        return as_output(plan.run(xa, plan.bias), torch_in)
    attrs = (
        _checks.pair(kernel_size, "kernel_size", 1), _checks.pair(stride, "stride", 1),
        _checks.pair(padding, "padding", 0), _checks.pair(dilation, "dilation", 1),
        _checks.positive_int(groups, "groups"), _checks.threads(threads),
    )
    # The last plan rides on the weight (a cycle the garbage collector frees with it);
    # racing threads at worst build one twice.
    plan = getattr(w, "_last_conv_plan", None)
    if plan is None or plan.attrs != attrs:
        plan = Conv2dPlan(
            w, kernel_size=attrs[0], stride=attrs[1], padding=attrs[2], dilation=attrs[3], groups=attrs[4],
            threads=attrs[5] or None,
        )
        w._last_conv_plan = plan
    return as_output(plan.run(xa, plan.check_bias(bias)), torch_in)
