"""The op set: op name -> ``OpSpec`` (inputs, checked attributes, builder, arrays), the one op table.

Each family's builders live in their own module: ``matmul`` (linear, conv2d),
``elementwise``, ``norm``, ``shape``, ``pool``, ``embedding`` and ``attention``.
"""

from __future__ import annotations

import numpy as np

from ..schema import (
    _DIM, _EPS, _F32, _FEATURES, _MATRIX_ATTRS, _NUM, _PAIR_K, _PAIR_P, _PAIR_S, _REQUIRED, MAX_DIM, MAX_RANK,
    _bool, _choice, _float, _int, _ints, _optional, _Param,
)
from .base import Cost, OpSpec, _dim, _unary, pointwise, free_cost, view_cost
from .elementwise import _BINARY, _binary_cost, _build_binary, _gelu, _hardswish, _identity, _sigmoid, _softmax
from .matmul import _build_conv, _build_linear, _conv_cost, _conv_params, _linear_cost, _linear_params
from .norm import _bn_params, _build_batch_norm, _build_layer_norm, _ln_params
from .pool import _adaptive_cost, _build_adaptive, _build_mean, _build_pool, _mean_cost, _pool_attrs, _pool_cost
from .attention import _attention_cost, _build_attention, _build_attention_mask
from .embedding import _build_embedding, _build_position, _embedding_cost, _embedding_params, _position_cost
from .norm import _build_l2_normalize
from .pool import _build_masked_mean, _masked_mean_cost
from .shape import (
    _build_cat, _build_constant, _cat_cost, _build_flatten, _build_permute, _build_reshape, _build_size, _build_squeeze,
    _build_transpose, _build_unsqueeze,
)

__all__ = ["OPS", "OpSpec", "Cost", "SPARSE_OPS", "BINARY_OPS"]

OPS: dict[str, OpSpec] = {
    "linear": OpSpec(
        (1, 1),
        {"in_features": (_FEATURES, _REQUIRED), "out_features": (_FEATURES, _REQUIRED), **_MATRIX_ATTRS},
        _build_linear,
        _linear_params,
        _linear_cost,
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
        _conv_cost,
    ),
    "relu": _unary(lambda x: np.maximum(x, 0.0)),
    "relu6": _unary(lambda x: np.clip(x, 0.0, 6.0)),
    "hardtanh": _unary(lambda x, min_val, max_val: np.clip(x, min_val, max_val),
                       min_val=(_NUM, -1.0), max_val=(_NUM, 1.0)),
    "clamp": _unary(lambda x, min, max: np.clip(x, min, max),
                    min=(_optional(_NUM), None), max=(_optional(_NUM), None)),
    "leaky_relu": _unary(lambda x, negative_slope: np.where(x >= 0, x, x * negative_slope), pointwise(3, 1),
                         negative_slope=(_NUM, 0.01)),
    "gelu": _unary(_gelu, pointwise(200, 8), approximate=(_choice("none", "tanh"), "none")),
    "silu": _unary(lambda x: x * _sigmoid(x), pointwise(18, 4)),
    "sigmoid": _unary(_sigmoid, pointwise(15, 3)),
    "hardsigmoid": _unary(lambda x: np.clip(x / 6.0 + 0.5, 0.0, 1.0), pointwise(3, 1)),
    "hardswish": _unary(_hardswish, pointwise(4, 2)),
    "tanh": _unary(np.tanh, pointwise(5)),
    "neg": _unary(np.negative),
    "softmax": _unary(lambda x, dim: _softmax(x, _dim(dim, x.ndim, "softmax"), False), pointwise(15, 2),
                      dim=(_DIM, _REQUIRED)),
    "log_softmax": _unary(lambda x, dim: _softmax(x, _dim(dim, x.ndim, "log_softmax"), True), pointwise(15, 2),
                          dim=(_DIM, _REQUIRED)),
    "batch_norm": OpSpec((1, 1), {"num_features": (_FEATURES, _REQUIRED), "eps": (_EPS, 1e-5)},
                         _build_batch_norm, _bn_params, pointwise(2, 1)),
    "layer_norm": OpSpec(
        (1, 2),  # (x) or (x, residual): layer_norm(x + residual)
        {"normalized_shape": (_ints(1, MAX_DIM, max_len=MAX_RANK), _REQUIRED), "eps": (_EPS, 1e-5)},
        _build_layer_norm,
        _ln_params,
        pointwise(30, 10),  # in float64, the residual added first
    ),
    "add": OpSpec((2, 2), {}, _build_binary("add"), cost=_binary_cost),
    "sub": OpSpec((2, 2), {}, _build_binary("sub"), cost=_binary_cost),
    "mul": OpSpec((2, 2), {}, _build_binary("mul"), cost=_binary_cost),
    "div": OpSpec((2, 2), {}, _build_binary("div"), cost=_binary_cost),
    "flatten": OpSpec((1, 1), {"start_dim": (_DIM, 0), "end_dim": (_DIM, -1)}, _build_flatten, cost=view_cost),
    "reshape": OpSpec((2, 1 + MAX_RANK), {}, _build_reshape, cost=view_cost),
    "permute": OpSpec((1, 1), {"dims": (_ints(-MAX_RANK, MAX_RANK - 1), _REQUIRED)}, _build_permute, cost=free_cost),
    "transpose": OpSpec((1, 1), {"dim0": (_DIM, _REQUIRED), "dim1": (_DIM, _REQUIRED)}, _build_transpose,
                        cost=free_cost),
    "squeeze": OpSpec((1, 1), {"dim": (_optional(_DIM), None)}, _build_squeeze, cost=view_cost),
    "unsqueeze": OpSpec((1, 1), {"dim": (_int(-MAX_RANK - 1, MAX_RANK), _REQUIRED)}, _build_unsqueeze,
                        cost=free_cost),
    "cat": OpSpec((1, 1024), {"dim": (_DIM, 0)}, _build_cat, cost=_cat_cost),
    "max_pool2d": OpSpec((1, 1), _pool_attrs("max"), _build_pool("max"), cost=_pool_cost),
    "avg_pool2d": OpSpec((1, 1), _pool_attrs("avg"), _build_pool("avg"), cost=_pool_cost),
    "adaptive_avg_pool2d": OpSpec((1, 1), {"output_size": (_ints(1, 4096, 2), _REQUIRED)}, _build_adaptive,
                                  cost=_adaptive_cost),
    "mean": OpSpec((1, 1), {"dims": (_ints(-MAX_RANK, MAX_RANK - 1), ()), "keepdim": (_bool, False)}, _build_mean,
                   cost=_mean_cost),
    "size": OpSpec((1, 1), {"dim": (_DIM, _REQUIRED)}, _build_size, cost=free_cost),
    "dropout": OpSpec((1, 1), {}, _identity, cost=free_cost),
    "identity": OpSpec((1, 1), {}, _identity, cost=free_cost),
    "constant": OpSpec((0, 0), {}, _build_constant, lambda a, w: {"value": _Param(True, _F32, None)}, free_cost),
}

# Transformer encoders (BERT family): token and position embeddings, the mask, attention, pooling.
_TABLE = {"num_embeddings": (_FEATURES, _REQUIRED), "embedding_dim": (_FEATURES, _REQUIRED)}
OPS.update({
    "embedding": OpSpec((1, 1), dict(_TABLE), _build_embedding, _embedding_params, _embedding_cost),
    "position_embedding": OpSpec((1, 1), dict(_TABLE), _build_position, _embedding_params, _position_cost),
    "attention_mask": OpSpec((2, 2), {}, _build_attention_mask, cost=pointwise(4, 1)),
    "attention": OpSpec((3, 4), {"num_heads": (_int(1, 4096), _REQUIRED), "scale": (_optional(_float(0.0)), None)},
                        _build_attention, cost=_attention_cost),
    "masked_mean": OpSpec((2, 2), {}, _build_masked_mean, cost=_masked_mean_cost),
    "l2_normalize": OpSpec((1, 1), {"eps": (_EPS, 1e-12)}, _build_l2_normalize, cost=pointwise(6, 2)),
})

# The ops whose node holds a weight matrix (a format), and those that take number literals.
SPARSE_OPS = ("linear", "conv2d")
BINARY_OPS = frozenset(_BINARY)
