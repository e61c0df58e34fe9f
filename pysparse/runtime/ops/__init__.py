"""The op set: op name -> ``OpSpec`` (inputs, checked attributes, builder, arrays), the one op table.

Each family's builders live in their own module: ``matmul`` (linear, conv2d),
``elementwise``, ``norm``, ``shape`` and ``pool``.
"""

from __future__ import annotations

import numpy as np

from ..schema import (
    _DIM, _EPS, _F32, _FEATURES, _MATRIX_ATTRS, _NUM, _PAIR_K, _PAIR_P, _PAIR_S, _REQUIRED, MAX_DIM, MAX_RANK,
    _bool, _choice, _int, _ints, _optional, _Param,
)
from .base import OpSpec, _dim, _unary
from .elementwise import _BINARY, _build_binary, _gelu, _hardswish, _identity, _sigmoid, _softmax
from .matmul import _build_conv, _build_linear, _conv_params, _linear_params
from .norm import _bn_params, _build_batch_norm, _build_layer_norm, _ln_params
from .pool import _build_adaptive, _build_mean, _build_pool, _pool_attrs
from .shape import (
    _build_cat, _build_constant, _build_flatten, _build_permute, _build_reshape, _build_size, _build_squeeze,
    _build_transpose, _build_unsqueeze,
)

__all__ = ["OPS", "OpSpec", "SPARSE_OPS", "BINARY_OPS"]

OPS: dict[str, OpSpec] = {
    "linear": OpSpec(
        (1, 1),
        {"in_features": (_FEATURES, _REQUIRED), "out_features": (_FEATURES, _REQUIRED), **_MATRIX_ATTRS},
        _build_linear,
        _linear_params,
    ),
    "conv2d": OpSpec(
        (1, 1),
        {
            "in_channels": (_FEATURES, _REQUIRED),
            "out_channels": (_FEATURES, _REQUIRED),
            "kernel_size": (_PAIR_K, _REQUIRED),
            "stride": (_PAIR_S, (1, 1)),
            "padding": (_PAIR_P, (0, 0)),
            "dilation": (_PAIR_S, (1, 1)),
            "groups": (_FEATURES, 1),
            **_MATRIX_ATTRS,
        },
        _build_conv,
        _conv_params,
    ),
    "relu": _unary(lambda x: np.maximum(x, 0.0)),
    "relu6": _unary(lambda x: np.clip(x, 0.0, 6.0)),
    "hardtanh": _unary(lambda x, min_val, max_val: np.clip(x, min_val, max_val),
                       min_val=(_NUM, -1.0), max_val=(_NUM, 1.0)),
    "clamp": _unary(lambda x, min, max: np.clip(x, min, max),
                    min=(_optional(_NUM), None), max=(_optional(_NUM), None)),
    "leaky_relu": _unary(lambda x, negative_slope: np.where(x >= 0, x, x * negative_slope),
                         negative_slope=(_NUM, 0.01)),
    "gelu": _unary(_gelu, approximate=(_choice("none", "tanh"), "none")),
    "silu": _unary(lambda x: x * _sigmoid(x)),
    "sigmoid": _unary(_sigmoid),
    "hardsigmoid": _unary(lambda x: np.clip(x / 6.0 + 0.5, 0.0, 1.0)),
    "hardswish": _unary(_hardswish),
    "tanh": _unary(np.tanh),
    "neg": _unary(np.negative),
    "softmax": _unary(lambda x, dim: _softmax(x, _dim(dim, x.ndim, "softmax"), False), dim=(_DIM, _REQUIRED)),
    "log_softmax": _unary(lambda x, dim: _softmax(x, _dim(dim, x.ndim, "log_softmax"), True),
                          dim=(_DIM, _REQUIRED)),
    "batch_norm": OpSpec((1, 1), {"num_features": (_FEATURES, _REQUIRED), "eps": (_EPS, 1e-5)},
                         _build_batch_norm, _bn_params),
    "layer_norm": OpSpec(
        (1, 1),
        {"normalized_shape": (_ints(1, MAX_DIM, max_len=MAX_RANK), _REQUIRED), "eps": (_EPS, 1e-5)},
        _build_layer_norm,
        _ln_params,
    ),
    "add": OpSpec((2, 2), {}, _build_binary("add")),
    "sub": OpSpec((2, 2), {}, _build_binary("sub")),
    "mul": OpSpec((2, 2), {}, _build_binary("mul")),
    "div": OpSpec((2, 2), {}, _build_binary("div")),
    "flatten": OpSpec((1, 1), {"start_dim": (_DIM, 0), "end_dim": (_DIM, -1)}, _build_flatten),
    "reshape": OpSpec((2, 1 + MAX_RANK), {}, _build_reshape),
    "permute": OpSpec((1, 1), {"dims": (_ints(-MAX_RANK, MAX_RANK - 1), _REQUIRED)}, _build_permute),
    "transpose": OpSpec((1, 1), {"dim0": (_DIM, _REQUIRED), "dim1": (_DIM, _REQUIRED)}, _build_transpose),
    "squeeze": OpSpec((1, 1), {"dim": (_optional(_DIM), None)}, _build_squeeze),
    "unsqueeze": OpSpec((1, 1), {"dim": (_int(-MAX_RANK - 1, MAX_RANK), _REQUIRED)}, _build_unsqueeze),
    "cat": OpSpec((1, 1024), {"dim": (_DIM, 0)}, _build_cat),
    "max_pool2d": OpSpec((1, 1), _pool_attrs("max"), _build_pool("max")),
    "avg_pool2d": OpSpec((1, 1), _pool_attrs("avg"), _build_pool("avg")),
    "adaptive_avg_pool2d": OpSpec((1, 1), {"output_size": (_ints(1, 4096, 2), _REQUIRED)}, _build_adaptive),
    "mean": OpSpec((1, 1), {"dims": (_ints(-MAX_RANK, MAX_RANK - 1), ()), "keepdim": (_bool, False)}, _build_mean),
    "size": OpSpec((1, 1), {"dim": (_DIM, _REQUIRED)}, _build_size),
    "dropout": OpSpec((1, 1), {}, _identity),
    "identity": OpSpec((1, 1), {}, _identity),
    "constant": OpSpec((0, 0), {}, _build_constant, lambda a, w: {"value": _Param(True, _F32, None)}),
}

# The ops whose node holds a weight matrix (a format), and those that take number literals.
SPARSE_OPS = ("linear", "conv2d")
BINARY_OPS = frozenset(_BINARY)
