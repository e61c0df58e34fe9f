"""Torch modules that run pysparse weights: SparseLinear and SparseConv2d (inference only).

How the weights reach the kernels
---------------------------------
A module keeps its weight as a pysparse matrix (``CSRMatrix``, ``BSRMatrix``,
``NMMatrix``, ``SELLMatrix``) or, for a layer that stays dense, as a 2-D float32 numpy array --
never as a torch parameter. The forward pass calls the ``torch.library`` custom
ops ``pysparse::linear`` and ``pysparse::conv2d``, which take only tensors and
scalars; the weight travels as an int *handle* into a process-wide registry
(:func:`register_weight`, :func:`weight_from_handle`). Every module registers
its weight when built (again after deepcopy / unpickling), and the registry
holds weak references only: the module owns the weight, the registry frees
nothing and keeps nothing alive. An exported or compiled graph therefore works
for as long as the converted model it came from is alive.

The op schemas (what a graph consumer such as ``pysparse.io`` reads)::

    pysparse::linear(Tensor x, int handle, int out_features, Tensor? bias, int threads) -> Tensor
    pysparse::conv2d(Tensor x, int handle, int out_channels, Tensor? bias, int[] kernel_size,
                     int[] stride, int[] padding, int[] dilation, int groups, int threads) -> Tensor

``threads`` is 0 for "pysparse's default". ``linear`` takes x (..., in) like
``nn.Linear``; ``conv2d`` takes x (N, C, H, W) and a weight flattened like
``conv.weight.reshape(Cout, -1)``.

In eager mode, a forward on a plain CPU tensor calls the same implementation
directly (the dispatcher costs about 10 us per call, a sizeable share of a
sparse batch-1 layer); under ``torch.compile``, ``torch.export`` or ``torch.fx``
tracing it goes through the op, so graphs hold ``pysparse::linear`` /
``pysparse::conv2d`` nodes and no graph breaks. Dense weights run through torch's
own ``F.linear`` / ``F.conv2d`` (zero-copy views of the numpy weight).

Gradients are not supported: asking for them (an input that requires grad
while grad mode is on) raises a RuntimeError that says what to do.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import _checks, _core
from .formats import SparseMatrixBase, describe_format, format_of, pack_weight
from .ops import Conv2dPlan, conv2d, linear
from .ops.conv import check_x
from .ops.geometry import out_size, same_padding

__all__ = [
    "SparseLinear",
    "SparseConv2d",
    "register_weight",
    "weight_from_handle",
]

# ---------------------------------------------------------------------------
# The weight registry: int handle <-> weight object (weakly held).

# Re-entrant: a weakref callback (forget) may run inside register_weight when an
# allocation there triggers garbage collection.
_lock = threading.RLock()
_counter = itertools.count(1)
_by_handle: dict[int, weakref.ref] = {}
_handle_by_id: dict[int, int] = {}


def register_weight(weight: Any) -> int:
    """The int handle of ``weight`` (a pysparse matrix or a numpy array), registering
    it on first use. The registry holds a weak reference: keep the weight alive."""
    _check_weight(weight)
    with _lock:
        h = _handle_by_id.get(id(weight))
        if h is not None:
            ref = _by_handle.get(h)
            if ref is not None and ref() is weight:
                return h
        h = next(_counter)
        key = id(weight)

        def forget(_: Any, h: int = h, key: int = key) -> None:
            with _lock:
                _by_handle.pop(h, None)
                if _handle_by_id.get(key) == h:
                    del _handle_by_id[key]

        _by_handle[h] = weakref.ref(weight, forget)
        _handle_by_id[key] = h
        return h


def weight_from_handle(handle: int) -> Any:
    """The weight registered under ``handle`` (see :func:`register_weight`)."""
    ref = _by_handle.get(int(handle))
    w = ref() if ref is not None else None
    if w is None:
        raise LookupError(
            f"pysparse weight handle {handle} is not registered (its module was freed?); keep the "
            "converted model alive while a graph exported or compiled from it runs"
        )
    return w


def _check_weight(weight: Any) -> None:
    if isinstance(weight, SparseMatrixBase):
        return
    if isinstance(weight, np.ndarray):
        if weight.dtype != np.float32 or weight.ndim != 2:
            raise TypeError(
                f"a dense weight must be a 2-D float32 numpy array, got {weight.dtype} with shape {weight.shape}"
            )
        return
    raise TypeError(
        "weight must be a pysparse CSRMatrix/BSRMatrix/NMMatrix/SELLMatrix or a 2-D float32 numpy array, "
        f"got {type(weight).__name__}"
    )


def _bias_buffer(bias: Any, size: int) -> torch.Tensor | None:
    if bias is None:
        return None
    if isinstance(bias, np.ndarray):
        bias = torch.from_numpy(np.array(bias, dtype=np.float32))
    if not isinstance(bias, torch.Tensor):
        raise TypeError(f"bias must be a torch tensor, a numpy array or None, got {type(bias).__name__}")
    b = bias.detach().to(device="cpu", dtype=torch.float32).reshape(-1).clone()
    if b.numel() != size:
        raise ValueError(f"bias must have {size} values (one per output), got {b.numel()}")
    return b


def _eager(x: Any) -> bool:
    """True for a plain tensor in eager mode: run the kernels directly, skipping the
    dispatcher. Tracers (dynamo, export's fake tensors, fx proxies) get the op."""
    return type(x) is torch.Tensor and not torch.compiler.is_compiling()


def _refuse_grad(name: str, *tensors: torch.Tensor | None) -> None:
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        raise RuntimeError(
            f"{name} is inference-only: gradients cannot flow through pysparse kernels. Run the "
            "converted model under torch.no_grad() or torch.inference_mode(), or pass x.detach(); "
            "train the masked torch model (pysparse.prune) and convert afterwards"
        )


def _no_backward(ctx: Any, grad: torch.Tensor) -> Any:
    raise RuntimeError(
        "pysparse ops are inference-only: no gradient flows through pysparse::linear / pysparse::conv2d; "
        "run the converted model under torch.no_grad()"
    )


def _no_context(ctx: Any, inputs: Any, output: Any) -> None:
    return None


# ---------------------------------------------------------------------------
# The ops.


def _linear_impl(
    x: torch.Tensor, handle: int, out_features: int, bias: torch.Tensor | None, threads: int
) -> torch.Tensor:
    w = weight_from_handle(handle)
    if isinstance(w, np.ndarray):
        return F.linear(x, torch.from_numpy(w), bias)
    k = w.shape[1]
    if x.dim() == 0 or x.shape[-1] != k:
        raise ValueError(f"shape mismatch: the layer takes {k} input features, x has shape {tuple(x.shape)}")
    lead = x.shape[:-1]
    y = linear(x.reshape(-1, k), w, bias, threads=threads or None)
    return y.reshape(*lead, out_features)


_linear_op = torch.library.custom_op(
    "pysparse::linear",
    _linear_impl,
    mutates_args=(),
    device_types="cpu",
    schema="(Tensor x, int handle, int out_features, Tensor? bias, int threads) -> Tensor",
)


@_linear_op.register_fake
def _linear_fake(x: torch.Tensor, handle: int, out_features: int, *_: Any) -> torch.Tensor:
    return x.new_empty((*x.shape[:-1], out_features))


_linear_op.register_autograd(_no_backward, setup_context=_no_context)


def _conv2d_impl(
    x: torch.Tensor,
    handle: int,
    out_channels: int,
    bias: torch.Tensor | None,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    threads: int,
) -> torch.Tensor:
    w = weight_from_handle(handle)
    if isinstance(w, np.ndarray) and not (groups == out_channels == x.shape[1] and tuple(dilation) == (1, 1)):
        if x.dim() != 4 or x.shape[1] % groups:
            raise ValueError(f"x must be (N, C, H, W) with C divisible by groups={groups}, got {tuple(x.shape)}")
        w4 = torch.from_numpy(w).view(out_channels, x.shape[1] // groups, *kernel_size)
        return F.conv2d(x, w4, bias, tuple(stride), tuple(padding), tuple(dilation), groups)
    # ops.conv2d keeps the last plan of each weight: a traced graph does not rebuild it per call
    return conv2d(
        x, w, bias, kernel_size=tuple(kernel_size), stride=tuple(stride), padding=tuple(padding),
        dilation=tuple(dilation), groups=groups, threads=threads or None,
    )


def _is_depthwise(m: Any) -> bool:
    """Whether a conv runs pysparse's C++ depthwise kernel (ops.Conv2dPlan's 'depthwise' path):
    groups == in == out channels, dilation 1. The kernel beats torch's at batch 1 (measured on the
    real MobileNetV2's depthwise layers) and does not start torch's thread pool."""
    return m.groups == m.in_channels == m.out_channels and tuple(m.dilation) == (1, 1)


_conv2d_op = torch.library.custom_op(
    "pysparse::conv2d",
    _conv2d_impl,
    mutates_args=(),
    device_types="cpu",
    schema=(
        "(Tensor x, int handle, int out_channels, Tensor? bias, int[] kernel_size, int[] stride, "
        "int[] padding, int[] dilation, int groups, int threads) -> Tensor"
    ),
)


@_conv2d_op.register_fake
def _conv2d_fake(
    x: torch.Tensor, handle: int, out_channels: int, bias: Any, kernel: Sequence[int], stride: Sequence[int],
    padding: Sequence[int], dilation: Sequence[int], *_: Any,
) -> torch.Tensor:
    torch._check(x.dim() == 4, lambda: f"pysparse::conv2d takes x (N, C, H, W), got {x.dim()}-D")
    h, w = (out_size(x.shape[2 + i], kernel[i], stride[i], padding[i], dilation[i]) for i in range(2))
    return x.new_empty((x.shape[0], out_channels, h, w))


_conv2d_op.register_autograd(_no_backward, setup_context=_no_context)


# ---------------------------------------------------------------------------
# The modules.


class _SparseModule(torch.nn.Module):
    """What SparseLinear and SparseConv2d share: the weight, its handle, the bias buffer."""

    weight: Any
    bias: torch.Tensor | None

    def _init_weight(self, weight: Any, bias: Any, outputs: int, threads: int | None) -> None:
        _check_weight(weight)
        if isinstance(weight, np.ndarray) and not weight.flags.c_contiguous:
            weight = np.ascontiguousarray(weight)
        self.weight = weight
        self.format = format_of(weight)
        self.threads = _checks.threads(threads)
        self.register_buffer("bias", _bias_buffer(bias, outputs))
        self._handle = register_weight(weight)
        self._reset_caches()

    def _reset_caches(self) -> None:
        # numpy / torch views that spare the eager forward a conversion per call,
        # each keyed by the object it views (a replaced bias or weight is re-viewed).
        self._bias_view: tuple[Any, Any] = (None, None)
        self._weight_view: tuple[Any, Any] = (None, None)

    def _bias_numpy(self) -> np.ndarray | None:
        b = self._buffers["bias"]
        if b is None:
            return None
        src, view = self._bias_view
        if src is not b:
            view = b.detach().numpy()
            self._bias_view = (b, view)
        return view

    def _dense_shape(self) -> tuple[int, ...]:
        return tuple(self.weight.shape)

    def _weight_tensor(self) -> torch.Tensor:
        """The dense numpy weight as a tensor sharing its memory, shaped like torch's."""
        w = self.weight
        src, view = self._weight_view
        if src is not w:
            view = torch.from_numpy(w).view(self._dense_shape())
            self._weight_view = (w, view)
        return view

    @property
    def handle(self) -> int:
        """The weight's handle in the registry (what the graph's op node carries)."""
        return self._handle

    @property
    def density(self) -> float:
        w = self.weight
        return float(np.count_nonzero(w)) / max(1, w.size) if isinstance(w, np.ndarray) else w.density

    @property
    def nbytes(self) -> int:
        """Bytes of the stored weight (bias not included)."""
        return int(self.weight.nbytes)

    def _weight_repr(self) -> str:
        bias = self.bias is not None
        return f"format={describe_format(self.weight)}, density={self.density:.3f}, bias={bias}"

    # deepcopy / unpickling build a new object from __dict__: a dense weight is then a
    # new array, so register it (a pysparse matrix deep-copies to itself).
    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._handle = register_weight(self.weight)
        self._reset_caches()


class SparseLinear(_SparseModule):
    """y = x @ W.T + bias with W a pysparse sparse matrix (or a dense numpy array).

    ``weight`` is (out_features, in_features) like ``nn.Linear.weight``: a
    ``CSRMatrix``/``SELLMatrix``/``BSRMatrix``/``NMMatrix`` or a 2-D float32 numpy array (dense,
    kept as is). ``bias`` (a tensor or array, or None) becomes a buffer. Inference only.
    """

    def __init__(self, weight: Any, bias: Any = None, *, threads: int | None = None) -> None:
        super().__init__()
        _check_weight(weight)
        self.out_features, self.in_features = (int(v) for v in weight.shape)
        self._init_weight(weight, bias, self.out_features, threads)

    @classmethod
    def from_module(
        cls, m: torch.nn.Linear, format: str = "csr", *, block: Any = None, nm: Any = None, threads: int | None = None
    ) -> SparseLinear:
        """From an ``nn.Linear`` (its effective, masked weight), packed by
        :func:`pysparse.formats.pack_weight` into ``format`` without measuring."""
        if not isinstance(m, torch.nn.Linear):
            raise TypeError(f"expected a torch.nn.Linear, got {type(m).__name__}")
        w = pack_weight(m.weight.detach(), format, block=block, nm=nm)
        return cls(w, m.bias, threads=threads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _eager(x):
            bias = self._buffers["bias"]
            _refuse_grad("SparseLinear", x, bias)
            if self.format == "dense":
                return F.linear(x, self._weight_tensor(), bias)
            if x.dim() == 2 and not x.requires_grad and x.device.type == "cpu":
                # The common case, with as little Python as possible between torch and the kernel.
                if self.weight.quantized:  # int8 (pysparse.formats.int8)
                    return torch.from_numpy(
                        _core.qlinear(x.numpy(), self.weight._m, self._bias_numpy(), False, self.threads)
                    )
                return torch.from_numpy(_core.linear(x.numpy(), self.weight._m, self._bias_numpy(), self.threads))
            return _linear_impl(x, self._handle, self.out_features, bias, self.threads)
        return torch.ops.pysparse.linear(x, self._handle, self.out_features, self.bias, self.threads)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self._weight_repr()}"


class SparseConv2d(_SparseModule):
    """A 2-D convolution (zero padding) whose weight is a pysparse matrix or a dense array.

    ``weight`` is (out_channels, in_channels / groups * kh * kw), flattened like
    ``conv.weight.reshape(out_channels, -1)``; sparse formats need ``groups == 1``,
    a dense numpy weight takes any groups (depthwise included). Inference only.
    """

    def __init__(
        self,
        weight: Any,
        bias: Any = None,
        *,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        threads: int | None = None,
    ) -> None:
        super().__init__()
        _check_weight(weight)
        self.kernel_size = _checks.pair(kernel_size, "kernel_size", 1)
        self.stride = _checks.pair(stride, "stride", 1)
        self.padding = _checks.pair(padding, "padding", 0)
        self.dilation = _checks.pair(dilation, "dilation", 1)
        groups = _checks.positive_int(groups, "groups")
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), groups
        if self.in_channels % groups or self.out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        if groups != 1 and not isinstance(weight, np.ndarray):
            raise ValueError(
                f"grouped convolutions (groups={groups}) need a dense numpy weight, got {type(weight).__name__}"
            )
        want = (self.out_channels, self.in_channels // groups * self.kernel_size[0] * self.kernel_size[1])
        if tuple(weight.shape) != want:
            raise ValueError(
                f"weight must be {want} (out_channels, in_channels/groups*kh*kw) like "
                f"conv.weight.reshape(out_channels, -1), got {tuple(weight.shape)}"
            )
        self._init_weight(weight, bias, self.out_channels, threads)
        self._make_plan()

    def _make_plan(self) -> None:
        """The prepared convolution of a sparse or a dense depthwise weight (None for other dense
        ones, which run F.conv2d)."""
        self._plan: Conv2dPlan | None = None
        if self.format != "dense" or _is_depthwise(self):
            self._plan = Conv2dPlan(
                self.weight, kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
                dilation=self.dilation, groups=self.groups, threads=self.threads or None,
            )

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._make_plan()

    @classmethod
    def from_module(
        cls, m: torch.nn.Conv2d, format: str = "csr", *, block: Any = None, nm: Any = None, threads: int | None = None
    ) -> SparseConv2d:
        """From an ``nn.Conv2d`` with zero padding (grouped convs: format='dense' only)."""
        if not isinstance(m, torch.nn.Conv2d):
            raise TypeError(f"expected a torch.nn.Conv2d, got {type(m).__name__}")
        padding = conv_padding(m)
        if m.groups != 1 and format != "dense":
            raise ValueError(f"a grouped convolution (groups={m.groups}) converts with format='dense' only")
        w = pack_weight(m.weight.detach().reshape(m.out_channels, -1), format, block=block, nm=nm)
        return cls(
            w, m.bias, in_channels=m.in_channels, out_channels=m.out_channels, kernel_size=m.kernel_size,
            stride=m.stride, padding=padding, dilation=m.dilation, groups=m.groups, threads=threads,
        )

    def _dense_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (C, H, W) like nn.Conv2d takes; fx proxies (no concrete ndim) are taken as 4-D.
        unbatched = isinstance(x, torch.Tensor) and x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        if _eager(x):
            bias = self._buffers["bias"]
            _refuse_grad("SparseConv2d", x, bias)
            if self._plan is None:
                y = F.conv2d(x, self._weight_tensor(), bias, self.stride, self.padding, self.dilation, self.groups)
                return y.squeeze(0) if unbatched else y
            xa, _ = check_x(x)
            y = torch.from_numpy(self._plan.run(xa, self._bias_numpy()))
        else:
            y = torch.ops.pysparse.conv2d(
                x, self._handle, self.out_channels, self.bias, list(self.kernel_size), list(self.stride),
                list(self.padding), list(self.dilation), self.groups, self.threads,
            )
        return y.squeeze(0) if unbatched else y

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return f"{s}, {self._weight_repr()}"


def conv_padding(m: torch.nn.Conv2d) -> tuple[int, int]:
    """The explicit symmetric zero padding of an nn.Conv2d, or ValueError if it has none."""
    if m.padding_mode != "zeros":
        raise ValueError(f"only zero padding is supported, this Conv2d pads with padding_mode={m.padding_mode!r}")
    if m.padding == "valid":
        return (0, 0)
    if m.padding == "same":
        return same_padding(m.kernel_size, m.dilation)
    return (int(m.padding[0]), int(m.padding[1]))
